"""LoHa (FedPara / LyCORIS): ΔW = s · (B1·A1) ⊙ (B2·A2), s = α/r (α defaults to r).

B_i (``up1``, ``up2``) are (out, r), A_i (``down1``, ``down2``) are (r, fan_in); the Hadamard product of
two rank-r matrices can reach rank r². Init (reference §6): B1 ~ N(0, 0.1), A1 ~ N(0, 1), B2 = 0,
A2 ~ N(0, 1), so ΔW = 0 at step 0. Parameters: 2r·(fan_in + out).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import AdapterLayer


class LoHaLayer(AdapterLayer):
    """Hadamard product of two low-rank matrices."""

    def __init__(self, base: nn.Conv3d | nn.Linear, rank: int, alpha: float | None = None):
        super().__init__(base, rank)
        self.alpha = float(rank if alpha is None else alpha)
        self.scale = self.alpha / rank
        self.up1 = nn.Parameter(self.new_tensor(self.out_features, rank).normal_(0.0, 0.1))
        self.down1 = nn.Parameter(self.new_tensor(rank, self.fan_in).normal_(0.0, 1.0))
        self.up2 = nn.Parameter(self.new_tensor(self.out_features, rank).zero_())
        self.down2 = nn.Parameter(self.new_tensor(rank, self.fan_in).normal_(0.0, 1.0))

    def delta_weight(self) -> torch.Tensor:
        product = (self.up1 @ self.down1) * (self.up2 @ self.down2)
        return (self.scale * product).view_as(self.base.weight)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"
