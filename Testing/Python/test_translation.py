"""Translation end to end on tiny models: pairs, training, the translate command's geometry and uncertainty
outputs, adapters on a translation model, packages of the wrong kind, pairs on other grids and sources of
another contrast."""

from __future__ import annotations

import hashlib
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import oblique_affine, run_cli, smooth_volume

from DiffusionPEFTLib.errors import InputError
from DiffusionPEFTLib.events import ListSink
from DiffusionPEFTLib.models.config import InputSpec
from DiffusionPEFTLib.simulate import simulate_subject
from DiffusionPEFTLib.training import TrainingVolumes
from DiffusionPEFTLib.translation.contrast_check import BINS, MIN_THRESHOLD, source_signature
from DiffusionPEFTLib.translation.model import load_translation_model
from DiffusionPEFTLib.translation.pairs import find_pairs
from DiffusionPEFTLib.translation.sampling import translate
from DiffusionPEFTLib.volumes import IntensityNormalisation, Volume, read_volume, resample, write_volume

GRID = ["--shape", "16", "20", "16", "--spacing", "12"]
TINY = [*GRID, "--channels", "8", "16", "16", "--norm-groups", "8", "--head-channels", "8", "--timesteps", "100"]


@pytest.fixture(scope="session")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("translation") / "cohort"
    code, events = run_cli("simulate", "--n", "4", "--contrasts", "t1,flair", *GRID, "--out", out)
    assert code == 0, events.events
    return out


@pytest.fixture(scope="session")
def tiny_translation_model(cohort):
    out = cohort.parent / "t1_to_flair"
    code, events = run_cli("translate-train", cohort / "manifest.json", "--source", "t1", "--target", "flair",
                           *TINY, "--steps", "3", "--out", out)
    assert code == 0, events.events
    return out


@pytest.fixture(scope="session")
def held_out(cohort):
    """One subject the tiny model never saw, in its source contrast and in another (t2)."""
    out = cohort.parent / "held_out"
    code, events = run_cli("simulate", "--n", "1", "--contrasts", "t1,t2", "--seed", "99", *GRID, "--out", out)
    assert code == 0, events.events
    return out / "sub-000"


def test_pairs_from_a_simulator_manifest_folders_and_a_csv(cohort, tmp_path):
    sources, targets = find_pairs([cohort / "manifest.json"], "t1", "flair")
    assert [p.parent.name for p in sources] == [p.parent.name for p in targets] == [f"sub-00{i}" for i in range(4)]
    assert {p.name for p in sources} == {"t1.nii.gz"} and {p.name for p in targets} == {"flair.nii.gz"}
    for folder, contrast in (("t1s", "t1"), ("flairs", "flair")):
        (tmp_path / folder).mkdir()
        for index in (2, 0, 1):  # created out of order: matched by subject, not by listing order
            (tmp_path / folder / f"s{index}.nii.gz").write_bytes((cohort / f"sub-00{index}" / f"{contrast}.nii.gz").read_bytes())
    folder_sources, folder_targets = find_pairs([tmp_path / "t1s", tmp_path / "flairs"])
    assert [p.name for p in folder_sources] == [p.name for p in folder_targets] == ["s0.nii.gz", "s1.nii.gz", "s2.nii.gz"]
    (tmp_path / "pairs.csv").write_text("source,target\nt1s/s1.nii.gz,flairs/s1.nii.gz\n")
    assert find_pairs([tmp_path / "pairs.csv"]) == ([tmp_path / "t1s/s1.nii.gz"], [tmp_path / "flairs/s1.nii.gz"])
    (tmp_path / "flairs" / "s2.nii.gz").unlink()
    with pytest.raises(InputError, match="only one of"):
        find_pairs([tmp_path / "t1s", tmp_path / "flairs"])
    with pytest.raises(InputError, match="say which contrasts") as refused:
        find_pairs([cohort / "manifest.json"])
    assert "--source t1 --target flair" in refused.value.hint


def test_the_loss_of_a_tiny_model_falls_on_one_pair(cohort, tmp_path):
    args = ["translate-train", cohort / "sub-000" / "t1.nii.gz", cohort / "sub-000" / "flair.nii.gz"]
    (tmp_path / "one.csv").write_text(f"source,target\n{args[1]},{args[2]}\n")
    code, events = run_cli("translate-train", tmp_path / "one.csv", *TINY, "--steps", "60", "--lr", "2e-3",
                           "--no-augment", "--checkpoint-every", "0", "--out", tmp_path / "m")
    assert code == 0, events.events
    losses = [e["loss"] for e in events.of("progress") if "loss" in e]
    assert len(losses) == 60 and np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def test_the_package_records_task_contrasts_puzzle_and_bridge(tiny_translation_model):
    spec = json.loads((tiny_translation_model / "model.json").read_text())
    assert spec["task"] == "translation" and "scheduler" not in spec
    assert spec["translation"]["source"] == "t1" and spec["translation"]["target"] == "flair"
    assert spec["translation"]["puzzle"] == 2 and spec["translation"]["bridge"]["kind"] == "bbdm"
    args = spec["architecture"]["arguments"]
    assert (args["in_channels"], args["out_channels"]) == (16, 8)  # puzzled x_t + puzzled source → puzzled x̂0


def test_translate_lands_on_the_oblique_source_grid_with_an_uncertainty_map(tiny_translation_model, tmp_path):
    source = write_volume(smooth_volume(shape=(13, 17, 9), affine=oblique_affine(), seed=5), tmp_path / "src.nii.gz")
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    code, events = run_cli("translate", tiny_translation_model, source, "--samples", "3", "--steps", "4",
                           "--reference", source, "--out", tmp_path / "flair.nii.gz")
    assert code == 0, events.events
    original = read_volume(source)
    for name in ("flair.nii.gz", "flair_std.nii.gz"):
        out = read_volume(tmp_path / name)
        assert out.shape == original.shape
        np.testing.assert_allclose(out.affine, original.affine, atol=1e-5)
    std = read_volume(tmp_path / "flair_std.nii.gz").data
    assert std.min() >= 0 and std.max() > 0  # three stochastic draws differ
    assert {"psnr", "ssim", "nrmse", "ms_ssim"} <= {m["name"] for m in events.of("metric")}
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before


def test_the_sampler_starts_at_the_source_and_is_deterministic_without_noise(tiny_translation_model):
    model = load_translation_model(tiny_translation_model)
    seen = []
    predict = model.predict_x0
    model.predict_x0 = lambda x, source, t: (seen.append((x.clone(), source.clone(), t)), predict(x, source, t))[1]
    sources = torch.rand(1, 1, 16, 20, 16) * 2 - 1
    first, _ = translate(model, sources, steps=4, events=ListSink())
    x, source, t = seen[0]
    assert t == model.num_train_timesteps and torch.equal(x, source)
    assert torch.equal(model.puzzle.unpuzzle(source, (16, 20, 16)), sources)
    again, _ = translate(model, sources, steps=4, events=ListSink())
    assert torch.equal(first, again)


def test_adapters_fine_tune_a_translation_model_on_pairs(tiny_translation_model, cohort, tmp_path):
    code, events = run_cli("finetune", tiny_translation_model, cohort / "manifest.json", "--source", "t1",
                           "--target", "flair", "--method", "lora", "--rank", "2", "--steps", "2",
                           "--out", tmp_path / "adapter")
    assert code == 0, events.events
    provenance = json.loads((tmp_path / "adapter" / "adapter.json").read_text())["provenance"]
    assert len(provenance["sources"]) == len(provenance["data"]) == 4
    code, events = run_cli("translate", tiny_translation_model, cohort / "sub-001" / "t1.nii.gz", "--adapter",
                           tmp_path / "adapter", "--steps", "2", "--out", tmp_path / "f.nii.gz")
    assert code == 0, events.events


def test_a_package_of_the_wrong_kind_says_what_it_is(tiny_translation_model, tiny_model_dir, tmp_path):
    code, events = run_cli("synthesize", tiny_translation_model, "--out", tmp_path / "x.nii.gz")
    assert code == 3 and "translation model" in events.of("error")[0]["message"]
    assert "diffusion-peft translate" in events.of("error")[0]["hint"]
    write_volume(Volume(np.random.rand(8, 8, 8).astype(np.float32), np.eye(4)), tmp_path / "s.nii.gz")
    code, events = run_cli("translate", tiny_model_dir, tmp_path / "s.nii.gz", "--out", tmp_path / "y.nii.gz")
    assert code == 3 and "synthesis model" in events.of("error")[0]["message"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.nii.gz"]


def test_a_target_on_another_grid_is_resampled_with_a_warning_and_one_elsewhere_is_refused(cohort, tmp_path):
    sources, targets = find_pairs([cohort / "manifest.json"], "t1", "flair")
    spec = InputSpec((16, 20, 16), (12.0, 12.0, 12.0))
    same = TrainingVolumes.load(targets, spec, sources=sources)
    assert same.resampled == [] and same.resampling_warning() is None
    coarse = []
    for index in (1, 3):  # the same field of view on a coarser, shifted grid
        flair = read_volume(targets[index])
        affine = flair.affine @ np.diag([1.5, 1.5, 1.5, 1.0])
        affine[:3, 3] += 4.0
        coarse.append(write_volume(resample(flair, (11, 13, 11), affine), tmp_path / f"coarse{index}.nii.gz"))
    paired = [targets[0], coarse[0], targets[2], coarse[1]]
    (tmp_path / "pairs.csv").write_text("source,target\n" + "".join(f"{s},{t}\n" for s, t in zip(sources, paired)))
    code, events = run_cli("translate-train", tmp_path / "pairs.csv", *TINY, "--steps", "1", "--out", tmp_path / "m")
    assert code == 0, events.events
    warnings = [e["message"] for e in events.of("log") if e["level"] == "warning"]
    assert len(warnings) == 1 and "2 of 4 pairs" in warnings[0] and "resampled" in warnings[0], warnings
    assert "coarse1.nii.gz (11×13×11 voxels of 18×18×18 mm" in warnings[0] and "sub-001/t1.nii.gz" in warnings[0]
    flair = read_volume(targets[0])
    apart = flair.affine.copy()
    apart[0, 3] += 0.6 * 16 * 12  # 60 % of the field of view to the right: 40 % left in common
    write_volume(Volume(flair.data, apart), tmp_path / "apart.nii.gz")
    with pytest.raises(InputError, match="covers 40% of the field of view of sub-000/t1.nii.gz") as refused:
        TrainingVolumes.load([tmp_path / "apart.nii.gz"], spec, sources=sources[:1])
    assert "same subject" in refused.value.hint
    apart[0, 3] -= 0.2 * 16 * 12  # 60 % in common: a pair, resampled
    write_volume(Volume(flair.data, apart), tmp_path / "near.nii.gz")
    assert len(TrainingVolumes.load([tmp_path / "near.nii.gz"], spec, sources=sources[:1]).resampled) == 1


def test_the_signature_tells_t1_from_flair_pd_and_t2_on_the_shipped_models_grid():
    """On 64×80×64 at 3 mm: the signature of four simulated T1w; a fifth subject's T1w lies within the threshold,
    its FLAIR, PD and T2w beyond it (measured 0.004 < 0.018 < 0.038, 0.055, 0.109)."""
    value_range, spacing = IntensityNormalisation().range, (3.0, 3.0, 3.0)
    subjects = [simulate_subject(seed, (64, 80, 64), 3.0, contrasts="t1,t2,pd,flair") for seed in range(5)]

    def normalised(volume):
        return IntensityNormalisation().fit(volume.data).apply(volume.data)

    signature = source_signature(np.stack([normalised(s.images["t1"]) for s in subjects[:4]]), value_range, spacing)
    assert len(signature.bins) == BINS and sum(signature.bins) == pytest.approx(1.0)
    assert signature.threshold >= MIN_THRESHOLD
    distance = {c: signature.distance(normalised(subjects[4].images[c]), value_range, spacing)
                for c in ("t1", "flair", "pd", "t2")}
    assert distance["t1"] < signature.threshold / 2, distance
    assert min(distance["flair"], distance["pd"], distance["t2"]) > 1.5 * signature.threshold, distance
    assert distance["t2"] > distance["flair"]


def test_the_package_records_the_signature_of_its_training_sources(tiny_translation_model):
    signature = json.loads((tiny_translation_model / "model.json").read_text())["translation"]["source_signature"]
    assert len(signature["bins"]) == BINS and sum(signature["bins"]) == pytest.approx(1.0)
    assert signature["threshold"] >= MIN_THRESHOLD and signature["range"] == [0.0, 2.0]
    assert load_translation_model(tiny_translation_model).spec.source_signature.threshold == signature["threshold"]


def test_a_source_of_another_contrast_is_translated_with_a_warning_in_the_events_and_the_header(
        tiny_translation_model, held_out, tmp_path):
    code, events = run_cli("translate", tiny_translation_model, held_out / "t1.nii.gz", "--steps", "2",
                           "--out", tmp_path / "from_t1.nii.gz")
    assert code == 0, events.events
    assert not [e for e in events.of("log") if e["level"] == "warning"], events.events
    assert any("t1.nii.gz looks like the model's source 't1'" in e["message"] for e in events.of("log"))
    assert nib.load(str(tmp_path / "from_t1.nii.gz")).header["descrip"].item() == b"DiffusionPEFT translation t1->flair"

    code, events = run_cli("translate", tiny_translation_model, held_out / "t2.nii.gz", "--steps", "2", "--samples",
                           "2", "--out", tmp_path / "from_t2.nii.gz")
    assert code == 0, events.events
    warnings = [e["message"] for e in events.of("log") if e["level"] == "warning"]
    assert len(warnings) == 1 and "t2.nii.gz looks like a different contrast than the model's source 't1'" in warnings[0]
    assert "the translation may be meaningless" in warnings[0]
    for name in ("from_t2.nii.gz", "from_t2_std.nii.gz"):
        descrip = nib.load(str(tmp_path / name)).header["descrip"].item().decode()
        assert descrip.startswith("DiffusionPEFT t1->flair WARNING: source unlike t1 (") and len(descrip) <= 79


def test_a_package_without_a_signature_still_translates_and_says_the_check_is_skipped(
        tiny_translation_model, held_out, tmp_path):
    old = shutil.copytree(tiny_translation_model, tmp_path / "old")
    spec = json.loads((old / "model.json").read_text())
    del spec["translation"]["source_signature"]
    (old / "model.json").write_text(json.dumps(spec))
    code, events = run_cli("translate", old, held_out / "t2.nii.gz", "--steps", "2", "--out", tmp_path / "x.nii.gz")
    assert code == 0, events.events
    assert not [e for e in events.of("log") if e["level"] == "warning"], events.events
    assert any("no intensity signature" in e["message"] and e["level"] == "info" for e in events.of("log"))
