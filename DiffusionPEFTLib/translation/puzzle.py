"""PPDM's pixel puzzle: a reversible 3D space-to-channel rearrangement with factor p.

``puzzle`` turns (B, C, X, Y, Z) into (B, C·p³, X'/p, Y'/p, Z'/p): channel ``c·p³ + (i·p + j)·p + k``
holds the strided, full-field sub-volume ``x[:, c, i::p, j::p, k::p]``, so every channel still sees the
whole anatomy at 1/p resolution (our reading of "preserves global context"; PPDM's full text is not
public, see docs). X', Y', Z' are the sides padded up to a multiple of ``p · multiple`` (``multiple``: the
U-Net's downsampling factor) by edge replication; ``unpuzzle`` with the original shape crops the padding
back, so ``unpuzzle(puzzle(x)) == x`` exactly for every shape. Zero parameters, bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FACTORS = (1, 2, 4)


@dataclass(frozen=True)
class Puzzle:
    """Factor ``p`` ∈ {1, 2, 4} and the side multiple the puzzled grid must have (U-Net levels)."""

    p: int = 2
    multiple: int = 1

    def __post_init__(self):
        if self.p not in FACTORS:
            raise ValueError(f"puzzle factor must be one of {FACTORS}, got {self.p}")

    def padded_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Grid (X', Y', Z') after padding ``shape`` to a multiple of p · multiple."""
        step = self.p * self.multiple
        return tuple(-(-side // step) * step for side in shape)

    def puzzled_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Spatial shape of the puzzled tensor for an input grid ``shape``."""
        return tuple(side // self.p for side in self.padded_shape(shape))

    def puzzle(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, X, Y, Z) → (B, C·p³, X'/p, Y'/p, Z'/p)."""
        p = self.p
        target = self.padded_shape(tuple(x.shape[2:]))
        pads = [amount for size, full in zip(reversed(x.shape[2:]), reversed(target)) for amount in (0, full - size)]
        if any(pads):
            x = F.pad(x, pads, mode="replicate")
        b, c, sx, sy, sz = x.shape
        x = x.reshape(b, c, sx // p, p, sy // p, p, sz // p, p)
        return x.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(b, c * p**3, sx // p, sy // p, sz // p)

    def unpuzzle(self, x: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        """Inverse of :meth:`puzzle` for an input grid ``shape`` (crops the padding): → (B, C, *shape)."""
        p = self.p
        b, cp, px, py, pz = x.shape
        c = cp // p**3
        x = x.reshape(b, c, p, p, p, px, py, pz).permute(0, 1, 5, 2, 6, 3, 7, 4)
        x = x.reshape(b, c, px * p, py * p, pz * p)
        return x[:, :, : shape[0], : shape[1], : shape[2]]
