"""Cohort-level assessment of a generator: realism, diversity and distribution distance.

samples, reals: lists of (X, Y, Z) arrays on the model grid in the model's intensity range.
The training-set mean image is the baseline a generator must beat on MMD (it scores well on
MS-SSIM-to-real while having no diversity at all).
"""

from __future__ import annotations

import numpy as np

from .metrics import cross_ms_ssim, mmd, pairwise_ms_ssim


def assess_samples(samples, reals, train_mean: np.ndarray | None = None, data_range: float = 2.0,
                   max_pairs: int = 64) -> dict[str, float]:
    """Return MS-SSIM sample–real, real–real, sample–sample, their ratios, and MMD (± mean baseline)."""
    result = {
        "ms_ssim_sample_real": cross_ms_ssim(samples, reals, data_range, max_pairs),
        "ms_ssim_real_real": pairwise_ms_ssim(reals, data_range, max_pairs),
        "ms_ssim_sample_sample": pairwise_ms_ssim(samples, data_range, max_pairs),
        "mmd_sample_real": mmd(samples, reals),
    }
    result["realism_ratio"] = result["ms_ssim_sample_real"] / result["ms_ssim_real_real"]
    result["diversity_ratio"] = result["ms_ssim_sample_sample"] / result["ms_ssim_real_real"]
    if train_mean is not None:
        means = [train_mean] * len(samples)
        result["ms_ssim_mean_real"] = cross_ms_ssim([train_mean], reals, data_range, max_pairs)
        result["mmd_mean_real"] = mmd(means, reals)
    return result
