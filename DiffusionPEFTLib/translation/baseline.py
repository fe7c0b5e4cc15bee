"""What a user would do instead of a translation model: histogram-match the source to the target contrast."""

from __future__ import annotations

import numpy as np


def histogram_matched(source: np.ndarray, targets: list[np.ndarray]) -> np.ndarray:
    """``source`` (X, Y, Z) with its intensity histogram mapped onto that of example ``targets`` (volumes of
    the target contrast from other subjects, any shapes) by scikit-image's ``match_histograms``. The map is
    monotonic, so it keeps the source's tissue order: it cannot turn T1w's bright white matter dark."""
    from skimage.exposure import match_histograms

    reference = np.concatenate([np.asarray(t, dtype=np.float32).ravel() for t in targets])[:, None, None]
    return match_histograms(np.asarray(source, dtype=np.float32), reference).astype(np.float32)
