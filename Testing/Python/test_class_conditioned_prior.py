"""A class-conditioned prior (one class per contrast) from ``pretrain --contrast a,b``, warm-started with
``--init-from``, and sampled by contrast name with ``synthesize --contrast``."""

from __future__ import annotations

import json
import types

import pytest
import torch
from conftest import TINY_ARCH, run_cli

from DiffusionPEFTLib.commands.pretrain import build_config, warm_start
from DiffusionPEFTLib.errors import ModelError
from DiffusionPEFTLib.models import DiffusionModel, load_model

TINY_OPTIONS = dict(shape=[16, 16, 16], spacing=[4.0], channels=[8, 16, 16], attention_levels=[0, 0, 1],
                    num_res_blocks=1, head_channels=16, norm_groups=8, timesteps=1000,
                    schedule="scaled_linear_beta", prediction="v")


def options(**changes):
    return types.SimpleNamespace(**{**TINY_OPTIONS, **changes})


@pytest.fixture(scope="module")
def conditioned_prior(translation_cohort, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prior") / "prior"
    code, events = run_cli("pretrain", translation_cohort / "manifest.json", "--contrast", "t1,flair", "--init-from",
                           tiny_model_dir, *TINY_ARCH, "--steps", "2", "--out", out)
    assert code == 0, events.events
    return out, events


def test_several_contrasts_make_one_class_each_and_every_volume_is_labelled(conditioned_prior, translation_cohort):
    out, events = conditioned_prior
    spec = json.loads((out / "model.json").read_text())
    assert spec["input"]["condition_classes"] == ["t1", "flair"]
    assert spec["architecture"]["arguments"]["num_class_embeds"] == 2
    subjects = len(json.loads((translation_cohort / "manifest.json").read_text())["subjects"])
    assert f"Loading {2 * subjects} training volumes" in " ".join(e.get("message", "") for e in events.events)


def test_synthesize_by_contrast_name_gives_that_class_and_refuses_unknown_names(conditioned_prior, tmp_path):
    out, _ = conditioned_prior
    volumes = {}
    for name in ("t1", "flair"):
        code, events = run_cli("synthesize", out, "--contrast", name, "--steps", "2", "--seed", "3",
                               "--out", tmp_path / f"{name}.nii.gz")
        assert code == 0, events.events
        volumes[name] = (tmp_path / f"{name}.nii.gz").read_bytes()
    code, events = run_cli("synthesize", out, "--class-label", "1", "--steps", "2", "--seed", "3",
                           "--out", tmp_path / "label1.nii.gz")
    assert code == 0 and (tmp_path / "label1.nii.gz").read_bytes() == volumes["flair"]
    code, events = run_cli("synthesize", out, "--contrast", "t2", "--steps", "2", "--out", tmp_path / "t2.nii.gz")
    error = events.of("error")[0]
    assert code == 2 and "'t2'" in error["message"] and "t1, flair" in error["hint"]
    assert not (tmp_path / "t2.nii.gz").exists()


def test_a_warm_start_is_the_donor_model_for_every_class(tiny_model_dir):
    donor = load_model(tiny_model_dir)
    model = DiffusionModel(build_config(options(contrast="t1,t2,pd")))
    warm_start(model, tiny_model_dir, "cpu")
    model.eval()
    x = torch.randn(3, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([10, 500, 900])
    with torch.no_grad():
        expected = donor(x, t)
        for label in range(3):
            torch.testing.assert_close(model(x, t, torch.full((3,), label)), expected)


def test_a_warm_start_from_another_architecture_is_refused(tiny_model_dir):
    model = DiffusionModel(build_config(options(channels=[8, 16, 32], contrast="t1,t2")))
    with pytest.raises(ModelError) as error:
        warm_start(model, tiny_model_dir, "cpu")
    assert "channels" in error.value.message and "--channels" in error.value.hint


def test_joint_training_combines_a_manifest_of_old_contrasts_with_one_of_a_new_contrast(tmp_path):
    for name, contrasts, seed in (("old", "t1,t2", 1), ("new", "flair", 2)):
        code, events = run_cli("simulate", "--n", "2", "--contrasts", contrasts, "--shape", "16", "16", "16",
                               "--spacing", "12", "--seed", str(seed), "--out", tmp_path / name)
        assert code == 0, events.events
    code, events = run_cli("pretrain", tmp_path / "old" / "manifest.json", tmp_path / "new" / "manifest.json",
                           "--contrast", "t1,t2,flair", *TINY_ARCH, "--steps", "1", "--val-fraction", "0",
                           "--out", tmp_path / "joint")
    assert code == 0, events.events
    assert "Loading 6 training volumes" in " ".join(e.get("message", "") for e in events.events)
    code, events = run_cli("pretrain", tmp_path / "new" / "manifest.json", "--contrast", "t1,pd", *TINY_ARCH,
                           "--steps", "1", "--out", tmp_path / "none")
    assert code == 2 and "'t1'" in events.of("error")[0]["message"]


def test_controlled_fine_tuning_adds_a_named_class_and_adapters_need_a_class(conditioned_prior, tmp_path):
    out, _ = conditioned_prior
    code, events = run_cli("simulate", "--n", "3", "--contrasts", "pd", "--shape", "16", "16", "16", "--spacing", "12",
                           "--seed", "5", "--out", tmp_path / "pd")
    assert code == 0, events.events
    manifest = tmp_path / "pd" / "manifest.json"
    code, events = run_cli("finetune", out, manifest, "--contrast", "pd", "--method", "lora", "--rank", "2",
                           "--steps", "1", "--out", tmp_path / "lora")
    error = events.of("error")[0]
    assert code == 2 and "class-conditioned (t1, flair)" in error["message"] and "new_class=true" in error["hint"]
    assert not (tmp_path / "lora").exists()
    code, events = run_cli("finetune", out, manifest, "--contrast", "pd", "--method", "controlled", "--option",
                           "new_class=true", "--steps", "2", "--out", tmp_path / "controlled")
    assert code == 0, events.events
    provenance = json.loads((tmp_path / "controlled" / "adapter.json").read_text())["provenance"]
    assert provenance["class_label"] == 2 and provenance["new_class_name"] == "pd"
    code, events = run_cli("synthesize", out, "--adapter", tmp_path / "controlled", "--contrast", "pd", "--steps", "2",
                           "--out", tmp_path / "pd.nii.gz")
    assert code == 0, events.events
    code, events = run_cli("finetune", out, manifest, "--contrast", "pd", "--class-label", "0", "--method", "lora",
                           "--rank", "2", "--steps", "1", "--out", tmp_path / "lora_t1")
    assert code == 0, events.events
    assert json.loads((tmp_path / "lora_t1" / "adapter.json").read_text())["provenance"]["class_label"] == 0


def test_a_conditioned_model_needs_a_class_and_assess_takes_it_from_the_contrast(conditioned_prior, translation_cohort,
                                                                               tmp_path):
    out, _ = conditioned_prior
    code, events = run_cli("synthesize", out, "--steps", "2", "--out", tmp_path / "x.nii.gz")
    error = events.of("error")[0]
    assert code == 2 and "class-conditioned" in error["message"] and "1 = flair" in error["hint"]
    code, events = run_cli("assess", out, translation_cohort / "manifest.json", "--contrast", "flair", "--n", "2",
                           "--steps", "2", "--out", tmp_path / "assessment")
    assert code == 0, events.events


def test_a_model_trained_in_stages_records_every_stage(conditioned_prior, translation_cohort, tiny_model_dir, tmp_path):
    """--init-from writes the donor's name, weights' sha256 and provenance (with the donor's own lineage)."""
    stage1, _ = conditioned_prior
    stage2 = tmp_path / "stage2"
    code, events = run_cli("pretrain", translation_cohort / "manifest.json", "--contrast", "t1,flair", "--init-from",
                           stage1, *TINY_ARCH, "--steps", "1", "--out", stage2)
    assert code == 0, events.events
    first = json.loads((stage1 / "model.json").read_text())
    lineage = json.loads((stage2 / "model.json").read_text())["provenance"]["started_from"]
    assert lineage["model"] == stage1.name and lineage["weights_sha256"] == first["weights_sha256"]
    assert lineage["provenance"] == first["provenance"] and lineage["provenance"]["training"]["steps"] == 2
    assert lineage["provenance"]["started_from"]["model"] == tiny_model_dir.name
