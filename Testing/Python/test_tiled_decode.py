"""Tiled decoding of latent models (models/tiled_decode.py) and the memory planner's part in it.

A decoder without spatial context is decoded exactly in windows that the latent grid does not divide; the brain LDM
bundle's autoencoder layout (its published depth at a quarter of the channels, random weights, a reduced grid) stays
within the measured bound of its whole decode at two overlaps; auto decodes whole when that fits, else in the largest
window that fits; the planner predicts a window's peak, a counted real decode matches the prediction
and a fresh process's resident peak shows the reduction; ``synthesize`` tiles on its own when a whole decode does
not fit the budget, and ``--decode whole`` is then refused with ``--decode tiled`` in the hint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import pytest
import torch
from bundles import BRAIN_INFERENCE, tiny_inference, tiny_metadata, write_bundle
from conftest import run_cli

from DiffusionPEFTLib.footprint import GIB, Job, LiveBytes, footprint
from DiffusionPEFTLib.models.latent_model import LatentDiffusionModel, save_latent_model
from DiffusionPEFTLib.models.tiled_decode import Decoding, blending_weights, candidate_windows, tiled_decode
from DiffusionPEFTLib.synthesis import sample

NARROW_BRAIN_AUTOENCODER = {**{key: value for key, value in BRAIN_INFERENCE["autoencoder_def"].items()
                               if key != "_target_"}, "channels": [16, 32, 32, 32], "norm_num_groups": 8}
"""the brain LDM bundle's AutoencoderKL (4 levels: ×8 upsampling, 2 ResNet blocks a level, no attention) at a quarter
of its channels: the same depth, which sets how far the decoder reaches, and quick to run"""

pytestmark = pytest.mark.usefixtures("one_thread")


def latent_config(folder: Path, shape, autoencoder: dict):
    """model.json of a latent model in the brain bundle's scheme (bundles.tiny_inference: a narrow UNet, two
    conditions) with ``autoencoder`` as its AutoencoderKL, on the image grid ``shape``."""
    from DiffusionPEFTLib.models.bundle import BundleOverrides, read_bundle

    inference = tiny_inference()
    inference["autoencoder_def"] = {"_target_": "monai.networks.nets.AutoencoderKL", **autoencoder}
    write_bundle(folder, inference, tiny_metadata(), networks=None)
    return read_bundle(folder, BundleOverrides(shape=tuple(shape))).config


def relative_difference(tiled: torch.Tensor, whole: torch.Tensor) -> tuple[float, float]:
    """(max, mean) |tiled − whole| as fractions of the whole decode's range."""
    spread = float(whole.max() - whole.min())
    difference = (tiled - whole).abs()
    return float(difference.max()) / spread, float(difference.mean()) / spread


# --- the tiling itself ------------------------------------------------------------------------------------


def test_blending_weights_are_monais_gaussian_importance_map():
    from monai.data.utils import compute_importance_map

    for shape in [(8, 8, 8), (40, 56, 40), (3, 5, 7)]:
        monai_map = compute_importance_map(shape, mode="gaussian", sigma_scale=0.125).numpy()
        assert abs(blending_weights(shape) - monai_map).max() < 1e-6 and blending_weights(shape).min() == 1e-3


def test_candidate_windows_halve_the_longest_side_down_to_four_latent_voxels():
    assert candidate_windows((20, 28, 20)) == [(20, 14, 20), (10, 14, 20), (10, 14, 10), (10, 7, 10), (5, 7, 10),
                                               (5, 7, 5), (5, 4, 5), (4, 4, 5), (4, 4, 4)]
    assert candidate_windows((7, 9, 3)) == [(7, 5, 3), (4, 5, 3), (4, 4, 3)]  # a side below 4 stays whole
    assert candidate_windows((4, 2, 3)) == [(4, 2, 3)]  # nothing to halve: one window, the grid


@pytest.mark.parametrize("window, overlap", [((4, 4, 4), 0.5), ((3, 5, 2), 0.25), ((9, 12, 9), 0.5)])
def test_a_decoder_without_spatial_context_is_decoded_exactly_in_windows(window, overlap):
    """Each latent voxel → a 4³ block mixed over channels: blending any windows (none divides 7×9×6; the last one
    is larger than the grid) must give the whole decode back, in the exact output shape."""
    mixing = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))

    def decode(latent):  # (B, 3, x, y, z) → (B, 2, 4x, 4y, 4z)
        mixed = torch.einsum("oc,bcxyz->boxyz", mixing, latent)
        return mixed.repeat_interleave(4, 2).repeat_interleave(4, 3).repeat_interleave(4, 4)

    latents = torch.randn(2, 3, 7, 9, 6, generator=torch.Generator().manual_seed(1))
    tiled = tiled_decode(decode, latents, window, overlap, zoom=4)
    assert tiled.shape == (2, 2, 28, 36, 24)
    assert torch.allclose(tiled, decode(latents), atol=1e-5)


# --- the brain LDM's autoencoder ----------------------------------------------------------------------------


def test_the_brain_autoencoder_decoded_in_windows_stays_close_to_its_whole_decode(tmp_path):
    """The brain layout (narrow; MONAI's random initialisation, seed 0) on 10×14×10 latents (80×112×80, half the
    published grid per axis), in the first candidate window, 10×7×10. Measured, as fractions of the output range:
    overlap 0.25 max 39.9 %, mean 2.06 %; overlap 0.5 max 29.4 %, mean 1.85 %; a decode of another latent differs by
    mean 6.1 %."""
    torch.manual_seed(0)
    model = LatentDiffusionModel(latent_config(tmp_path / "bundle", (80, 112, 80), NARROW_BRAIN_AUTOENCODER)).eval()
    latents = torch.randn(1, 3, 10, 14, 10, generator=torch.Generator().manual_seed(1))
    started = time.perf_counter()
    whole = model.decode(latents)
    print(f"whole: {time.perf_counter() - started:.1f} s")
    window = candidate_windows(latents.shape[2:])[0]
    assert window == (10, 7, 10) and whole.shape == (1, 1, 80, 112, 80)
    differences = {}
    for overlap in (0.25, 0.5):
        started = time.perf_counter()
        tiled = model.decode(latents, Decoding("tiled", window, overlap))
        differences[overlap] = relative_difference(tiled, whole)
        print(f"overlap {overlap}: {time.perf_counter() - started:.1f} s, max {differences[overlap][0]:.1%}, "
              f"mean {differences[overlap][1]:.2%} of the range")
        assert tiled.shape == whole.shape
    assert differences[0.5][0] < 0.35 and differences[0.5][1] < 0.022
    assert differences[0.25][0] < 0.45 and differences[0.25][1] < 0.025
    assert all(half < quarter for half, quarter in zip(differences[0.5], differences[0.25]))  # more context
    assert torch.equal(model.decode(latents, Decoding("auto")), whole)  # without a budget, auto is whole


# --- the memory planner -------------------------------------------------------------------------------------


def counted_sample(model: LatentDiffusionModel, decoding: Decoding) -> int:
    """Peak bytes alive while ``sample`` draws one volume in one step and decodes it, counted per tensor storage
    (weights included, as in the planner's total)."""
    counter = LiveBytes()
    counter.add_all([*model.parameters(), *model.buffers()])
    with counter:
        sample(model, 1, steps=1, decoding=decoding)
    return counter.peak


def test_the_planner_predicts_one_windows_peak_and_a_counted_decode_matches(tmp_path):
    config = latent_config(tmp_path / "bundle", (64, 80, 64), NARROW_BRAIN_AUTOENCODER)  # 8×10×8 latents
    torch.manual_seed(0)
    model = LatentDiffusionModel(config).eval()
    whole, tiled = Decoding("whole"), Decoding("tiled", (4, 5, 4), 0.0)
    predicted = {decoding: footprint(Job(config, 1, "sample", decoding=decoding)).total
                 for decoding in (whole, tiled)}
    for decoding, total in predicted.items():
        assert abs(counted_sample(model, decoding) / total - 1) < 0.02, decoding
    assert predicted[tiled] < predicted[whole] / 4
    overlapping = footprint(Job(config, 1, "sample", decoding=Decoding("tiled", (4, 5, 4), 0.5))).total
    assert overlapping == predicted[tiled]  # one window's activations whatever the overlap


def test_auto_decodes_whole_when_it_fits_else_in_the_largest_window_that_fits(tmp_path):
    from DiffusionPEFTLib.memory import MemoryBudget, plan_memory, resolve_decoding

    config = latent_config(tmp_path / "bundle", (64, 80, 64), NARROW_BRAIN_AUTOENCODER)  # 8×10×8 latents
    windows = candidate_windows((8, 10, 8))
    assert windows == [(8, 5, 8), (4, 5, 8), (4, 5, 4), (4, 4, 4)]
    auto = Job(config, 1, "sample")
    peaks = [footprint(Job(config, 1, "sample", decoding=Decoding("whole"))).total] + [
        footprint(Job(config, 1, "sample", decoding=Decoding("tiled", window))).total for window in windows]
    assert peaks == sorted(peaks, reverse=True) and peaks[-1] < peaks[0] / 4  # each window needs less

    def resolved(budget_bytes: float) -> Decoding:
        return resolve_decoding(auto, MemoryBudget(int(budget_bytes))).decoding

    assert resolved(peaks[0]) == Decoding("whole")
    assert resolved((peaks[1] + peaks[2]) / 2) == Decoding("tiled", (4, 5, 8))  # the largest that fits
    assert resolved(peaks[-1] - 1) == Decoding("tiled", (4, 4, 4))  # none fits: the smallest, refused by the check
    plan = plan_memory(auto, MemoryBudget(int(peaks[-1] - 1)))
    assert not plan.fits and "not even at batch 1 with tiled decoding" in plan.advice()
    plan = plan_memory(Job(config, 1, "sample", decoding=Decoding("whole")), MemoryBudget(int(peaks[1])))
    assert plan.proposal.decoding == Decoding("tiled", (8, 5, 8)) and "--decode tiled" in plan.advice()
    assert "Sampling (whole decoding)" in plan.format()


PEAK_OF_A_SAMPLE = """
import json, sys, torch
from DiffusionPEFTLib.models.latent_model import load_latent_model
from DiffusionPEFTLib.models.tiled_decode import Decoding
from DiffusionPEFTLib.paradigms.peak_memory import PeakMemory
from DiffusionPEFTLib.synthesis import sample

torch.set_num_threads(1)
model = load_latent_model(sys.argv[1])
mode, window, overlap = json.loads(sys.argv[2])
decoding = Decoding(mode, tuple(window) if window else None, overlap)
sample(model, 1, steps=1, decoding=decoding)  # oneDNN's kernels and the allocator's pools exist from here on
peak = PeakMemory("cpu")
peak.start()
sample(model, 1, steps=1, decoding=decoding)
print(json.dumps(peak.peak_mb()))
"""


def resident_peak_mb(package: Path, decoding: Decoding) -> float:
    """A fresh process's resident peak (VmHWM − VmRSS, MB) while it samples one volume from ``package`` in one
    step with ``decoding``, after one such sample; glibc's mmap threshold fixed at 128 KiB, so a freed tensor
    leaves the resident set at once (docs/memory.md)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run([sys.executable, "-c", PEAK_OF_A_SAMPLE, str(package),
                           json.dumps([decoding.mode, decoding.window, decoding.overlap])],
                          capture_output=True, text=True, env=environment, cwd=Path(__file__).parents[2], check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    if measured is None:
        pytest.skip("the resident peak cannot be measured here (no /proc/self/clear_refs)")
    return measured


def test_a_fresh_process_measures_the_reduction_the_planner_predicts(tmp_path):
    """96×112×96 (12×14×12 latents), whole vs windows of 6×7×6 (overlap 0: the fewest windows, the same peak).
    Measured: 463 vs 69 MB above the process's resting size, predicted 397 vs 60 MB of activations (oneDNN's
    copies of the largest activations are outside the prediction)."""
    config = latent_config(tmp_path / "bundle", (96, 112, 96), NARROW_BRAIN_AUTOENCODER)
    torch.manual_seed(0)
    save_latent_model(LatentDiffusionModel(config), tmp_path / "package")
    measured, predicted = {}, {}
    for decoding in (Decoding("whole"), Decoding("tiled", (6, 7, 6), 0.0)):
        measured[decoding.mode] = resident_peak_mb(tmp_path / "package", decoding)
        predicted[decoding.mode] = footprint(Job(config, 1, "sample", decoding=decoding)).activations / 1e6
        assert 0.9 < measured[decoding.mode] / predicted[decoding.mode] < 1.5, (measured, predicted)
    print(f"measured {measured}, predicted {predicted} (MB)")
    assert measured["tiled"] < measured["whole"] / 4, measured


# --- synthesize --decode ------------------------------------------------------------------------------------


@pytest.fixture
def latent_package(tmp_path) -> tuple[Path, object]:
    """A latent package with the narrow brain layout on 48×64×48 (6×8×6 latents) and its model.json."""
    config = latent_config(tmp_path / "bundle", (48, 64, 48), NARROW_BRAIN_AUTOENCODER)
    torch.manual_seed(0)
    save_latent_model(LatentDiffusionModel(config), tmp_path / "package")
    return tmp_path / "package", config


def test_auto_tiles_when_a_whole_decode_does_not_fit_and_decode_whole_is_refused(latent_package, tmp_path):
    package, config = latent_package
    window = candidate_windows((6, 8, 6))[0]
    whole, tiled = (footprint(Job(config, 1, "sample", decoding=d)).total
                    for d in (Decoding("whole"), Decoding("tiled", window)))
    budget = ["--memory-budget-gb", str((whole * tiled) ** 0.5 / GIB), "--steps", "1", "--threads", "1"]

    code, events = run_cli("synthesize", package, "--decode", "whole", *budget, "--out", tmp_path / "whole.nii.gz")
    error = events.of("error")[0]
    assert code != 0 and error["kind"] == "memory" and "--decode tiled" in error["hint"], error
    assert "whole decoding" in error["message"] and not (tmp_path / "whole.nii.gz").exists()

    code, events = run_cli("synthesize", package, *budget, "--out", tmp_path / "auto.nii.gz")
    assert code == 0, events.of("error")
    logged = " ".join(event["message"] for event in events.of("log"))
    assert "A whole decode does not fit the memory budget: tiled decoding, windows of 6×4×6 latent voxels" in logged
    assert nib.load(str(tmp_path / "auto.nii.gz")).shape == (48, 64, 48)


def test_decode_options_that_cannot_apply_are_input_errors(latent_package, tiny_model_dir, tmp_path):
    package, _ = latent_package
    code, events = run_cli("synthesize", package, "--decode", "whole", "--decode-window", "2", "2", "2",
                           "--out", tmp_path / "a.nii.gz")
    assert code != 0 and events.of("error")[0]["kind"] == "input" and "--decode tiled" in events.of("error")[0]["hint"]
    code, events = run_cli("synthesize", package, "--decode-overlap", "1", "--out", tmp_path / "b.nii.gz")
    assert code != 0 and "[0, 1)" in events.of("error")[0]["message"]
    code, events = run_cli("synthesize", tiny_model_dir, "--decode", "tiled", "--steps", "1",
                           "--out", tmp_path / "c.nii.gz")
    assert code != 0 and "latent models" in events.of("error")[0]["message"]
    assert not any(tmp_path.glob("*.nii.gz"))
