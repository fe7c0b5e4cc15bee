"""Fréchet distance between two sets of volumes in feature space (FID; Heusel et al. 2017).

FID = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½) of the feature means μ and covariances Σ,
computed by MONAI's ``FIDMetric``. Units: squared feature units (the shipped network's are scaled so
that the training volumes' total variance is D = 128; a set of one repeated volume is at least the
other set's total variance tr Σ away). The estimate is biased upwards for small sets (it grows about
as D / n): compare values only between sets of equal size.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import torch
from torch import nn

from ..errors import InputError
from .features import volume_features


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """FID between feature sets (N, D) and (M, D), N, M ≥ 2; 0 for identical sets (clipped at 0)."""
    from monai.metrics import FIDMetric

    if len(features_a) < 2 or len(features_b) < 2:
        raise InputError("FID needs at least two volumes in each set.", hint="Use more samples and references.")
    # MONAI's sqrtm warns about the singular covariances of small sets and may print to stdout,
    # which would break the JSON-lines event stream.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        value = FIDMetric()(features_a.double(), features_b.double())
    return max(float(value), 0.0)


def fid(set_a, set_b, network: nn.Module | None = None) -> float:
    """FID between two sets of volumes (lists of (X, Y, Z) arrays in the model range, or Volumes)."""
    return frechet_distance(volume_features(set_a, network), volume_features(set_b, network))
