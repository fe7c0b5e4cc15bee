"""Shared fixtures: small volumes with awkward geometry, a CLI runner, and a tiny pretrained model package."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
torch.set_num_threads(min(2, torch.get_num_threads()))

from DiffusionPEFTLib.cli import main  # noqa: E402
from DiffusionPEFTLib.events import ListSink  # noqa: E402
from DiffusionPEFTLib.volumes import Volume, write_volume  # noqa: E402

TINY_ARCH = ["--shape", "16", "16", "16", "--spacing", "4", "--channels", "8", "16", "16", "--norm-groups", "8",
             "--head-channels", "16"]


def oblique_affine(spacing=(1.2, 0.9, 2.5), angles=(0.3, -0.2, 0.15), origin=(-20.0, 15.0, 7.5)) -> np.ndarray:
    """A rotated, anisotropic voxel-to-RAS matrix (no axis aligned with R, A or S)."""
    rx, ry, rz = angles
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rot = (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
           @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))
    affine = np.eye(4)
    affine[:3, :3] = rot * np.asarray(spacing)
    affine[:3, 3] = origin
    return affine


def smooth_volume(shape=(24, 28, 20), affine=None, seed=0, scale=100.0) -> Volume:
    """Smooth random blobs (a stand-in anatomy for backend tests)."""
    rng = np.random.default_rng(seed)
    data = ndimage.gaussian_filter(rng.random(shape), 2.0)
    data = (data - data.min()) / (data.max() - data.min()) * scale
    if affine is None:
        affine = np.diag([3.0, 3.0, 4.0, 1.0])
        affine[:3, 3] = [-36.0, -42.0, -40.0]
    return Volume(data.astype(np.float32), affine)


def run_cli(*argv) -> tuple[int, ListSink]:
    """Run ``diffusion-peft ARGV`` in-process; return (exit code, events)."""
    events = ListSink()
    code = main([str(a) for a in argv], events=events)
    return code, events


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (restored after): comparisons between processes and memory measurements."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def volume_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("volumes")
    for i in range(6):
        write_volume(smooth_volume(seed=i), folder / f"vol{i}.nii.gz")
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, volume_folder) -> Path:
    """A 184 k-parameter model package (16³ grid at 4 mm) pretrained for a few steps."""
    out = tmp_path_factory.mktemp("models") / "tiny"
    code, events = run_cli("pretrain", volume_folder, "--out", out, *TINY_ARCH, "--steps", "4", "--seed", "1")
    assert code == 0, events.events
    return out


TRANSLATION_GRID = ["--shape", "16", "20", "16", "--spacing", "12"]
TINY_TRANSLATION_ARCH = [*TRANSLATION_GRID, "--channels", "8", "16", "16", "--norm-groups", "8", "--head-channels", "8",
                         "--timesteps", "100"]


@pytest.fixture(scope="session")
def translation_cohort(tmp_path_factory) -> Path:
    """Four simulated subjects (t1, flair) on the tiny translation grid (16×20×16 at 12 mm)."""
    out = tmp_path_factory.mktemp("translation") / "cohort"
    code, events = run_cli("simulate", "--n", "4", "--contrasts", "t1,flair", *TRANSLATION_GRID, "--out", out)
    assert code == 0, events.events
    return out


@pytest.fixture(scope="session")
def tiny_translation_dir(translation_cohort) -> Path:
    """A t1 → flair translation model package trained for 3 steps on ``translation_cohort``."""
    out = translation_cohort.parent / "t1_to_flair"
    code, events = run_cli("translate-train", translation_cohort / "manifest.json", "--source", "t1", "--target", "flair",
                           *TINY_TRANSLATION_ARCH, "--steps", "3", "--out", out)
    assert code == 0, events.events
    return out
