"""Summaries over subjects and maps: mean ± sample std, and how an uncertainty map follows the error."""

from __future__ import annotations

import statistics

import numpy as np


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample std) of per-subject values; std 0 for one value."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def uncertainty_error_correlation(std: np.ndarray, prediction: np.ndarray, truth: np.ndarray,
                                  mask: np.ndarray) -> float:
    """Pearson r between the per-voxel std of the samples and the absolute error, inside ``mask``."""
    return float(np.corrcoef(std[mask], np.abs(prediction - truth)[mask])[0, 1])
