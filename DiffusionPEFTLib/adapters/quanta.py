"""QuanTA two-axis gates on an ``nn.Linear`` — TenVOO's Linear layer (reference §2.4, d = 3).

Features are read as (n1, n2, n3) (``factorise.tenvoo_factors``) and three gates act on the axis pairs
(3,2), (3,1), (2,1); contracting them gives the full update matrix (out, in) with the equation of
QuanTA's ``gen_einsum_expr_eval`` for d = 3: ``efbc,diaf,ghde->ghiabc``
(inputs a,b,c = i1,i2,i3; outputs g,h,i = o1,o2,o3).

Gate shapes:
  square (same factors in and out): full gates (n2,n3,n2,n3), (n1,n3,n1,n3), (n1,n2,n1,n2); rank unused.
      128 -> 4,608 parameters; 256 -> 6,144; 512 -> 21,504.
  otherwise: rank-bottlenecked (r,r,i2,i3), (r,o3,i1,r), (o1,o2,r,r): r²(i2·i3 + o3·i1 + o1·o2).
Gates start random (kaiming, gain 1 on the (d0·d1, d2·d3) view); zero start via θ − θ0 as for TenVOO.
ΔW is materialised (it is small) rather than contracting the input, so the forward is one F.linear.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import AdapterError
from .factorise import tenvoo_factors
from .tensor_network import TensorNetworkAdapter

QUANTA_EQUATION = "efbc,diaf,ghde->ghiabc"


def quanta_gate_shapes(n: Sequence[int], m: Sequence[int], r: int) -> list[tuple[int, ...]]:
    """Gate shapes for input factors ``n`` and output factors ``m``."""
    if tuple(n) == tuple(m):
        return [(n[1], n[2], n[1], n[2]), (n[0], n[2], n[0], n[2]), (n[0], n[1], n[0], n[1])]
    return [(r, r, n[1], n[2]), (r, m[2], n[0], r), (m[0], m[1], r, r)]


class QuanTALinear(TensorNetworkAdapter):
    """TenVOO's adapter for ``nn.Linear`` (attention projections, time embeddings)."""

    equation = QUANTA_EQUATION

    def __init__(self, base: nn.Linear, rank: int, factors: Mapping[int, Sequence[int]] | None = None):
        if not isinstance(base, nn.Linear):
            raise AdapterError(f"QuanTALinear wraps nn.Linear, not {type(base).__name__}.")
        self.in_factors = tenvoo_factors(base.in_features, factors)
        self.out_factors = tenvoo_factors(base.out_features, factors)
        shapes = quanta_gate_shapes(self.in_factors, self.out_factors, rank)
        super().__init__(base, rank, shapes, [s[2] * s[3] for s in shapes], gain=1.0)

    @property
    def uses_rank(self) -> bool:
        """False for square gates (same factors in and out), where the rank plays no part."""
        return self.in_factors != self.out_factors

    def to_weight_layout(self, network: torch.Tensor) -> torch.Tensor:
        return network.reshape(self.base.out_features, self.base.in_features)

    def extra_repr(self) -> str:
        rank = f"rank={self.rank}" if self.uses_rank else "square gates (rank unused)"
        return f"QuanTA {list(self.in_factors)}->{list(self.out_factors)}, {rank}, merged={self.merged}"
