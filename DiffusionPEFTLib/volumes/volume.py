"""The one volume type of the backend and the checks every input volume passes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Volume:
    """A scalar 3D image.

    data:   float32 array of shape (I, J, K), indexed [i, j, k].
    affine: 4×4 float64 matrix mapping voxel (i, j, k, 1) to RAS millimetres (nibabel / Slicer IJKToRAS).
    """

    data: np.ndarray
    affine: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "affine", np.asarray(self.affine, dtype=np.float64).reshape(4, 4))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k (column norms of the affine's 3×3 part)."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def direction(self) -> np.ndarray:
        """3×3 matrix of unit column vectors: the RAS direction of the i, j, k axes."""
        return self.affine[:3, :3] / self.spacing

    def center_ras(self) -> np.ndarray:
        """RAS position (mm) of the centre of the voxel grid."""
        centre = (np.asarray(self.shape, dtype=np.float64) - 1) / 2
        return self.affine[:3, :3] @ centre + self.affine[:3, 3]

    def with_data(self, data: np.ndarray) -> "Volume":
        """Same geometry, new voxel values (shape must match)."""
        if tuple(data.shape) != self.shape:
            raise ValueError(f"shape {data.shape} does not match volume shape {self.shape}")
        return Volume(np.asarray(data, dtype=np.float32), self.affine.copy())

    def same_grid(self, other: "Volume", atol: float = 1e-4) -> bool:
        return self.shape == other.shape and np.allclose(self.affine, other.affine, atol=atol)


def check_volume(volume: Volume, name: str) -> Volume:
    """Refuse volumes a diffusion model cannot use; squeeze a trailing singleton 4th axis.

    Raises InputError for 2D or 4D data, NaN/Inf voxels, a constant image or a singular affine.
    """
    data = np.asarray(volume.data)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3 or min(data.shape) < 2:
        raise InputError(
            f"{name} has shape {tuple(data.shape)}; a 3D scalar volume is needed.",
            hint="Give one 3D volume (not a 2D slice, a time series or a multi-channel image); "
            "split 4D series into single volumes first.",
        )
    if not np.all(np.isfinite(data)):
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(
            f"{name} has {bad} NaN or infinite voxels.",
            hint="Replace them (for example with 0) or mask them out before using this volume.",
        )
    if float(data.max()) == float(data.min()):
        raise InputError(
            f"{name} is constant (every voxel is {float(data.min()):g}).",
            hint="Check that the right file was chosen; an empty or blank image cannot be normalised.",
        )
    if abs(np.linalg.det(volume.affine[:3, :3])) < 1e-12:
        raise InputError(f"{name} has a singular voxel-to-world matrix.", hint="Fix the file's header geometry.")
    return Volume(data.astype(np.float32, copy=False), volume.affine)
