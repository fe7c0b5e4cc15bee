"""Subject geometry: a random global affine (pose and head size) and a smooth diffeomorphic warp.

The warp is a stationary velocity field (smooth random field per axis) integrated by scaling and
squaring, so it is invertible and folds nothing (for warp_mm well below warp_smoothness_mm). Both
act on the output grid: each output voxel gets the template position it shows, and the template
maps are sampled there once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .fields import control_shape_for, resize_smooth, smooth_random_field

SQUARING_STEPS = 6
INTEGRATION_CELLS = 3


@dataclass(frozen=True)
class AnatomyVariation:
    """Spread of the random geometry (standard deviations).

    rotation_deg:   per-axis rotation, degrees.      scale_sd:        per-axis relative scale (0.04 = ±4 %).
    translation_mm: per-axis shift, mm.              warp_mm:         velocity of the smooth warp, mm.
    warp_smoothness_mm: spacing of the warp's control points, mm.
    """

    rotation_deg: float = 4.0
    scale_sd: float = 0.04
    translation_mm: float = 3.0
    warp_mm: float = 2.5
    warp_smoothness_mm: float = 30.0

    @classmethod
    def none(cls) -> "AnatomyVariation":
        """The template itself: no pose change, no warp."""
        return cls(rotation_deg=0.0, scale_sd=0.0, translation_mm=0.0, warp_mm=0.0)

    def as_dict(self) -> dict:
        return asdict(self)


def rotation_matrix(angles_deg) -> np.ndarray:
    """3×3 rotation R = Rz · Ry · Rx for angles (about R, A, S axes) in degrees."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_pose(rng: np.random.Generator, variation: AnatomyVariation) -> dict:
    """Rotation (deg), scale and translation (mm), each a 3-list, drawn from ``variation``."""
    return {
        "rotation_deg": rng.normal(0.0, variation.rotation_deg, 3).tolist(),
        "scale": (1.0 + rng.normal(0.0, variation.scale_sd, 3)).tolist(),
        "translation_mm": rng.normal(0.0, variation.translation_mm, 3).tolist(),
    }


def integrate_velocity(velocity_vox: np.ndarray) -> np.ndarray:
    """Displacement exp(v) by scaling and squaring. velocity_vox, result: (3, I, J, K) in voxels."""
    displacement = velocity_vox / 2**SQUARING_STEPS
    identity = np.indices(velocity_vox.shape[1:], dtype=np.float32)
    for _ in range(SQUARING_STEPS):
        moved = identity + displacement
        displacement = displacement + np.stack(
            [ndimage.map_coordinates(component, moved, order=1, mode="nearest") for component in displacement]
        )
    return displacement


def random_warp(rng: np.random.Generator, shape, spacing, variation: AnatomyVariation) -> np.ndarray:
    """Smooth invertible displacement on the output grid: (3, I, J, K) in mm along R, A, S.

    The velocity is integrated on a grid of about INTEGRATION_CELLS points per control cell, then
    resized to the output grid (the field is smooth on that scale, so little is lost)."""
    extent = np.asarray(shape) * np.asarray(spacing, dtype=np.float64)
    control = control_shape_for(shape, spacing, variation.warp_smoothness_mm)
    integration = control_shape_for(shape, spacing, variation.warp_smoothness_mm / INTEGRATION_CELLS)
    integration_spacing = (extent / integration).astype(np.float32)
    velocity_vox = np.stack(
        [smooth_random_field(rng, integration, control, variation.warp_mm) / s for s in integration_spacing]
    )
    displacement_mm = integrate_velocity(velocity_vox) * integration_spacing[:, None, None, None]
    return np.stack([resize_smooth(component, shape) for component in displacement_mm])


def template_coordinates(grid_affine, shape, warp_mm, pose: dict, centre_ras, template_affine) -> np.ndarray:
    """Template voxel position shown by each output voxel: (3, I, J, K).

    y = c + R·diag(s)·(x + warp(x) − c) + t, with x the output voxel's RAS position and c the brain centre.
    """
    linear = rotation_matrix(pose["rotation_deg"]) @ np.diag(pose["scale"])
    to_template = np.linalg.inv(template_affine)
    matrix = to_template[:3, :3] @ linear  # RAS mm (subject) → template voxels
    offset = to_template[:3, :3] @ (centre_ras - linear @ centre_ras + np.asarray(pose["translation_mm"])) \
        + to_template[:3, 3]
    voxels = np.indices(tuple(shape), dtype=np.float32).reshape(3, -1)
    ras = np.einsum("ab,bn->an", grid_affine[:3, :3].astype(np.float32), voxels, optimize=False) \
        + grid_affine[:3, 3:4].astype(np.float32) + warp_mm.reshape(3, -1)
    template = np.einsum("ab,bn->an", matrix.astype(np.float32), ras, optimize=False) + offset[:, None]
    return template.astype(np.float32).reshape(3, *shape)
