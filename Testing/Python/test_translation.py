"""Translation end to end on tiny models: pairs, training, the translate command's geometry and uncertainty
outputs, adapters on a translation model, and packages of the wrong kind."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from conftest import oblique_affine, run_cli, smooth_volume

from DiffusionPEFTLib.errors import InputError
from DiffusionPEFTLib.events import ListSink
from DiffusionPEFTLib.translation.model import load_translation_model
from DiffusionPEFTLib.translation.pairs import find_pairs
from DiffusionPEFTLib.translation.sampling import translate
from DiffusionPEFTLib.volumes import Volume, read_volume, write_volume

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
