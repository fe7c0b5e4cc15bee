"""The simulator's anatomy: ICBM152 2009a tissue probability maps at 2 mm, read from ``Resources/``.

Maps (float32 in [0, 1], shape 99×117×95, RAS affine in MNI mm): gm, wm, csf (all CSF, ventricles
included) and lateral_ventricles (the ventricular part of csf). Derived once from nilearn's copy of
the template by ``derive_anatomy.py``; the licence notice sits next to the files.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..resources import RESOURCES_ENV, resources_dir

ANATOMY_FOLDER = "Anatomy/icbm152_2009a_sym_2mm"
TISSUE_MAP_NAMES = ("gm", "wm", "csf", "lateral_ventricles")


@dataclass(frozen=True)
class Anatomy:
    """Template tissue maps on one grid.

    maps:                dict name → float32 (I, J, K) probability, names in TISSUE_MAP_NAMES.
    affine:              4×4 RAS affine of the maps (mm).
    ventricle_distance:  float32 (I, J, K), mm from the lateral ventricles (0 inside them).
    cortical_depth:      float32 (I, J, K), mm from the outer CSF / background (0 there).
    brain_centre:        (3,) RAS centre of mass of the brain (GM + WM + CSF), mm.
    """

    maps: dict[str, np.ndarray]
    affine: np.ndarray
    ventricle_distance: np.ndarray
    cortical_depth: np.ndarray
    brain_centre: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)


@functools.lru_cache(maxsize=1)
def load_anatomy() -> Anatomy:
    """Read the derived template once per process (about 0.5 s). The arrays are read-only."""
    import nibabel as nib

    folder = resources_dir() / ANATOMY_FOLDER
    maps, affine = {}, None
    for name in TISSUE_MAP_NAMES:
        path = folder / f"{name}.nii.gz"
        if not path.is_file():
            raise InputError(
                f"The simulator's anatomy file {path} is missing.",
                hint=f"Set {RESOURCES_ENV} to the extension's Resources folder, or re-create the files with "
                "`python -m DiffusionPEFTLib.simulate.derive_anatomy` (needs nilearn).",
            )
        image = nib.load(str(path))
        maps[name] = np.asarray(image.get_fdata(dtype=np.float32))
        affine = image.affine
    brain = maps["gm"] + maps["wm"] + maps["csf"]
    overfull = np.maximum(brain, 1.0)  # 8-bit rounding can push the sum a little above 1
    maps = {name: data / overfull for name, data in maps.items()}
    maps["lateral_ventricles"] = np.minimum(maps["lateral_ventricles"], maps["csf"])
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    ventricles = maps["lateral_ventricles"] >= 0.5
    tissue = (maps["gm"] + maps["wm"] + maps["lateral_ventricles"]) >= 0.5
    centre_voxel = np.asarray(ndimage.center_of_mass(brain))
    anatomy = Anatomy(
        maps=maps,
        affine=affine,
        ventricle_distance=ndimage.distance_transform_edt(~ventricles, sampling=spacing).astype(np.float32),
        cortical_depth=ndimage.distance_transform_edt(tissue, sampling=spacing).astype(np.float32),
        brain_centre=affine[:3, :3] @ centre_voxel + affine[:3, 3],
    )
    for array in (*maps.values(), anatomy.ventricle_distance, anatomy.cortical_depth):
        array.setflags(write=False)
    return anatomy


@functools.lru_cache(maxsize=8)
def antialiased_maps(spacing: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """Template maps Gaussian-smoothed for sampling at ``spacing`` mm (σ = (step − 1)/2 template voxels,
    the rule of ``volumes.resample``). Cached per output spacing."""
    anatomy = load_anatomy()
    step = np.asarray(spacing, dtype=np.float64) / anatomy.spacing
    sigma = np.maximum(step - 1.0, 0.0) / 2.0
    if not np.any(sigma > 0):
        return anatomy.maps
    return {name: ndimage.gaussian_filter(data, sigma=sigma, mode="constant") for name, data in anatomy.maps.items()}
