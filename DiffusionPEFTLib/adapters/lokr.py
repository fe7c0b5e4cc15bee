"""LoKr (KronA / LyCORIS): ΔW = s · W1 ⊗ W2, s = α/r (α defaults to r).

C_out = a·c and C_in = b·d with (a, c) and (b, d) the most square splits (a ≤ c, b ≤ d;
``factorise.most_square_split``). W1 (``kron_left``, a×b) is full; W2 = B2·A2 (``up`` c×r, ``down``
r×(d·k³)) is low rank and is viewed as (c, d, k_d, k_h, k_w) before the Kronecker product, so the
kernel layout is kept. Init as peft: W1 = 0, B2 and A2 kaiming(a=√5); ΔW = 0 at step 0.
Parameters: a·b + r·(c + d·k³).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import LORA_DOWN_GAIN, AdapterLayer, kaiming_uniform_
from .factorise import most_square_split


class LoKrLayer(AdapterLayer):
    """Kronecker product of a small full matrix and a low-rank matrix."""

    def __init__(self, base: nn.Conv3d | nn.Linear, rank: int, alpha: float | None = None, factor: int = -1):
        super().__init__(base, rank)
        self.alpha = float(rank if alpha is None else alpha)
        self.scale = self.alpha / rank
        c_out, c_in, *kernel = base.weight.shape
        a, c = most_square_split(c_out, factor)
        b, d = most_square_split(c_in, factor)
        self.right_shape = (c, d, *kernel)
        right_fan_in = d * self.fan_in // c_in
        self.kron_left = nn.Parameter(self.new_tensor(a, b).zero_())
        self.up = nn.Parameter(kaiming_uniform_(self.new_tensor(c, rank), rank, LORA_DOWN_GAIN))
        self.down = nn.Parameter(kaiming_uniform_(self.new_tensor(rank, right_fan_in), right_fan_in, LORA_DOWN_GAIN))

    def delta_weight(self) -> torch.Tensor:
        right = (self.up @ self.down).view(self.right_shape)
        left = self.kron_left.view(*self.kron_left.shape, *[1] * (right.dim() - 2))  # kernel dims untouched
        return self.scale * torch.kron(left, right)

    def extra_repr(self) -> str:
        a, b = self.kron_left.shape
        return f"rank={self.rank}, alpha={self.alpha:g}, left={a}x{b}, right={self.right_shape}, merged={self.merged}"
