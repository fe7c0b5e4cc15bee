"""Slicer's convention: ``arrayFromVolume(node)`` is indexed [k, j, i]; IJKToRAS equals the nibabel affine."""

from __future__ import annotations

import numpy as np

from .volume import Volume


def to_slicer_array(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Return (array [k, j, i], IJKToRAS 4×4) for ``updateVolumeFromArray`` / ``SetIJKToRASMatrix``."""
    return np.ascontiguousarray(np.transpose(volume.data, (2, 1, 0))), volume.affine.copy()


def from_slicer_array(array_kji: np.ndarray, ijk_to_ras: np.ndarray) -> Volume:
    """Build a Volume from ``arrayFromVolume(node)`` and the node's IJKToRAS matrix."""
    data = np.ascontiguousarray(np.transpose(np.asarray(array_kji, dtype=np.float32), (2, 1, 0)))
    return Volume(data, np.asarray(ijk_to_ras, dtype=np.float64))
