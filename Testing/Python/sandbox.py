"""A folder of a user's files for the mistake and data-loss tests, and a fingerprint of everything in it.

``make_sandbox(root, model_dir)`` lays out what a user typically has next to each other: a model
package, a folder of scans, a reference scan, a manifest, an own notes folder. ``snapshot(root)`` maps
every path under ``root`` to the sha256 of its bytes (folders to "dir"), so a test can assert that a
failed command created, changed and removed nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from conftest import smooth_volume

from DiffusionPEFTLib.volumes import write_volume


def make_sandbox(root: Path, model_dir: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_dir, root / "model")
    for index in range(3):
        write_volume(smooth_volume(seed=10 + index), root / "scans" / f"scan{index}.nii.gz")
    write_volume(smooth_volume(seed=20), root / "ref.nii.gz")
    write_volume(smooth_volume(seed=21), root / "existing.nii.gz")
    (root / "manifest.json").write_text(json.dumps(["scans/scan0.nii.gz", "scans/scan1.nii.gz"]))
    (root / "notes").mkdir()
    (root / "notes" / "patient_list.txt").write_text("a user's own file\n")
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Relative path → sha256 (files) or "dir" (folders), for everything under ``root``."""
    state = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        state[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return state
