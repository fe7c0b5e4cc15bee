"""A PNG overview of simulated subjects: one row per subject, one column per contrast + label maps.

    python -m DiffusionPEFTLib.simulate.montage docs/images/simulator_montage.png

Each row shows the axial slice with the most lesion (or, without lesions, ventricle) volume.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..files import atomic_output
from .subject import Subject, simulate_subject

CONTRAST_TITLES = {"t1": "T1w (SPGR)", "t2": "T2w (SE)", "pd": "PD (SE)", "flair": "FLAIR"}
TISSUE_COLOURS = ["black", "royalblue", "dimgray", "whitesmoke", "cyan"]  # TISSUE_LABELS order
LESION_COLOURS = ["black", "red", "orange", "yellow"]  # LESION_LABELS order
DOC_ROWS = {
    "healthy (A = 0)": dict(),
    "atrophy A = 0.9": dict(atrophy=0.9),
    "tumour": dict(lesions="tumour"),
    "white-matter hyperintensities, A = 0.5": dict(lesions="wmh", atrophy=0.5),
}


def display_slice(subject: Subject) -> int:
    """Axial index (k) with the most lesion volume, else the most ventricle volume."""
    lesion = subject.lesion_labels.data > 0
    weight = lesion if lesion.any() else subject.fractions["ventricles"]
    return int(np.argmax(weight.sum(axis=(0, 1))))


def render_montage(rows: dict[str, Subject], path) -> Path:
    """Write a PNG with a row per named subject: its contrasts, tissue labels, lesion labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    contrasts = list(next(iter(rows.values())).images)
    columns = [CONTRAST_TITLES.get(c, c) for c in contrasts] + ["tissue labels", "lesion labels"]
    figure, axes = plt.subplots(len(rows), len(columns), figsize=(2.0 * len(columns), 2.3 * len(rows)),
                                squeeze=False)
    for row, (name, subject) in enumerate(rows.items()):
        k = display_slice(subject)
        panels = [(subject.images[c].data, "gray", 0.0, float(np.percentile(subject.images[c].data, 99.5)))
                  for c in contrasts]
        panels += [(subject.tissue_labels.data, ListedColormap(TISSUE_COLOURS), 0, len(TISSUE_COLOURS) - 1),
                   (subject.lesion_labels.data, ListedColormap(LESION_COLOURS), 0, len(LESION_COLOURS) - 1)]
        for column, (data, cmap, low, high) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(data[:, :, k].T, origin="lower", cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(columns[column], fontsize=9)
        axes[row, 0].set_ylabel(name, fontsize=8)
    figure.tight_layout()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=90, format="png")
    plt.close(figure)
    return Path(path)


def documentation_rows(seed: int = 1, shape=(96, 112, 96), spacing=2.0) -> dict[str, Subject]:
    """The subjects shown in docs/simulator.md (same seed: the same person in every row)."""
    return {name: simulate_subject(seed, shape, spacing, contrasts="t1,t2,pd,flair", **options)
            for name, options in DOC_ROWS.items()}


if __name__ == "__main__":
    print(render_montage(documentation_rows(), sys.argv[1] if len(sys.argv) > 1 else "simulator_montage.png"))
