"""Contract an einsum network in the cheapest pairwise order (no opt_einsum dependency).

``torch.einsum`` with many operands contracts left to right unless opt_einsum is installed; for
TenVOO's 10-core networks that order builds intermediates of C_in·k³·r⁶ elements. Here the order is
found once per (equation, shapes) by dynamic programming over operand subsets (minimum total
multiply-adds, like opt_einsum's ``optimal``), then replayed as a chain of two-operand einsums.

Size-1 modes broadcast against larger modes of the same letter (numpy/opt_einsum semantics), which
TenVOO-Q's k_h core relies on (reference §2.3 "quirk").
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import torch

Step = tuple[int, int, str]
"""Contract operands at positions (i, j) of the working list with this two-operand equation."""


def contract(equation: str, *operands: torch.Tensor) -> torch.Tensor:
    """Evaluate ``torch.einsum(equation, *operands)`` in the planned pairwise order."""
    steps = contraction_plan(equation, tuple(tuple(op.shape) for op in operands))
    work = list(operands)
    for i, j, pair_equation in steps:
        right = work.pop(j)
        left = work.pop(i)
        work.append(torch.einsum(pair_equation, left, right))
    return work[0]


@functools.lru_cache(maxsize=256)
def contraction_plan(equation: str, shapes: tuple[tuple[int, ...], ...]) -> tuple[Step, ...]:
    """Optimal pairwise order for ``equation`` on operands of ``shapes``; the last step yields the output."""
    inputs, output = _parse(equation)
    if len(inputs) != len(shapes):
        raise ValueError(f"{equation!r} names {len(inputs)} operands, got {len(shapes)}")
    sizes = _mode_sizes(inputs, shapes)
    n = len(inputs)
    if n == 1:
        return ()
    # For every operand subset: the modes its contracted result keeps (needed by the rest or the output).
    full = (1 << n) - 1
    union = [""] * (full + 1)
    for subset in range(1, full + 1):
        low = subset & -subset
        union[subset] = "".join(sorted(set(union[subset ^ low]) | set(inputs[low.bit_length() - 1])))
    kept = [""] * (full + 1)
    for subset in range(1, full + 1):
        outside = set(union[full ^ subset]) | set(output)
        kept[subset] = "".join(m for m in union[subset] if m in outside)

    bit = {mode: 1 << k for k, mode in enumerate(sizes)}
    kept_bits = [sum(bit[m] for m in modes) for modes in kept]
    volume: dict[int, int] = {}  # modes bitmask -> number of elements spanned

    def span(mask: int) -> int:
        if mask not in volume:
            volume[mask] = math.prod(sizes[m] for m in sizes if mask & bit[m])
        return volume[mask]

    best_cost = [0.0] * (full + 1)
    best_split = [0] * (full + 1)
    for subset in sorted(range(1, full + 1), key=lambda s: bin(s).count("1")):
        if subset & (subset - 1) == 0:
            continue
        best = math.inf
        part = (subset - 1) & subset
        while part:
            other = subset ^ part
            if part < other:  # each unordered split once
                cost = best_cost[part] + best_cost[other] + span(kept_bits[part] | kept_bits[other])
                if cost < best:
                    best, best_split[subset] = cost, part
            part = (part - 1) & subset
        best_cost[subset] = best

    steps: list[Step] = []
    work: list[tuple[int, str]] = [(1 << k, inputs[k]) for k in range(n)]  # (subset, modes) per slot

    def build(subset: int) -> None:
        if subset & (subset - 1) == 0:
            return
        part = best_split[subset]
        build(part)
        build(subset ^ part)
        i = next(k for k, (s, _) in enumerate(work) if s == part)
        j = next(k for k, (s, _) in enumerate(work) if s == subset ^ part)
        result = output if subset == full else kept[subset]
        steps.append((min(i, j), max(i, j), f"{work[min(i, j)][1]},{work[max(i, j)][1]}->{result}"))
        for k in sorted((i, j), reverse=True):
            work.pop(k)
        work.append((subset, result))

    build(full)
    return tuple(steps)


def _parse(equation: str) -> tuple[list[str], str]:
    equation = equation.replace(" ", "")
    lhs, output = equation.split("->")
    return lhs.split(","), output


def _mode_sizes(inputs: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for modes, shape in zip(inputs, shapes):
        if len(modes) != len(shape):
            raise ValueError(f"operand {modes!r} has shape {shape}")
        for mode, size in zip(modes, shape):
            if sizes.get(mode, 1) not in (1, size) and size != 1:
                raise ValueError(f"mode {mode!r} has sizes {sizes[mode]} and {size}")
            sizes[mode] = max(sizes.get(mode, 1), size)
    return sizes
