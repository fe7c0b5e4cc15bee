"""finetune / synthesize --adapter / assess / demo through the command line, on the tiny model."""

import json
import shutil

import numpy as np
import pytest
from conftest import TINY_ARCH, run_cli, smooth_volume

from DiffusionPEFTLib.adapters import get_method
from DiffusionPEFTLib.volumes import read_volume, write_volume


@pytest.fixture(scope="module")
def target_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("targets")
    for i in range(4):
        write_volume(smooth_volume(seed=50 + i, scale=300.0), folder / f"t{i}.nii.gz")
    return folder


def test_dry_run_needs_only_model_json_and_reports_the_plan(tmp_path, tiny_model_dir):
    config_only = tmp_path / "config_only"
    config_only.mkdir()
    shutil.copy(tiny_model_dir / "model.json", config_only)
    code, events = run_cli("finetune", config_only, "--dry-run", "--method", "lora", "--rank", "2")
    assert code == 0, events.events
    metrics = {e["name"]: e["value"] for e in events.of("metric")}
    assert metrics["base_parameters"] == 184_217
    assert 0 < metrics["trainable_parameters"] < metrics["base_parameters"]
    assert metrics["trainable_share"] == pytest.approx(metrics["trainable_parameters"] / 184_217, rel=1e-4)
    assert "lora on" in events.of("log")[0]["message"]


def test_finetune_then_synthesize_with_the_adapter_changes_the_output(tmp_path, tiny_model_dir, target_folder):
    code, events = run_cli("finetune", tiny_model_dir, target_folder, "--method", "tenvoo-l", "--rank", "2",
                           "--steps", "3", "--lr", "5e-3", "--out", tmp_path / "adapter")
    assert code == 0, events.events
    manifest = json.loads((tmp_path / "adapter" / "adapter.json").read_text())
    assert manifest["method"] == "tenvoo-l" and manifest["provenance"]["steps"] == 3
    assert [e["step"] for e in events.of("progress") if e["stage"] == "finetune"] == [0, 1, 2, 3]
    outputs = {}
    for name, extra in (("base", []), ("tuned", ["--adapter", tmp_path / "adapter"])):
        assert run_cli("synthesize", tiny_model_dir, *extra, "--steps", "3", "--seed", "4",
                       "--out", tmp_path / f"{name}.nii.gz")[0] == 0
        outputs[name] = read_volume(tmp_path / f"{name}.nii.gz", check=False).data
    assert np.abs(outputs["base"] - outputs["tuned"]).max() > 1e-4
    # an existing adapter folder is not overwritten by accident
    code, events = run_cli("finetune", tiny_model_dir, target_folder, "--steps", "1", "--out", tmp_path / "adapter")
    assert code == 2 and "--overwrite" in events.of("error")[0]["hint"]


def test_adapter_on_another_base_model_is_refused(tmp_path, tiny_model_dir, target_folder, volume_folder):
    assert run_cli("finetune", tiny_model_dir, target_folder, "--method", "lora", "--steps", "1",
                   "--out", tmp_path / "adapter")[0] == 0
    provenance = json.loads((tmp_path / "adapter" / "adapter.json").read_text())["provenance"]
    assert provenance["lr"] == pytest.approx(get_method("lora").lr)  # no --lr: the method's own default
    assert get_method("tenvoo-l").lr <= get_method("lora").lr / 10  # measured: TenVOO diverges at LoRA's rates
    assert run_cli("pretrain", volume_folder, "--out", tmp_path / "other", *TINY_ARCH, "--steps", "1",
                   "--seed", "9")[0] == 0
    code, events = run_cli("synthesize", tmp_path / "other", "--adapter", tmp_path / "adapter",
                           "--out", tmp_path / "x.nii.gz")
    assert code == 4
    assert events.of("error")[0]["kind"] == "adapter" and "another base model" in events.of("error")[0]["message"]
    assert not (tmp_path / "x.nii.gz").exists()


def test_finetune_resume_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, target_folder):
    common = [tiny_model_dir, target_folder, "--method", "lora", "--rank", "2", "--lr", "1e-3", "--seed", "3"]
    assert run_cli("finetune", *common, "--steps", "4", "--out", tmp_path / "full")[0] == 0
    assert run_cli("finetune", *common, "--steps", "2", "--out", tmp_path / "part")[0] == 0
    # continuing a finished run to more steps replaces its adapter: that takes --overwrite
    assert run_cli("finetune", *common, "--steps", "4", "--out", tmp_path / "part", "--resume", "--overwrite")[0] == 0
    from safetensors.torch import load_file

    full = load_file(tmp_path / "full" / "adapter.safetensors")
    part = load_file(tmp_path / "part" / "adapter.safetensors")
    assert full.keys() == part.keys()
    for key in full:
        assert np.array_equal(full[key].numpy(), part[key].numpy()), key


def test_assess_writes_numbers_and_a_montage(tmp_path, tiny_model_dir, volume_folder, target_folder):
    code, events = run_cli("assess", tiny_model_dir, target_folder, "--train", volume_folder, "--n", "2",
                           "--steps", "2", "--out", tmp_path / "assessment")
    assert code == 0, events.events
    result = json.loads((tmp_path / "assessment" / "assessment.json").read_text())
    for key in ("ms_ssim_sample_real", "ms_ssim_real_real", "ms_ssim_sample_sample", "mmd_sample_real",
                "mmd_mean_real", "realism_ratio", "diversity_ratio", "fid_sample_real", "fid_mean_real",
                "feature_mmd_sample_real", "feature_mmd_mean_real", "precision", "recall", "density", "coverage",
                "vendi_features_samples", "vendi_features_reals", "vendi_ms_ssim_samples", "vendi_ms_ssim_reals"):
        assert np.isfinite(result[key]), key
    assert 1.0 <= result["vendi_ms_ssim_reals"] <= result["reals"]
    metric_names = {event["name"] for event in events.of("metric")}
    assert {"fid_sample_real", "vendi_features_samples", "coverage"} <= metric_names
    assert result["ms_ssim_real_real"] < 1.0
    assert (tmp_path / "assessment" / "montage.png").stat().st_size > 5_000


def test_demo_runs_end_to_end_and_writes_its_report(tmp_path, tiny_model_dir, tiny_translation_dir):
    code, events = run_cli("demo", "--model", tiny_model_dir, "--steps", "2", "--samples", "2",
                           "--sampling-steps", "2", "--train-subjects", "2", "--heldout-subjects", "2",
                           "--translation-model", tiny_translation_dir, "--translate-subjects", "2",
                           "--translate-samples", "2", "--translate-steps", "2", "--out", tmp_path / "report")
    assert code == 0, events.events
    report = tmp_path / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"base", "fine_tuned"}
    assert metrics["counts"]["total"] > 0
    for name in ("report.md", "montage.png", "loss_curve.png", "adapter/adapter.json"):
        assert (report / name).exists(), name
    assert len(list((report / "samples").glob("*.nii.gz"))) == 4
    text = (report / "report.md").read_text()
    assert "| metric | base model | fine-tuned | reference |" in text
    for model_metrics in metrics["metrics"].values():  # feature-network numbers beside the MS-SSIM ones
        assert model_metrics["judged_target_contrast"] in (0.0, 0.5, 1.0)  # share of 2 samples called T2w
        assert model_metrics["fid_sample_real"] >= 0 and model_metrics["fid_mean_real"] >= 0
        assert 1.0 <= model_metrics["vendi_features_samples"] <= 2.0
    assert metrics["settings"]["judged_reals"] == 1.0  # the feature network calls the simulated T2w reals T2w
    assert metrics["settings"]["lr"] == 1e-4  # the demo's TenVOO-L learning rate for the T1w → T2w shift
    assert "training mean image" in text and "FID samples" in text
    stages = {e["stage"] for e in events.of("progress")}
    assert {"simulate", "sample", "finetune", "translate"} <= stages
    # the translation part: each held-out subject's mean and std on its t1's grid, scored beside histogram matching
    translation = metrics["translation"]
    cohort = json.loads((report / "data" / "translation" / "manifest.json").read_text())["subjects"]
    for subject in cohort:
        t1 = read_volume(report / "data" / "translation" / subject["files"]["t1"])
        for suffix in ("translated", "std"):
            out = read_volume(report / "translation" / f"{subject['id']}_flair_{suffix}.nii.gz")
            assert out.shape == t1.shape and np.allclose(out.affine, t1.affine)
    scores = translation["scores"]
    assert set(scores) == {"translation", "histogram matching"} and translation["subjects"] == 2
    for method in scores.values():
        assert -1 <= method["ssim_brain"][0] <= 1 and method["nrmse_brain"][0] > 0 and method["psnr_whole"][1] >= 0
    assert -1 <= scores["translation"]["std_error_pearson"][0] <= 1
    assert "## Translation: t1 → flair" in text and "histogram matching" in text
    assert (report / "translation.png").stat().st_size > 5_000
    # the reconstruction part: the fine-tuned model as the prior, beside CS and zero-filling, on one subject
    reconstruction = metrics["reconstruction"]
    assert reconstruction["subjects"] == 1 and set(reconstruction["scores"]) == {"ddnm", "cs", "zero-filled"}
    for method in reconstruction["scores"].values():
        assert 0 < method["nrmse_brain"][0] < 2 and method["seconds"][0] >= 0
    assert "std_error_pearson" in reconstruction["scores"]["ddnm"]
    heldout = json.loads((report / "data" / "heldout" / "manifest.json").read_text())["subjects"][0]["id"]
    for name in ("ddnm", "ddnm_std", "cs", "zero-filled"):
        assert read_volume(report / "reconstruction" / f"{heldout}_{name}.nii.gz").shape == (16, 16, 16)
    assert "## Reconstruction from 4× undersampled k-space" in text
    assert (report / "reconstruction.png").stat().st_size > 5_000
