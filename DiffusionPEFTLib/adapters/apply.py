"""Use an adapter package at inference: load it onto its base model and merge it in (no extra cost)."""

from __future__ import annotations

from pathlib import Path

from ..events import EventSink
from ..models.diffusion_model import DiffusionModel
from .package import load_adapter


def merge_adapter_package(model: DiffusionModel, folder: str | Path, events: EventSink | None = None,
                          allow_fingerprint_mismatch: bool = False) -> DiffusionModel:
    """Load ``folder`` onto ``model.unet`` (refused on another base model), merge ΔW, drop the wrappers.

    Returns ``model`` itself, whose UNet now holds the merged weights; sampling then costs exactly
    as much as with the base model.
    """
    adapter_set = load_adapter(folder, model.unet, base_fingerprint=model.config.weights_sha256,
                               allow_fingerprint_mismatch=allow_fingerprint_mismatch)
    counts = adapter_set.counts()
    model.unet = adapter_set.merge_and_unload()
    if events is not None:
        events.log(f"Merged adapter {Path(folder).name} ({adapter_set.method.name}, {counts.total:,} trained "
                   f"parameters) into the base model.")
    return model.eval()
