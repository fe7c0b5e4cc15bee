"""LoRA / LoCon: ΔW = s · B·A with s = α/r (α defaults to r, so s = 1).

A = ``lora_down`` (r, fan_in) and B = ``lora_up`` (out, r). On a Conv3d this is LoCon: A is a k×k×k
convolution C_in → r and B a 1×1×1 convolution r → C_out, ΔW[o, i, …] = s·Σ_ρ B[o, ρ]·A[ρ, i, …] (the
same ΔW as HF peft's ``get_delta_weight``). Init as peft: A kaiming_uniform(a=√5), B = 0.
Parameters: r·(fan_in + out), Conv3d fan_in = C_in·k³.
Input dropout is not offered: it needs a side branch over the activations, which we avoid.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import LORA_DOWN_GAIN, AdapterLayer, kaiming_uniform_


class LoRALayer(AdapterLayer):
    """Low-rank pair (``lora_up`` @ ``lora_down``) scaled by α/r."""

    def __init__(self, base: nn.Conv3d | nn.Linear, rank: int, alpha: float | None = None):
        super().__init__(base, rank)
        self.alpha = float(rank if alpha is None else alpha)
        self.scale = self.alpha / rank
        self.lora_down = nn.Parameter(kaiming_uniform_(self.new_tensor(rank, self.fan_in), self.fan_in, LORA_DOWN_GAIN))
        self.lora_up = nn.Parameter(self.new_tensor(self.out_features, rank).zero_())

    def low_rank_product(self) -> torch.Tensor:
        """B·A, shape (out, fan_in)."""
        return self.lora_up @ self.lora_down

    def delta_weight(self) -> torch.Tensor:
        return (self.scale * self.low_rank_product()).view_as(self.base.weight)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"
