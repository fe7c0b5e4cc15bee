"""Does a source look like the contrast a translation model was trained on? A compact intensity signature.

The signature of one volume (on the model grid, normalised into the model's range [low, high]) is the histogram
of its **local intensity ratios**: every foreground voxel (value above low + ``foreground`` · (high − low)) divided
by the Gaussian-weighted mean (σ = ``smoothing_mm``) of the foreground around it, both measured from ``low``. The
ratio keeps what tells contrasts apart (T1w: white matter brighter than its surroundings, CSF darker; T2w: CSF
brightest; FLAIR: CSF black) and cancels a smooth bias field, which on the simulator moves a plain histogram of a
T1w as far as the difference between T1w and FLAIR. The model stores the mean signature of its training sources
and a threshold; a source whose signature lies further from it (1-Wasserstein distance, in ratio units) is said
to look like another contrast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
from scipy import ndimage

BINS = 32
RATIO_RANGE = (0.0, 2.0)  # local ratios above 2 count in the last bin
FOREGROUND = 0.1  # fraction of the model range above its low end
SMOOTHING_MM = 15.0
# The threshold is SPREAD_FACTOR × the training sources' spread (the largest distance of one source from the mean
# of the others), and at least MIN_THRESHOLD. Measured on the simulator by scripts/calibrate_contrast_check.py
# (16 subjects with atrophy 0–0.6 + 4 with white-matter lesions; signature of 12 T1w, the rest held out), the
# distances from the T1w signature; a held-out T1w lies about as far as the spread:
#   3 mm (64×80×64): spread 0.0077, held-out T1w ≤ 0.0080, lesion T1w ≤ 0.0053; FLAIR ≥ 0.041, PD ≥ 0.051, T2w ≥ 0.105
#       → threshold 0.016: about 2× above every T1w and 2.6× below every other contrast;
#   6 mm (32×40×32): spread 0.0117, T1w ≤ 0.0096; FLAIR ≥ 0.022, PD ≥ 0.031, T2w ≥ 0.072 → 0.023 (some FLAIR are missed);
#   12 mm (16×20×16): spread 0.0152, T1w ≤ 0.0175; T2w ≥ 0.039, PD ≥ 0.017, FLAIR ≥ 0.007 → 0.030 (T2w only).
# A plain histogram of the normalised values (32 bins over the model range) does not separate them: on 6 subjects
# at 3 mm, a T1w lies up to 0.074 normalised units from the mean of the other T1w, a FLAIR from 0.068, a PD from 0.054.
SPREAD_FACTOR = 2.0
MIN_THRESHOLD = 0.015


@dataclass(frozen=True)
class SourceSignature:
    """What model.json's ``translation.source_signature`` holds.

    bins: the mean histogram of the training sources' local ratios (``BINS`` values summing to 1); range: the
    ratio range the bins cover; smoothing_mm, foreground: how the ratios were measured (see the module);
    threshold: the largest distance (ratio units) at which a source still looks like the training sources."""

    bins: tuple[float, ...]
    range: tuple[float, float] = RATIO_RANGE
    smoothing_mm: float = SMOOTHING_MM
    foreground: float = FOREGROUND
    threshold: float = MIN_THRESHOLD

    def to_dict(self) -> dict:
        return {**asdict(self), "bins": list(self.bins), "range": list(self.range)}

    @classmethod
    def from_dict(cls, spec: dict) -> SourceSignature:
        return cls(**{**spec, "bins": tuple(float(v) for v in spec["bins"]),
                      "range": tuple(float(v) for v in spec["range"])})

    def distance(self, volume: np.ndarray, value_range, spacing) -> float:
        """1-Wasserstein distance (ratio units) between this signature and the histogram of ``volume`` (X, Y, Z),
        normalised into ``value_range`` on a grid of ``spacing`` mm, measured as the signature was."""
        histogram = ratio_histogram(volume, value_range, spacing, len(self.bins), self.range, self.smoothing_mm,
                                    self.foreground)
        return wasserstein(histogram, np.asarray(self.bins), self.range)


def ratio_histogram(volume: np.ndarray, value_range, spacing, bins: int = BINS, ratio_range=RATIO_RANGE,
                    smoothing_mm: float = SMOOTHING_MM, foreground: float = FOREGROUND) -> np.ndarray:
    """(bins,) histogram, summing to 1, of the local ratios of ``volume``: (X, Y, Z) float in the model's
    normalised ``value_range`` (low, high) on a grid of ``spacing`` mm per voxel (3 values). A volume
    without foreground (nothing above the threshold) gives all zeros."""
    low, high = value_range
    above = np.asarray(volume, dtype=np.float32) - np.float32(low)
    mask = (above > foreground * (high - low)).astype(np.float32)
    if not mask.any():
        return np.zeros(bins)
    sigma = smoothing_mm / np.asarray(spacing, dtype=np.float64)
    weight = ndimage.gaussian_filter(mask, sigma, mode="constant")
    local_mean = ndimage.gaussian_filter(above * mask, sigma, mode="constant") / np.maximum(weight, 1e-6)
    inside = mask > 0
    ratios = np.clip(above[inside] / local_mean[inside], *ratio_range)
    counts, _ = np.histogram(ratios, bins=bins, range=ratio_range)
    return counts / counts.sum()


def wasserstein(a: np.ndarray, b: np.ndarray, value_range) -> float:
    """1-Wasserstein distance between two histograms on the same equal bins over ``value_range``
    (Σ |CDF_a − CDF_b| · bin width, in the range's units)."""
    width = (value_range[1] - value_range[0]) / len(a)
    return float(np.abs(np.cumsum(np.asarray(a) - np.asarray(b))).sum() * width)


def leave_one_out_spread(histograms: np.ndarray) -> float:
    """The largest distance (ratio units) of one of the (N, bins) ``histograms`` from the mean of the others;
    0 for N = 1."""
    count = len(histograms)
    if count < 2:
        return 0.0
    total = histograms.sum(axis=0)
    return max(wasserstein(h, (total - h) / (count - 1), RATIO_RANGE) for h in histograms)


def source_signature(sources: Iterable[np.ndarray], value_range, spacing) -> SourceSignature:
    """The signature of training ``sources``: (N, X, Y, Z) normalised volumes on the model grid (``spacing`` mm),
    or any iterable of such (X, Y, Z) volumes (streamed ones), with the threshold of the rule above."""
    histograms = np.stack([ratio_histogram(volume, value_range, spacing) for volume in sources])
    return SourceSignature(tuple(float(v) for v in histograms.mean(axis=0)),
                           threshold=max(MIN_THRESHOLD, SPREAD_FACTOR * leave_one_out_spread(histograms)))
