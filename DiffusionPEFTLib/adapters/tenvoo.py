"""TenVOO (Li et al., MICCAI 2025): a 3D kernel update ΔW as a 10-core loopy tensor network.

C_in = i1·i2·i3 and C_out = o1·o2·o3 (``factorise.tenvoo_factors``); k_d, k_h, k_w get one core each;
every bond has size r. The equations are those of xiaovhua/tenvoo ``peft/tenvoo.py`` verbatim
(reference §2.3); the contraction gives T with shape (i1, i2, i3, k_d, k_h, k_w, o1, o2, o3), read as
(C_in, k_d, k_h, k_w, C_out) row-major and permuted to the Conv3d layout (C_out, C_in, k_d, k_h, k_w).

TenVOO-L: chain (i1i2)–i3–k_d–k_h–k_w–o3–(o1o2) plus an input hub, an output hub and a centre core.
TenVOO-Q: three hubs in a triangle; its k_h core is (k_h, 1, r, r), so the size-1 mode broadcasts
against k_d's bond and the k_h core acts as a (k_h × r) matrix attached to k_w only — the reference's
quirk, reproduced on purpose.

Parameters per Conv3d (k = kernel size, C_in factors n, C_out factors m):
  L: r²(n1n2 + m1m2) + r³(n3 + m3 + 3k + 1) + 2r⁴
  Q: r²(n1n2 + m1m2 + k) + r³(n3 + m3 + 2k) + 3r⁴
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import AdapterError
from .factorise import tenvoo_factors
from .tensor_network import TensorNetworkAdapter

TENVOO_EQUATIONS = {
    "l": "bade, cefg, xghi, yijk, zklm, Cmno, BopA, fdqh, lrpn, jqr -> abcxyzABC",
    "q": "bade, cefg, xghi, yijk, zjlm, Cmop, BpqA, oqrs, dftr, hlst -> abcxyzABC",
}

RELU_GAIN = math.sqrt(2.0)


def tenvoo_core_shapes(variant: str, n: Sequence[int], m: Sequence[int], kernel: Sequence[int],
                       r: int) -> list[tuple[int, ...]]:
    """Shapes of cores 0..9 (reference parameter keys '0'..'9')."""
    kd, kh, kw = kernel
    chain = [(n[1], n[0], r, r), (n[2], r, r, r), (kd, r, r, r)]
    tail = [(kw, r, r, r), (m[2], r, r, r), (m[1], r, r, m[0]), (r, r, r, r), (r, r, r, r)]
    if variant == "l":
        return chain + [(kh, r, r, r)] + tail + [(r, r, r)]
    return chain + [(kh, 1, r, r)] + tail + [(r, r, r, r)]


def tenvoo_core_fan_in(shape: tuple[int, ...]) -> int:
    """Fan-in the reference's kaiming_uniform_ sees: 4-D cores as (d0·d1, d2·d3), the 3-D core as (d0·d1/2, 2·d2)."""
    return shape[2] * shape[3] if len(shape) == 4 else 2 * shape[2]


class TenVOOConv3d(TensorNetworkAdapter):
    """TenVOO-L (``variant='l'``) or TenVOO-Q (``'q'``) on an ``nn.Conv3d``."""

    def __init__(self, base: nn.Conv3d, rank: int, variant: str = "l",
                 factors: Mapping[int, Sequence[int]] | None = None):
        if variant not in TENVOO_EQUATIONS:
            raise AdapterError(f"Unknown TenVOO variant {variant!r}.", hint="Use 'l' or 'q'.")
        if not isinstance(base, nn.Conv3d):
            raise AdapterError(f"TenVOOConv3d wraps nn.Conv3d, not {type(base).__name__}.")
        c_out, c_in, *kernel = base.weight.shape
        self.variant = variant
        self.equation = TENVOO_EQUATIONS[variant]
        self.in_factors = tenvoo_factors(c_in, factors)
        self.out_factors = tenvoo_factors(c_out, factors)
        shapes = tenvoo_core_shapes(variant, self.in_factors, self.out_factors, kernel, rank)
        super().__init__(base, rank, shapes, [tenvoo_core_fan_in(s) for s in shapes], RELU_GAIN)

    def to_weight_layout(self, network: torch.Tensor) -> torch.Tensor:
        c_out, c_in, kd, kh, kw = self.base.weight.shape
        return network.reshape(c_in, kd, kh, kw, c_out).permute(4, 0, 1, 2, 3)

    def extra_repr(self) -> str:
        return (f"TenVOO-{self.variant.upper()}, rank={self.rank}, in={list(self.in_factors)}, "
                f"out={list(self.out_factors)}, merged={self.merged}")
