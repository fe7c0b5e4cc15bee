"""Resampling between voxel grids, and the round trip source grid → model grid → source grid.

A model works on a fixed RAS-aligned grid (shape, spacing). ``to_model_grid`` centres that grid
on the source volume's field of view and resamples onto it; ``from_model_grid`` maps a result
back onto the exact source grid (same shape and affine), so outputs land on their reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .volume import Volume


@dataclass(frozen=True)
class GridMapping:
    """The source grid a model-grid volume came from: shape (I, J, K) and RAS affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray


def model_grid_affine(center_ras: np.ndarray, shape, spacing) -> np.ndarray:
    """RAS-aligned affine (voxel axes along +R, +A, +S) of a grid of ``shape`` × ``spacing`` mm
    whose centre lies at ``center_ras``."""
    spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = np.asarray(center_ras, dtype=np.float64) - spacing * (np.asarray(shape) - 1) / 2
    return affine


def resample(volume: Volume, shape, affine: np.ndarray, order: int = 1, antialias: bool = True) -> Volume:
    """Sample ``volume`` on the grid (``shape``, ``affine``); outside the source field of view → 0.

    order: spline order (0 nearest, 1 trilinear, 3 cubic). With ``antialias`` the source is
    Gaussian-smoothed first along each axis where the target samples it more coarsely.
    """
    shape = tuple(int(s) for s in shape)
    affine = np.asarray(affine, dtype=np.float64)
    target_to_source = np.linalg.inv(volume.affine) @ affine  # target voxel -> source voxel
    data = volume.data.astype(np.float32, copy=False)
    if antialias:
        step = np.abs(target_to_source[:3, :3]).max(axis=1)  # source voxels per target voxel, per source axis
        sigma = np.maximum(step - 1.0, 0.0) / 2.0
        if np.any(sigma > 0):
            data = ndimage.gaussian_filter(data, sigma=sigma, mode="nearest")
    out = ndimage.affine_transform(
        data, target_to_source[:3, :3], offset=target_to_source[:3, 3], output_shape=shape,
        order=order, mode="constant", cval=0.0, prefilter=order > 1,
    )
    return Volume(out.astype(np.float32), affine)


def field_of_view_overlap(volume: Volume, other: Volume) -> float:
    """The fraction (0–1) of ``volume``'s field of view that ``other``'s covers, both as RAS bounding boxes
    (axis-aligned boxes around the outer voxel corners, in mm)."""
    low, high = _ras_box(volume)
    other_low, other_high = _ras_box(other)
    common = np.clip(np.minimum(high, other_high) - np.maximum(low, other_low), 0.0, None)
    return float(np.prod(common) / np.prod(high - low))


def _ras_box(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) RAS corner (mm, (3,) each) of the box around the volume's 8 outer voxel corners."""
    corners = np.array(np.meshgrid(*[(-0.5, s - 0.5) for s in volume.shape], indexing="ij")).reshape(3, -1)
    ras = volume.affine[:3, :3] @ corners + volume.affine[:3, 3:]
    return ras.min(axis=1), ras.max(axis=1)


def to_model_grid(volume: Volume, shape, spacing) -> tuple[Volume, GridMapping]:
    """Resample onto a model grid centred on the volume's field of view; return it and the way back."""
    affine = model_grid_affine(volume.center_ras(), shape, spacing)
    return resample(volume, shape, affine), GridMapping(volume.shape, volume.affine.copy())


def from_model_grid(volume: Volume, mapping: GridMapping) -> Volume:
    """Resample a model-grid result back onto the original grid: exactly ``mapping``'s shape and affine."""
    return resample(volume, mapping.shape, mapping.affine)
