"""Tiled decoding: a latent volume decoded in overlapping windows with MONAI's ``sliding_window_inference`` and
blended with a gaussian weight, so the decoder's activations are those of one window instead of the whole volume.

A window of w latent voxels decodes to f·w image voxels (f: the autoencoder's upsampling per axis), which
``sliding_window_inference`` takes as its output zoom. Its gaussian weight map (σ = 0.125 of the window, MONAI's
default) is given at that image size, so windows blend smoothly at image resolution. What a tiled decode holds at
its peak: the output and its summed weights (two volumes of the output's size) and one window's decoder
activations (one window of one volume at a time).

The price is accuracy and time: each window's decoder pads its borders with zeros and normalises (GroupNorm) over
the window alone, where a whole decode sees the whole volume; and with overlap 0.5 a latent voxel is decoded up to
2³ times. docs/memory.md gives measured differences, times and peaks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

DECODE_MODES = ("auto", "whole", "tiled")
OVERLAP = 0.5
"""default overlap of neighbouring windows, as a fraction of the window"""
SIGMA_SCALE = 0.125
"""the gaussian blending weight's standard deviation as a fraction of the window (MONAI's default)"""
MIN_WINDOW = 4
"""latent voxels: the smallest window side the candidate windows go down to (or the grid's side where smaller)"""


@dataclass(frozen=True)
class Decoding:
    """How a latent model's sampled latents become volumes. mode: ``whole`` (the decoder on the whole latent),
    ``tiled`` (windows of ``window`` latent voxels overlapping by ``overlap`` of a window; window None: the first of
    :func:`candidate_windows`) or ``auto`` (whole when that fits the memory budget, else tiled: memory.py's planner
    decides; decoded on its own, without a budget, ``auto`` is whole)."""

    mode: str = "auto"
    window: tuple[int, int, int] | None = None
    overlap: float = OVERLAP

    @property
    def tiled(self) -> bool:
        return self.mode == "tiled"

    def describe(self) -> str:
        """'tiled decoding, windows of 10×14×10 latent voxels, overlap 0.5' / 'whole decoding'."""
        if not self.tiled:
            return f"{self.mode} decoding"
        window = f"windows of {'×'.join(map(str, self.window))} latent voxels" if self.window else "default windows"
        return f"tiled decoding, {window}, overlap {self.overlap:g}"


def candidate_windows(latent_shape) -> list[tuple[int, int, int]]:
    """The windows a tiled decode chooses from, largest first: the latent grid with its longest side halved
    (rounded up; the first of equal sides), again and again, no side below MIN_WINDOW latent voxels (or the grid's
    side where that is smaller) — each about half the memory of the one before.
    20×28×20 → 20×14×20, 10×14×20, 10×14×10, 10×7×10, 5×7×10, 5×7×5, 5×4×5, 4×4×5, 4×4×4."""
    window, windows = [int(side) for side in latent_shape], []
    while any(side > MIN_WINDOW for side in window):
        axis = max(range(len(window)), key=lambda a: (window[a], -a))
        window[axis] = max(MIN_WINDOW, -(-window[axis] // 2))
        windows.append(tuple(window))
    return windows or [tuple(window)]


def window_of(decoding: Decoding, latent_shape) -> tuple[int, int, int]:
    """The window ``decoding`` decodes ``latent_shape`` with: its own (no side beyond the grid's) or the first
    candidate."""
    if decoding.window is None:
        return candidate_windows(latent_shape)[0]
    return tuple(min(int(w), int(side)) for w, side in zip(decoding.window, latent_shape))


def tiled_decode(decode: Callable[[torch.Tensor], torch.Tensor], latents: torch.Tensor,
                 window: tuple[int, int, int], overlap: float, zoom: int) -> torch.Tensor:
    """``decode`` (latents (1, C, w…) → volumes (1, C_out, zoom·w…)) applied to ``latents`` (B, C, x, y, z) in
    overlapping windows of ``window`` latent voxels, one window at a time, blended with a gaussian weight →
    (B, C_out, zoom·x, zoom·y, zoom·z) on the latents' device."""
    from monai.inferers import sliding_window_inference

    weights = torch.tensor(blending_weights(tuple(zoom * int(w) for w in window)), device=latents.device)
    return sliding_window_inference(latents, tuple(window), 1, decode, overlap=overlap, mode="gaussian",
                                    roi_weight_map=weights)


@functools.lru_cache(maxsize=8)
def blending_weights(shape: tuple[int, int, int]) -> np.ndarray:
    """The gaussian weight (read-only float32) of a window of ``shape`` image voxels: what MONAI's
    ``compute_importance_map(shape, "gaussian", sigma_scale=0.125)`` gives (floored at 1e-3 as there), built with
    numpy because MONAI's reads a value back (``.item()``), which the memory planner's fake-tensor trace cannot."""
    axes = [np.exp(-0.5 * ((np.arange(n) - (n - 1) / 2) / (SIGMA_SCALE * n)) ** 2) for n in shape]
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights = np.maximum(weights, max(weights.min(), 1e-3)).astype(np.float32)
    weights.setflags(write=False)
    return weights
