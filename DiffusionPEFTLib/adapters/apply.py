"""Use an adapter package at inference: load it onto its base model and merge it in (no extra cost)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..events import EventSink
from ..models.diffusion_model import DiffusionModel
from .package import load_adapter, read_manifest


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
    provenance = read_manifest(folder)["provenance"]
    new_class = provenance.get("new_class_name")
    if new_class is not None and provenance.get("class_label") == len(model.config.input.condition_classes):  # controlled fine-tuning added a class: it gets its name (e.g. synthesize --contrast flair)
        spec = model.config.input
        model.config = dataclasses.replace(
            model.config, unet={**model.config.unet, "num_class_embeds": model.unet.class_embedding.num_embeddings},
            input=dataclasses.replace(spec, condition_classes=(*spec.condition_classes, new_class)))
    if events is not None:
        events.log(f"Merged adapter {Path(folder).name} ({adapter_set.method.name}, {counts.total:,} trained "
                   f"parameters) into the base model.")
    return model.eval()
