"""Measure the numbers behind the contrast check's threshold rule (DiffusionPEFTLib/translation/contrast_check.py).

For each grid: 16 simulated subjects (atrophy 0–0.6, seed 7) and 4 with white-matter lesions (atrophy 0.5,
seed 8); the signature of the first 12 T1w; then the distances from it of the 4 held-out T1w, the lesion T1w and
every T2w, FLAIR and PD. Prints one line per grid.

Usage: python scripts/calibrate_contrast_check.py   (about 20 s on one CPU thread)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.simulate import simulate_cohort
from DiffusionPEFTLib.translation import contrast_check
from DiffusionPEFTLib.volumes import IntensityNormalisation, to_model_grid

CONTRASTS = ("t1", "t2", "flair", "pd")
GRIDS = {3.0: (64, 80, 64), 6.0: (32, 40, 32), 12.0: (16, 20, 16)}


def normalised_images(spacing: float, shape, **cohort) -> dict[str, list[np.ndarray]]:
    """Contrast → the cohort's volumes on the model grid in the model range, as training and translate see them."""
    normalisation = IntensityNormalisation()
    images = {contrast: [] for contrast in CONTRASTS}
    for subject in simulate_cohort(shape=shape, spacing=spacing, contrasts=CONTRASTS, **cohort):
        for contrast in CONTRASTS:
            volume, _ = to_model_grid(subject.images[contrast], shape, (spacing,) * 3)
            images[contrast].append(normalisation.fit(volume.data).apply(volume.data))
    return images


def main() -> None:
    value_range = IntensityNormalisation().range
    for spacing, shape in GRIDS.items():
        cohort = normalised_images(spacing, shape, n=16, seed=7, atrophy=(0.0, 0.6))
        lesions = normalised_images(spacing, shape, n=4, seed=8, atrophy=0.5, lesions="wmh")
        train = cohort["t1"][:12]
        grid = (spacing,) * 3
        signature = contrast_check.source_signature(np.stack(train), value_range, grid)
        histograms = np.stack([contrast_check.ratio_histogram(v, value_range, grid) for v in train])
        spread = contrast_check.leave_one_out_spread(histograms)
        distance = {contrast: [signature.distance(v, value_range, grid) for v in volumes]
                    for contrast, volumes in (("held-out t1", cohort["t1"][12:]), ("lesion t1", lesions["t1"]),
                                              *((c, cohort[c] + lesions[c]) for c in CONTRASTS[1:]))}
        print(f"{spacing:g} mm {'×'.join(map(str, shape))}: spread {spread:.4f}, threshold {signature.threshold:.4f}; "
              f"held-out t1 ≤ {max(distance['held-out t1']):.4f}, lesion t1 ≤ {max(distance['lesion t1']):.4f}; "
              + " ".join(f"{c} ≥ {min(distance[c]):.4f}" for c in CONTRASTS[1:]), flush=True)


if __name__ == "__main__":
    main()
