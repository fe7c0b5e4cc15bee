"""DoRA (Liu et al. 2024): W' = m ⊙ (W0 + sΔW) / ‖W0 + sΔW‖_c, ΔW = B·A as in LoRA.

‖·‖_c is the L2 norm per output channel (over C_in, k_d, k_h, k_w; Linear: over in) and is detached
(DoRA §4.3, as peft). m (``magnitude``, C_out) starts at ‖W0‖_c, so W' = W0 at step 0.
Parameters: r·(fan_in + out) + out.
"""

from __future__ import annotations

import torch
from torch import nn

from .lora import LoRALayer

NORM_FLOOR = 1e-12
"""Guards output channels whose weight is all zero (m = 0 there, so W' stays 0)."""


class DoRALayer(LoRALayer):
    """LoRA direction plus a trainable per-output-channel magnitude."""

    def __init__(self, base: nn.Conv3d | nn.Linear, rank: int, alpha: float | None = None):
        super().__init__(base, rank, alpha)
        self.magnitude = nn.Parameter(self.channel_norm(base.weight.detach()))
        self.register_buffer("unmerged_base_weight", None, persistent=False)

    @staticmethod
    def channel_norm(weight: torch.Tensor) -> torch.Tensor:
        """‖W‖ per output channel, shape (out,)."""
        return weight.flatten(1).norm(dim=1)

    def adapted_weight(self) -> torch.Tensor:
        direction = self.base.weight + self.delta_weight()
        norm = self.channel_norm(direction).detach().clamp_min(NORM_FLOOR)
        ratio = (self.magnitude / norm).view(-1, *[1] * (direction.dim() - 1))
        return ratio * direction

    @torch.no_grad()
    def merge(self) -> None:
        """Merging is not additive here, so W0 is kept aside until ``unmerge``."""
        if not self.merged:
            self.unmerged_base_weight = self.base.weight.detach().clone()
        super().merge()

    def unmerged_weight(self) -> torch.Tensor:
        weight, self.unmerged_base_weight = self.unmerged_base_weight, None
        return weight
