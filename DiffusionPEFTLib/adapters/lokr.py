"""LoKr (KronA / LyCORIS): ΔW = s · W1 ⊗ W2, s = α/r (α defaults to r).

C_out = a·c and C_in = b·d with (a, c) and (b, d) the most square splits (a ≤ c, b ≤ d;
``factorise.most_square_split``). W1 (``kron_left``, a×b) is full. W2 (c × d·k³) is viewed as
(c, d, k_d, k_h, k_w) before the Kronecker product, so the kernel layout is kept. As in peft and LyCORIS,
W2 is low rank, ``up`` (c, r) @ ``down`` (r, d·k³), only while r < max(c, d)/2; from there on a rank-r
product would cost about as much as the matrix, so W2 is the full ``kron_right`` (c, d·k³) instead.
Init as peft: W1 = 0, W2's factors (or W2) kaiming(a=√5); ΔW = 0 at step 0. The scale stays α/r with a
full W2 too (peft; LyCORIS would use 1 there — the same for the default α = r).
Parameters: a·b + r·(c + d·k³), or a·b + c·d·k³ with a full W2.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import LORA_DOWN_GAIN, AdapterLayer, kaiming_uniform_
from .factorise import most_square_split


class LoKrLayer(AdapterLayer):
    """Kronecker product of a small full matrix and a low-rank (or, at high rank, full) matrix."""

    def __init__(self, base: nn.Conv3d | nn.Linear, rank: int, alpha: float | None = None, factor: int = -1):
        super().__init__(base, rank)
        self.alpha = float(rank if alpha is None else alpha)
        self.scale = self.alpha / rank
        c_out, c_in, *kernel = base.weight.shape
        a, c = most_square_split(c_out, factor)
        b, d = most_square_split(c_in, factor)
        self.right_shape = (c, d, *kernel)
        right_fan_in = d * self.fan_in // c_in
        self.full_right = rank >= max(c, d) / 2
        self.kron_left = nn.Parameter(self.new_tensor(a, b).zero_())
        if self.full_right:
            self.kron_right = nn.Parameter(
                kaiming_uniform_(self.new_tensor(c, right_fan_in), right_fan_in, LORA_DOWN_GAIN))
        else:
            self.up = nn.Parameter(kaiming_uniform_(self.new_tensor(c, rank), rank, LORA_DOWN_GAIN))
            self.down = nn.Parameter(
                kaiming_uniform_(self.new_tensor(rank, right_fan_in), right_fan_in, LORA_DOWN_GAIN))

    def right_factor(self) -> torch.Tensor:
        """W2, shape (c, d·k³): ``kron_right`` or ``up @ down``."""
        return self.kron_right if self.full_right else self.up @ self.down

    def delta_weight(self) -> torch.Tensor:
        right = self.right_factor().view(self.right_shape)
        left = self.kron_left.view(*self.kron_left.shape, *[1] * (right.dim() - 2))  # kernel dims untouched
        return self.scale * torch.kron(left, right)

    def extra_repr(self) -> str:
        a, b = self.kron_left.shape
        right = "full" if self.full_right else f"rank {self.rank}"
        return (f"rank={self.rank}, alpha={self.alpha:g}, left={a}x{b}, right={self.right_shape} ({right}), "
                f"merged={self.merged}")
