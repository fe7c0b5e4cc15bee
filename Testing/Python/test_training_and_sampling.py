"""Pretrain → synthesize end to end: geometry of outputs, determinism by seed, exact resume, cancel."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_ARCH, oblique_affine, run_cli, smooth_volume

from DiffusionPEFTLib.models import load_model
from DiffusionPEFTLib.volumes import read_volume, write_volume


def test_synthesize_like_reference_lands_on_its_grid(tmp_path, tiny_model_dir):
    reference = smooth_volume(shape=(21, 25, 11), affine=oblique_affine(spacing=(2.0, 1.5, 4.0)), seed=9)
    ref_path = write_volume(reference, tmp_path / "ref.nrrd")
    code, events = run_cli("synthesize", tiny_model_dir, "--like", ref_path, "--steps", "4", "--n", "2",
                           "--out", tmp_path / "sample.nii.gz", "--seed", "5")
    assert code == 0, events.events
    outputs = events.of("done")[0]["outputs"]
    assert [p.rsplit("/", 1)[-1] for p in outputs] == ["sample_001.nii.gz", "sample_002.nii.gz"]
    for path in outputs:
        out = read_volume(path, check=False)
        assert out.shape == reference.shape
        np.testing.assert_allclose(out.affine, reference.affine, atol=1e-5)
    assert len(events.of("artifact")) == 2
    progress = events.of("progress")
    assert progress[-1]["step"] == progress[-1]["total"] == 8


def test_same_seed_gives_identical_samples_and_other_seed_differs(tmp_path, tiny_model_dir):
    paths = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        code, _ = run_cli("synthesize", tiny_model_dir, "--steps", "3", "--out", tmp_path / f"{name}.nii.gz",
                          "--seed", seed, "--device", "cpu")
        assert code == 0
        paths[name] = read_volume(tmp_path / f"{name}.nii.gz", check=False).data
    np.testing.assert_array_equal(paths["a"], paths["b"])
    assert np.abs(paths["a"] - paths["c"]).max() > 1e-3


def test_ddpm_sampler_runs_and_writes_model_grid_geometry(tmp_path, tiny_model_dir):
    code, events = run_cli("synthesize", tiny_model_dir, "--sampler", "ddpm", "--steps", "3",
                           "--out", tmp_path / "d.nii.gz")
    assert code == 0, events.events
    out = read_volume(tmp_path / "d.nii.gz", check=False)
    assert out.shape == (16, 16, 16)
    np.testing.assert_allclose(np.diag(out.affine)[:3], [4.0, 4.0, 4.0])
    np.testing.assert_allclose(out.center_ras(), [0, 0, 0], atol=1e-9)


def _weights(path):
    return {k: v.clone() for k, v in load_model(path).unet.state_dict().items()}


def test_resume_matches_an_uninterrupted_run(tmp_path, volume_folder):
    common = [volume_folder, *TINY_ARCH, "--seed", "2", "--checkpoint-every", "3", "--val-fraction", "0.2",
              "--val-every", "3"]
    assert run_cli("pretrain", *common, "--steps", "6", "--out", tmp_path / "full")[0] == 0
    # a first run that stops after 3 steps, then a resumed run to 6 in the same work folder
    assert run_cli("pretrain", *common, "--steps", "3", "--out", tmp_path / "part",
                   "--workdir", tmp_path / "work")[0] == 0
    # the finished package is replaced by the longer run's: that takes --overwrite
    code, events = run_cli("pretrain", *common, "--steps", "6", "--out", tmp_path / "part", "--resume",
                           "--overwrite", "--workdir", tmp_path / "work")
    assert code == 0
    assert any("Resumed from step 3" in e["message"] for e in events.of("log"))
    full, resumed = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    for name in full:
        torch.testing.assert_close(resumed[name], full[name], rtol=0, atol=0, msg=name)
    history = json.loads((tmp_path / "work" / "history.json").read_text())
    full_history = json.loads((tmp_path / "full.work" / "history.json").read_text())
    assert history == full_history
    assert len(history["losses"]) == 6 and len(history["val_losses"]) == 2


def test_stop_file_cancels_with_a_checkpoint_and_no_model_written(tmp_path, volume_folder):
    stop = tmp_path / "STOP"
    stop.write_text("")
    code, events = run_cli("pretrain", volume_folder, *TINY_ARCH, "--steps", "5", "--out", tmp_path / "m",
                           "--stop-file", stop)
    assert code == 130
    assert events.of("error")[0]["kind"] == "cancelled"
    assert "--resume" in events.of("error")[0]["hint"]
    assert not (tmp_path / "m").exists()
    assert (tmp_path / "m.work" / "checkpoint.pt").exists()
    stop.unlink()
    code, events = run_cli("pretrain", volume_folder, *TINY_ARCH, "--steps", "2", "--out", tmp_path / "m", "--resume")
    assert code == 0 and (tmp_path / "m" / "model.json").exists()


def test_run_job_file_is_the_same_as_the_command_line(tmp_path, tiny_model_dir):
    from DiffusionPEFTLib.jobs import write_job

    job = write_job(tmp_path, "synthesize", {"model": str(tiny_model_dir), "steps": 3, "out": "outputs/s.nii.gz"},
                    {"seed": 7, "device": "cpu"})
    code, events = run_cli("run", job)
    assert code == 0, events.events
    assert (tmp_path / "outputs" / "s.nii.gz").exists()
    code, _ = run_cli("synthesize", tiny_model_dir, "--steps", "3", "--seed", "7", "--out", tmp_path / "cli.nii.gz")
    np.testing.assert_array_equal(read_volume(tmp_path / "outputs" / "s.nii.gz", check=False).data,
                                  read_volume(tmp_path / "cli.nii.gz", check=False).data)


def test_evaluate_reports_the_four_metrics(tmp_path):
    ref = smooth_volume(seed=1)
    pred = ref.with_data(ref.data + np.random.default_rng(0).normal(0, 2.0, ref.shape).astype(np.float32))
    write_volume(ref, tmp_path / "ref.nii.gz")
    write_volume(pred, tmp_path / "pred.nii.gz")
    code, events = run_cli("evaluate", tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz", "--json", tmp_path / "m.json")
    assert code == 0
    metrics = {e["name"]: e["value"] for e in events.of("metric")}
    assert set(metrics) == {"ms_ssim", "ssim", "psnr", "nrmse"}
    assert 0.5 < metrics["ms_ssim"] < 1.0
    assert metrics["psnr"] == pytest.approx(20 * np.log10(100 / 2.0), abs=0.3)
    assert json.loads((tmp_path / "m.json").read_text())["nrmse"] == pytest.approx(metrics["nrmse"], rel=1e-5)


def test_sampling_from_volumes_starts_at_their_noised_state_and_runs_the_lower_steps(tiny_model_dir):
    from DiffusionPEFTLib.errors import InputError
    from DiffusionPEFTLib.synthesis import sample

    model = load_model(tiny_model_dir, torch.device("cpu")).eval()
    volumes = torch.rand((2, 1, *model.grid_shape), generator=torch.Generator().manual_seed(5)) * 2 - 1
    grid = model.schedule.timesteps(10)
    middle = grid[len(grid) // 2] + 1  # between two grid steps: the lower one is the first
    seen, denoise = [], model.denoise
    model.denoise = lambda x, t, *rest: seen.append((t, x.clone())) or denoise(x, t, *rest)
    sample(model, 2, 10, generator=torch.Generator().manual_seed(3), batch_size=2, start=(volumes, middle))
    assert [t for t, _ in seen] == [t for t in grid if t < middle] and seen[0][0] == middle - 1
    noise = torch.randn(volumes.shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(seen[0][1], model.schedule.add_noise(volumes, noise, torch.full((2,), middle - 1)))
    model.denoise = denoise

    def distance(step: int) -> float:
        out = sample(model, 2, 10, generator=torch.Generator().manual_seed(3), batch_size=1, start=(volumes, step))
        return float(((out - volumes) ** 2).mean())
    assert distance(grid[-1]) < 0.05 * distance(grid[0])  # from the last step it returns the volumes, not a sample
    with pytest.raises(InputError, match="shape"):
        sample(model, 3, 10, start=(volumes, middle))
