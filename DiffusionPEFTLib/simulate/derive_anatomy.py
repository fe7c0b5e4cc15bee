"""Derive the simulator's anatomy from nilearn's ICBM152 2009a symmetric maps (run once, offline).

    python -m DiffusionPEFTLib.simulate.derive_anatomy [OUT_DIR]

Reads the 1 mm T1, GM and WM templates (197×233×189, uint8) that the nilearn wheel ships, and
writes 2 mm probability maps (99×117×95, uint8 with scale 1/255) to ``Resources/Anatomy/``:
gm, wm, csf (= brain mask − GM − WM, brain mask = T1 > 0) and lateral_ventricles (the CSF of the
largest non-tissue region enclosed by tissue, GM + WM < 0.5). 2×2×2 block means keep partial volumes.
Only this script needs nilearn; the simulator reads the derived files.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from .anatomy import ANATOMY_FOLDER, TISSUE_MAP_NAMES, resources_dir

TEMPLATE_FILE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
BLOCK = 2  # 1 mm → 2 mm


def read_template(name: str) -> tuple[np.ndarray, np.ndarray]:
    """One nilearn template map as float32 in [0, 1] and its affine."""
    import nibabel as nib

    path = resources.files("nilearn") / "datasets" / "data" / TEMPLATE_FILE.format(name)
    image = nib.load(str(path))
    return np.asarray(image.dataobj, dtype=np.float32) / 255.0, image.affine


def lateral_ventricles(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray) -> np.ndarray:
    """CSF probability of the largest non-tissue region not connected to the outside (1 mm maps)."""
    free = (gm + wm) < 0.5
    labels, count = ndimage.label(free)
    sizes = ndimage.sum(free, labels, range(1, count + 1))
    sizes[labels[0, 0, 0] - 1] = 0  # the outside
    region = labels == int(np.argmax(sizes)) + 1
    return csf * ndimage.binary_dilation(region, iterations=2)


def block_mean(data: np.ndarray) -> np.ndarray:
    """Mean over BLOCK³ blocks; the grid is zero-padded to a multiple of BLOCK first."""
    pad = [(0, (-s) % BLOCK) for s in data.shape]
    data = np.pad(data, pad)
    i, j, k = (s // BLOCK for s in data.shape)
    return data.reshape(i, BLOCK, j, BLOCK, k, BLOCK).mean(axis=(1, 3, 5))


def derive(out_dir: Path) -> list[Path]:
    import nibabel as nib

    t1, affine = read_template("t1")
    gm, _ = read_template("gm")
    wm, _ = read_template("wm")
    csf = np.clip((t1 > 0) - gm - wm, 0.0, 1.0)
    maps = {"gm": gm, "wm": wm, "csf": csf, "lateral_ventricles": lateral_ventricles(gm, wm, csf)}
    coarse_affine = affine @ np.diag([BLOCK, BLOCK, BLOCK, 1.0])
    coarse_affine[:3, 3] += affine[:3, :3] @ np.full(3, (BLOCK - 1) / 2)  # block centre
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TISSUE_MAP_NAMES:
        image = nib.Nifti1Image(np.round(block_mean(maps[name]) * 255).astype(np.uint8), coarse_affine)
        image.header.set_slope_inter(1 / 255, 0)
        image.set_qform(coarse_affine, code=4)  # 4 = MNI152
        image.set_sform(coarse_affine, code=4)
        path = out_dir / f"{name}.nii.gz"
        nib.save(image, str(path))
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else resources_dir() / ANATOMY_FOLDER
    for written_path in derive(target):
        print(written_path, written_path.stat().st_size, "bytes")
