"""Split channel counts into factors: TenVOO's 3-way table and LoKr's most-square 2-way split."""

from __future__ import annotations

from typing import Mapping, Sequence

from ..errors import AdapterError

TENVOO_FACTORS: dict[int, tuple[int, int, int]] = {
    1: (1, 1, 1), 2: (2, 1, 1), 4: (2, 2, 1), 6: (3, 2, 1), 8: (2, 2, 2), 12: (4, 3, 1),
    16: (4, 2, 2), 24: (4, 3, 2), 32: (4, 4, 2), 48: (8, 3, 2), 64: (8, 4, 2), 96: (8, 4, 3),
    128: (8, 8, 2), 192: (8, 6, 4), 256: (8, 8, 4), 384: (8, 8, 6), 512: (16, 8, 4),
    768: (16, 8, 6), 1024: (16, 16, 4),
}
"""``TENVOO_LIST`` of the reference code (xiaovhua/tenvoo, peft/tenvoo.py): C -> (n1, n2, n3), n1·n2·n3 = C."""


def tenvoo_factors(channels: int, overrides: Mapping[int, Sequence[int]] | None = None) -> tuple[int, int, int]:
    """(n1, n2, n3) with n1·n2·n3 = channels: an override, else the reference table, else the most balanced split.

    The balanced fallback picks n1 ≥ n2 ≥ n3 minimising n1 (then n2), e.g. 80 -> (5, 4, 4), 7 -> (7, 1, 1).
    """
    overrides = {int(c): f for c, f in (overrides or {}).items()}  # JSON keys arrive as strings
    if channels in overrides:
        factors = tuple(int(f) for f in overrides[channels])
        if len(factors) != 3 or min(factors) < 1 or factors[0] * factors[1] * factors[2] != channels:
            raise AdapterError(
                f"TenVOO factors {list(factors)} for {channels} channels are not three positive numbers "
                f"whose product is {channels}.",
                hint=f"Give three factors that multiply to {channels}, or drop the override to use the default split.",
            )
        return factors  # type: ignore[return-value]
    if channels in TENVOO_FACTORS:
        return TENVOO_FACTORS[channels]
    return balanced_factors(channels)


def balanced_factors(channels: int) -> tuple[int, int, int]:
    """Most balanced n1 ≥ n2 ≥ n3 with n1·n2·n3 = channels."""
    best = (channels, 1, 1)
    for n3 in range(1, round(channels ** (1 / 3)) + 2):
        if channels % n3:
            continue
        rest = channels // n3
        for n2 in range(n3, int(rest**0.5) + 1):
            if rest % n2 == 0:
                candidate = (rest // n2, n2, n3)
                if candidate[:2] < best[:2]:
                    best = candidate
    return best


def most_square_split(dimension: int, max_factor: int = -1) -> tuple[int, int]:
    """(m, n) with m ≤ n, m·n = dimension, m as close to √dimension as allowed (LyCORIS ``factorization``).

    ``max_factor`` > 0 that divides ``dimension`` is used as m directly; otherwise m ≤ max_factor.
    Examples: 32 -> (4, 8), 256 -> (16, 16), 512 -> (16, 32).
    """
    if max_factor > 0 and dimension % max_factor == 0:
        m, n = max_factor, dimension // max_factor
        return (m, n) if m <= n else (n, m)
    limit = dimension if max_factor <= 0 else max_factor
    m, n = 1, dimension
    while m < n:
        new_m = m + 1
        while dimension % new_m:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > m + n or new_m > limit:
            break
        m, n = new_m, new_n
    return (m, n) if m <= n else (n, m)
