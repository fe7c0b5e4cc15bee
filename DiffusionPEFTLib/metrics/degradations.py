"""Controlled degradations of a real set: the yardstick a distribution metric must order correctly.

A good metric puts a held-out real set closest to the reference, mild degradations of it next
(``MILD``: blur σ = 1 voxel, added noise about as strong as a simulated scan's own noise at SNR 40),
and the failure modes farthest: the reference's mean image repeated (no diversity) and the same
subjects in another contrast. The strong degradations (blur σ = 2 voxels, noise σ = 0.1) must rank
above their mild versions. Volumes: (X, Y, Z) arrays in the model range [-1, 1].
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BLUR_SIGMAS = (1.0, 2.0)  # voxels
NOISE_STDS = (0.05, 0.1)  # model-range units; a simulated scan at SNR 40 has about 0.045
MILD = ("blur σ=1", "noise σ=0.05")
FAILURES = ("mean image", "other contrast")


def degraded_sets(reference, held_out, other_contrast, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Name → set: 'held-out real', 'blur σ=1', 'blur σ=2', 'noise σ=0.05', 'noise σ=0.1', 'mean image',
    'other contrast'. The mean image is the reference set's voxel-wise mean, repeated len(held_out) times."""
    rng = np.random.default_rng(seed)
    mean = np.mean(np.stack(reference), axis=0)
    return {
        "held-out real": list(held_out),
        **{f"blur σ={sigma:g}": [ndimage.gaussian_filter(v, sigma) for v in held_out] for sigma in BLUR_SIGMAS},
        **{f"noise σ={std:g}": [(v + rng.normal(0.0, std, v.shape)).astype(np.float32) for v in held_out]
           for std in NOISE_STDS},
        "mean image": [mean] * len(held_out),
        "other contrast": list(other_contrast),
    }
