"""Reconstruction of accelerated MRI: k-space operators and masks, a diffusion prior with data consistency
(DDNM, DDS, DPS), and the classical peers (zero-filled, L1-wavelet compressed sensing)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..cancel import CancelToken
from ..events import EventSink
from .classical import l1_wavelet, zero_filled
from .consistency import Measurement
from .posterior import DIFFUSION_METHODS, PosteriorSettings, posterior_samples

CLASSICAL_METHODS = ("cs", "zero-filled")
RECONSTRUCTION_METHODS = DIFFUSION_METHODS + CLASSICAL_METHODS
DEFAULT_CS_WEIGHT = 0.003  # λ / max|Aᴴy|: the best single value of a sweep on a simulated validation subject (docs/reconstruction.md)


@dataclass
class Reconstruction:
    """Magnitudes on the measurement's grid, float32 (X, Y, Z) in scanner units: ``mean`` of the samples,
    their per-voxel ``std`` (None for one sample or a deterministic method), ``zero_filled``; and the
    complex ``samples`` (K, X, Y, Z)."""

    mean: np.ndarray
    std: np.ndarray | None
    zero_filled: np.ndarray
    samples: torch.Tensor


def reconstruct_measurement(model, measurement: Measurement, method: str, samples: int,
                            settings: PosteriorSettings, generator: torch.Generator, class_label: int | None = None,
                            cs_weight: float | None = None, events: EventSink | None = None,
                            cancel: CancelToken | None = None) -> Reconstruction:
    """Run ``method`` (one of RECONSTRUCTION_METHODS) on ``measurement``; ``model`` is the prior (unused by
    the classical methods, which give one deterministic result whatever ``samples``)."""
    baseline = zero_filled(measurement)
    if method == "zero-filled":
        images = baseline[None]
    elif method == "cs":
        images = l1_wavelet(measurement, DEFAULT_CS_WEIGHT if cs_weight is None else cs_weight)[None]
    else:
        images = posterior_samples(model, measurement, method, samples, settings, generator, class_label, events,
                                   cancel)
    magnitudes = images.abs().numpy().astype(np.float32)
    std = magnitudes.std(axis=0).astype(np.float32) if len(magnitudes) > 1 else None
    return Reconstruction(magnitudes.mean(axis=0), std, baseline.abs().numpy().astype(np.float32), images)
