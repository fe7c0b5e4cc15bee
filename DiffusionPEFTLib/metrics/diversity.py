"""Set-level MS-SSIM: how alike volumes of one set are (diversity) and how alike two sets are.

A generator should match the real cohort on both: samples–reals close to reals–reals, and
samples–samples close to reals–reals (a model that returns the mean image scores high on the
first and far too high on the second). Volumes: sequence of (X, Y, Z) arrays on one grid.
"""

from __future__ import annotations

from itertools import combinations, product

import numpy as np

from ..errors import InputError
from .similarity import ms_ssim


def pairwise_ms_ssim(volumes, data_range: float | None = None, max_pairs: int | None = None) -> float:
    """Mean MS-SSIM over distinct pairs within one set (lower = more diverse)."""
    if len(volumes) < 2:
        raise InputError("Diversity needs at least two volumes.", hint="Generate --n 2 or more.")
    pairs = list(combinations(range(len(volumes)), 2))[:max_pairs]
    return float(np.mean([ms_ssim(volumes[i], volumes[j], data_range) for i, j in pairs]))


def ms_ssim_matrix(volumes, data_range: float | None = None) -> np.ndarray:
    """(N, N) symmetric matrix of MS-SSIM between every two volumes of one set, 1 on the diagonal."""
    matrix = np.eye(len(volumes))
    for i, j in combinations(range(len(volumes)), 2):
        matrix[i, j] = matrix[j, i] = ms_ssim(volumes[i], volumes[j], data_range)
    return matrix


def cross_ms_ssim(set_a, set_b, data_range: float | None = None, max_pairs: int | None = None) -> float:
    """Mean MS-SSIM over all pairs (a, b) with a from ``set_a`` and b from ``set_b``."""
    pairs = list(product(range(len(set_a)), range(len(set_b))))[:max_pairs]
    return float(np.mean([ms_ssim(set_a[i], set_b[j], data_range) for i, j in pairs]))
