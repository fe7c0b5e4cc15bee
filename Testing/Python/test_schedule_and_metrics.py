"""Our noise schedule and samplers agree with MONAI's schedulers; metrics follow their definitions."""

import numpy as np
import pytest
import torch
from conftest import smooth_volume

from DiffusionPEFTLib.errors import InputError
from DiffusionPEFTLib.metrics import compare_in_mask, compare_volumes, cross_ms_ssim, ms_ssim, ms_ssim_settings, nrmse, pairwise_ms_ssim
from DiffusionPEFTLib.models import NoiseSchedule, ScheduleConfig


def _monai(kind, prediction):
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    cls = DDIMScheduler if kind == "ddim" else DDPMScheduler
    return cls(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0005, beta_end=0.0195,
               clip_sample=False, prediction_type=prediction)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_forward_process_and_targets_match_monai(prediction):
    ours = NoiseSchedule(ScheduleConfig(prediction_type=prediction))
    monai = _monai("ddpm", prediction)
    x0, noise = torch.randn(3, 1, 4, 4, 4), torch.randn(3, 1, 4, 4, 4)
    t = torch.tensor([0, 500, 999])
    torch.testing.assert_close(ours.add_noise(x0, noise, t), monai.add_noise(x0, noise, t))
    if prediction == "v_prediction":
        torch.testing.assert_close(ours.training_target(x0, noise, t), monai.get_velocity(x0, noise, t))
    # split() inverts the target: the true target gives back x0 and the noise
    x_t = ours.add_noise(x0, noise, t[1:2].repeat(3))
    x0_hat, eps_hat = ours.split(ours.training_target(x0, noise, t[1:2].repeat(3)), x_t, t[1:2].repeat(3))
    torch.testing.assert_close(x0_hat, x0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(eps_hat, noise, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_ddim_step_matches_monai_on_the_same_timestep_pair(prediction):
    ours = NoiseSchedule(ScheduleConfig(prediction_type=prediction))
    monai = _monai("ddim", prediction)
    monai.set_timesteps(50)  # MONAI steps from t to t − 1000 // 50
    x_t, output = torch.randn(2, 1, 4, 4, 4), torch.randn(2, 1, 4, 4, 4)
    t = 980
    expected, _ = monai.step(output, t, x_t)
    x0, eps = ours.split(output, x_t, torch.tensor([t, t]))
    torch.testing.assert_close(ours.ddim_step(x_t, x0, eps, t, t - 20), expected, atol=1e-5, rtol=1e-5)


def test_ddpm_step_on_the_full_grid_matches_monai_mean():
    ours = NoiseSchedule(ScheduleConfig(prediction_type="epsilon"))
    monai = _monai("ddpm", "epsilon")
    monai.set_timesteps(1000)
    x_t, output = torch.randn(1, 1, 4, 4, 4), torch.randn(1, 1, 4, 4, 4)
    for t in (999, 400, 1):
        generator = torch.Generator().manual_seed(0)
        expected, _ = monai.step(output, t, x_t, generator=generator)
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(0))
        x0, _ = ours.split(output, x_t, torch.tensor([t]))
        torch.testing.assert_close(ours.ddpm_step(x_t, x0, t, t - 1, noise), expected, atol=1e-4, rtol=1e-4)


def test_timestep_grid_is_descending_and_ends_at_zero():
    ours = NoiseSchedule(ScheduleConfig())
    grid = ours.timesteps(50)
    assert grid[0] == 999 and grid[-1] == 0 and len(grid) == 50
    assert all(a > b for a, b in zip(grid, grid[1:]))
    assert ours.timesteps(5000) == list(range(999, -1, -1))


@pytest.mark.parametrize("shape, kernel, scales", [((32, 40, 32), 7, 3), ((64, 64, 64), 7, 4), ((160, 224, 160), 7, 5),
                                                    ((16, 16, 16), 7, 2), ((8, 8, 8), 3, 2), ((6, 9, 9), 3, 2)])
def test_ms_ssim_settings_follow_the_size_rule(shape, kernel, scales):
    settings = ms_ssim_settings(shape)
    assert (settings.kernel_size, len(settings.weights)) == (kernel, scales)
    assert sum(settings.weights) == pytest.approx(1.0)
    assert min(shape) // (scales - 1) ** 2 > kernel - 1 and min(shape) // 2 ** (scales - 1) >= kernel


def test_ms_ssim_is_one_for_identical_volumes_and_refuses_tiny_ones():
    volume = smooth_volume(shape=(32, 40, 32)).data
    assert ms_ssim(volume, volume) == pytest.approx(1.0, abs=1e-5)
    noisy = volume + np.random.default_rng(0).normal(0, 10, volume.shape).astype(np.float32)
    assert ms_ssim(noisy, volume) < 0.95
    with pytest.raises(InputError, match="too small"):
        ms_ssim(np.random.rand(4, 4, 4), np.random.rand(4, 4, 4))


def test_psnr_and_nrmse_follow_their_definitions():
    ref = smooth_volume(shape=(16, 16, 16)).data
    pred = ref + 1.0
    data_range = ref.max() - ref.min()
    metrics = compare_volumes(pred, ref)
    assert metrics["psnr"] == pytest.approx(20 * np.log10(data_range), rel=1e-4)
    assert nrmse(pred, ref) == pytest.approx(np.sqrt(ref.size) / np.linalg.norm(ref), rel=1e-5)


def test_diversity_is_lower_for_a_varied_set_than_for_copies():
    varied = [smooth_volume(shape=(16, 16, 16), seed=s).data for s in range(3)]
    copies = [varied[0]] * 3
    assert pairwise_ms_ssim(copies) == pytest.approx(1.0, abs=1e-5)
    assert pairwise_ms_ssim(varied) < 0.9
    assert cross_ms_ssim(varied, copies) < cross_ms_ssim(copies, copies)


def test_metrics_in_a_mask_ignore_errors_outside_it_and_equal_the_whole_volume_ones_for_a_full_mask():
    rng = np.random.default_rng(4)
    ref = rng.random((20, 24, 20)).astype(np.float32)
    pred = ref + 0.05 * rng.standard_normal(ref.shape).astype(np.float32)
    whole = compare_volumes(pred, ref, 1.0)
    full = compare_in_mask(pred, ref, np.ones(ref.shape, bool), 1.0)
    for name in ("ssim", "psnr", "nrmse"):
        assert full[name] == pytest.approx(whole[name], rel=1e-5)
    mask = np.zeros(ref.shape, bool)
    mask[10:] = True
    ruined = pred.copy()
    ruined[:10] = 5.0  # a huge error, all outside the mask
    inside = compare_in_mask(ruined, ref, mask, 1.0)
    error = (pred - ref)[mask]
    assert inside["psnr"] == pytest.approx(10 * np.log10(1.0 / np.mean(error**2)), rel=1e-5)
    assert inside["nrmse"] == pytest.approx(np.linalg.norm(error) / np.linalg.norm(ref[mask]), rel=1e-5)
    # SSIM is local (7-voxel window): three voxels away from the ruined half it no longer sees it
    away = np.zeros(ref.shape, bool)
    away[13:] = True
    assert compare_in_mask(ruined, ref, away, 1.0)["ssim"] == pytest.approx(
        compare_in_mask(pred, ref, away, 1.0)["ssim"], rel=1e-6)
    assert compare_in_mask(ruined, ref, away, 1.0)["ssim"] > 2 * compare_volumes(ruined, ref, 1.0)["ssim"]
    with pytest.raises(InputError, match="mask"):
        compare_in_mask(pred, ref, np.zeros(ref.shape, bool), 1.0)
