"""Distribution distance between two sets of volumes: kernel MMD² with a Gaussian kernel.

Each volume becomes a vector — its voxels (``mmd``, optionally block-averaged by ``pool``) or its
feature-network features (``feature_mmd``) — and the sets are compared with
k(a, b) = exp(−‖a − b‖² / (2 h²)), h = the median pairwise distance of the pooled sets (median
heuristic). Unlike MS-SSIM-to-real, a set of identical blurry mean images scores badly here
because it lacks the real set's spread.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from .features import volume_features


def _voxels(volumes, pool: int) -> torch.Tensor:
    stack = torch.as_tensor(np.stack([np.asarray(v, dtype=np.float32) for v in volumes]))[:, None]
    if pool > 1:
        stack = F.avg_pool3d(stack, pool, ceil_mode=True)
    return stack.flatten(1).double()


def kernel_mmd(a: torch.Tensor, b: torch.Tensor, bandwidth: float | None = None) -> float:
    """Unbiased MMD² estimate between vector sets (N, D) and (M, D), N, M ≥ 2; 0 ≈ same distribution."""
    if len(a) < 2 or len(b) < 2:
        raise InputError("MMD needs at least two volumes in each set.", hint="Use more samples and references.")
    a, b = a.double(), b.double()
    everything = torch.cat([a, b])
    distances = torch.cdist(everything, everything) ** 2
    if bandwidth is None:
        upper = distances[torch.triu(torch.ones_like(distances, dtype=torch.bool), diagonal=1)]
        bandwidth = float(upper.median().sqrt())
    kernel = torch.exp(-distances / (2 * max(bandwidth, 1e-12) ** 2))
    n, m = len(a), len(b)
    k_aa, k_bb, k_ab = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (n * (n - 1))
    within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
    return float(within_a + within_b - 2 * k_ab.mean())


def mmd(set_a, set_b, pool: int = 2, bandwidth: float | None = None) -> float:
    """MMD² between two sets of (X, Y, Z) arrays of one grid, on their (block-averaged) voxels."""
    return kernel_mmd(_voxels(set_a, pool), _voxels(set_b, pool), bandwidth)


def feature_mmd(set_a, set_b, network: nn.Module | None = None, bandwidth: float | None = None) -> float:
    """MMD² between two sets of volumes on their feature-network features (shipped network by default)."""
    return kernel_mmd(volume_features(set_a, network), volume_features(set_b, network), bandwidth)
