"""Cohort-level assessment of a generator: realism, diversity and distribution distance.

samples, reals: lists of (X, Y, Z) arrays on the model grid in the model's intensity range.
Two families of numbers, each beside the level it must be read against:

- pixel space: MS-SSIM sample–real next to the cohort's own real–real level (a ratio above 1 means
  "closer to the reals than they are to each other", which blurry or mean-like samples achieve), and
  voxel MMD²;
- feature space (the shipped 3D feature network unless another is given): FID, feature MMD²,
  precision/recall/density/coverage, and the Vendi score (effective number of distinct volumes) of the
  samples next to the reals' own, on features and on MS-SSIM.

The training-set mean image is the baseline a generator must beat: it scores well on MS-SSIM-to-real
while having no diversity at all, and badly on FID, MMD and Vendi.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from .metrics import cross_ms_ssim, mmd, pairwise_ms_ssim
from .metrics.distribution import kernel_mmd
from .metrics.features import volume_features
from .metrics.frechet import frechet_distance
from .metrics.manifold import manifold_scores
from .metrics.vendi import cosine_vendi, ms_ssim_vendi

NEIGHBOURS = 3  # k of precision/recall/density/coverage (Naeem et al. 2020 use 5 on thousands of images)


def assess_samples(samples, reals, train_mean: np.ndarray | None = None, data_range: float = 2.0,
                   max_pairs: int = 64, network: nn.Module | None = None) -> dict[str, float]:
    """Every number of the assessment (see the module docstring); ``*_mean_real`` ones score the mean image."""
    result = {
        "ms_ssim_sample_real": cross_ms_ssim(samples, reals, data_range, max_pairs),
        "ms_ssim_real_real": pairwise_ms_ssim(reals, data_range, max_pairs),
        "ms_ssim_sample_sample": pairwise_ms_ssim(samples, data_range, max_pairs),
        "mmd_sample_real": mmd(samples, reals),
    }
    result["realism_ratio"] = result["ms_ssim_sample_real"] / result["ms_ssim_real_real"]
    result["diversity_ratio"] = result["ms_ssim_sample_sample"] / result["ms_ssim_real_real"]
    real_features = volume_features(reals, network)
    result.update(feature_scores(samples, reals, real_features, network, data_range))
    if train_mean is not None:
        means = [train_mean] * len(samples)
        result["ms_ssim_mean_real"] = cross_ms_ssim([train_mean], reals, data_range, max_pairs)
        result["mmd_mean_real"] = mmd(means, reals)
        mean_features = volume_features([train_mean], network).expand(len(samples), -1)  # one volume, repeated
        result.update({f"{name}_mean_real": value for name, value in
                       feature_distances(mean_features, real_features).items()})
    return result


def feature_distances(generated, real) -> dict[str, float]:
    """FID and feature MMD² between feature sets (M, D) and (N, D)."""
    return {"fid": frechet_distance(generated, real), "feature_mmd": kernel_mmd(generated, real)}


def feature_scores(samples, reals, real, network, data_range: float) -> dict[str, float]:
    """Feature-space distances, manifold scores and Vendi scores of the samples against the reals (``real``:
    their features, (N, D))."""
    generated = volume_features(samples, network)
    result = {f"{name}_sample_real": value for name, value in feature_distances(generated, real).items()}
    k = min(NEIGHBOURS, len(samples) - 1, len(reals) - 1)
    if k >= 1:
        result.update(manifold_scores(real, generated, k))
        result["manifold_k"] = k
    for name, features in (("samples", generated), ("reals", real)):
        result[f"vendi_features_{name}"] = cosine_vendi(features)
    result["vendi_ms_ssim_samples"] = ms_ssim_vendi(samples, data_range)
    result["vendi_ms_ssim_reals"] = ms_ssim_vendi(reals, data_range)
    return result
