"""Fidelity and coverage of generated volumes by k-nearest-neighbour balls in feature space.

Each real feature x_i gets a ball of radius r_k(x_i) = distance to its k-th nearest other real
feature (likewise for the generated ones). With N reals and M samples:

- precision (Kynkäänniemi et al. 2019): fraction of samples inside at least one real ball;
- recall: fraction of reals inside at least one sample ball;
- density (Naeem et al. 2020): Σ_j #{real balls holding sample j} / (k M) — about 1 when samples
  are distributed like the reals, above 1 when they crowd the dense regions (a mean-like generator);
- coverage (Naeem et al. 2020): fraction of real balls holding at least one sample.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from .features import volume_features


def _radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) distance of each row to its k-th nearest other row."""
    distances = torch.cdist(features, features)
    return distances.topk(k + 1, dim=1, largest=False).values[:, k]  # column 0 is the row itself


def manifold_scores(real: torch.Tensor, generated: torch.Tensor, k: int = 3) -> dict[str, float]:
    """Precision, recall, density and coverage of feature sets real (N, D) and generated (M, D); N, M > k."""
    if k < 1 or len(real) <= k or len(generated) <= k:
        raise InputError(f"Precision and recall with k = {k} need more than {k} volumes in each set "
                         f"(got {len(real)} real and {len(generated)} generated).",
                         hint="Use more volumes, or a smaller k.")
    real, generated = real.double(), generated.double()
    real_radii, generated_radii = _radii(real, k), _radii(generated, k)
    inside_real = torch.cdist(real, generated) <= real_radii[:, None]  # (N, M): sample j in real ball i
    inside_generated = torch.cdist(generated, real) <= generated_radii[:, None]  # (M, N): real i in sample ball j
    return {
        "precision": float(inside_real.any(0).double().mean()),
        "recall": float(inside_generated.any(0).double().mean()),
        "density": float(inside_real.sum() / (k * len(generated))),
        "coverage": float(inside_real.any(1).double().mean()),
    }


def precision_recall(reals, samples, k: int = 3, network: nn.Module | None = None) -> dict[str, float]:
    """Precision, recall, density and coverage of ``samples`` against ``reals`` (lists of volumes) on
    feature-network features; see the module docstring."""
    return manifold_scores(volume_features(reals, network), volume_features(samples, network), k)
