"""Translation building blocks: the pixel puzzle, the bridge marginals (against the papers' formulas,
computed here independently, by Monte Carlo), the bridge sampler, and the puzzle-gradient loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DiffusionPEFTLib.translation.bridge import BridgeConfig, BridgeSchedule
from DiffusionPEFTLib.translation.puzzle import Puzzle
from DiffusionPEFTLib.translation.puzzle_loss import puzzle_gradient_loss


@pytest.mark.parametrize("p", [1, 2, 4])
@pytest.mark.parametrize("shape", [(8, 8, 8), (7, 9, 5), (13, 16, 11), (1, 3, 2)])
def test_puzzle_round_trip_is_exact_for_every_factor_and_odd_shapes(p, shape):
    puzzle = Puzzle(p, multiple=2)
    x = torch.randn(2, 3, *shape, dtype=torch.float64)
    puzzled = puzzle.puzzle(x)
    assert puzzled.shape[1] == 3 * p**3
    assert all(side % 2 == 0 for side in puzzled.shape[2:])  # the U-Net's downsampling fits
    assert tuple(puzzled.shape[2:]) == puzzle.puzzled_shape(shape)
    assert torch.equal(puzzle.unpuzzle(puzzled, shape), x)


def test_each_puzzle_channel_is_a_strided_full_field_subvolume():
    x = torch.arange(2 * 8 * 6 * 4, dtype=torch.float32).reshape(1, 2, 8, 6, 4)
    puzzled = Puzzle(2).puzzle(x)
    for c in range(2):
        for i in range(2):
            for j in range(2):
                for k in range(2):
                    assert torch.equal(puzzled[0, c * 8 + (i * 2 + j) * 2 + k], x[0, c, i::2, j::2, k::2])


def test_padding_replicates_edges_and_never_leaks_into_the_crop():
    puzzle = Puzzle(2, multiple=2)
    x = torch.randn(1, 1, 5, 6, 7)
    padded = puzzle.unpuzzle(puzzle.puzzle(x), puzzle.padded_shape((5, 6, 7)))
    assert padded.shape[2:] == (8, 8, 8)
    assert torch.equal(padded[:, :, 5:, :6, :7], x[:, :, 4:5].expand(1, 1, 3, 6, 7))


def _bbdm_reference(t, steps=1000, max_var=1.0):
    m = np.linspace(0.001, 0.999, steps)[t - 1]
    return 1 - m, m, 2 * max_var * (m - m**2)


def _i2sb_reference(t, steps=1000, beta_min=1e-4, beta_max=3e-4):
    half = np.linspace(beta_min**0.5, beta_max**0.5, steps // 2) ** 2
    betas = np.concatenate([half, half[::-1]])
    sigma2, sigma_bar2 = betas[:t].sum(), betas[t:].sum()
    total = sigma2 + sigma_bar2
    return sigma_bar2 / total, sigma2 / total, sigma2 * sigma_bar2 / total


@pytest.mark.parametrize("kind, reference", [("bbdm", _bbdm_reference), ("i2sb", _i2sb_reference)])
@pytest.mark.parametrize("t", [100, 500, 900])
def test_bridge_marginals_match_the_published_formulas(kind, reference, t):
    schedule = BridgeSchedule(BridgeConfig(kind=kind))
    generator = torch.Generator().manual_seed(t)
    x0, y = torch.full((1, 1, 4, 4, 4), 0.8, dtype=torch.float64), torch.full((1, 1, 4, 4, 4), -0.6, dtype=torch.float64)
    samples = 20000
    noise = torch.randn(samples, 1, 4, 4, 4, generator=generator, dtype=torch.float64)
    x_t = schedule.q_sample(x0.expand_as(noise), y.expand_as(noise), torch.full((samples,), t), noise)
    a, b, variance = reference(t)
    assert x_t.mean().item() == pytest.approx(a * 0.8 + b * -0.6, abs=4 * variance**0.5 / (samples * 64) ** 0.5 + 1e-12)
    assert x_t.var(dim=0).mean().item() == pytest.approx(variance, rel=0.03)


@pytest.mark.parametrize("kind", ["bbdm", "i2sb"])
def test_bridge_ends_are_the_target_and_the_source(kind):
    schedule = BridgeSchedule(BridgeConfig(kind=kind, timesteps=50))
    x0, y, noise = torch.randn(3, 1, 4, 4, 4), torch.randn(3, 1, 4, 4, 4), torch.randn(3, 1, 4, 4, 4)
    assert torch.allclose(schedule.q_sample(x0, y, torch.zeros(3), noise), x0)
    assert torch.allclose(schedule.q_sample(x0, y, torch.full((3,), 50), noise), y)


@pytest.mark.parametrize("kind", ["bbdm", "i2sb"])
def test_sampler_with_the_true_target_keeps_the_forward_marginals(kind):
    """With x̂0 = x0 (an oracle network), the state after each stochastic step is distributed as the forward
    marginal at that step, and the chain ends exactly at x0; the first state is the source itself."""
    schedule = BridgeSchedule(BridgeConfig(kind=kind))
    generator = torch.Generator().manual_seed(0)
    samples = 20000
    x0 = torch.full((samples, 1, 2, 2, 2), 0.5, dtype=torch.float64)
    y = torch.full_like(x0, -0.5)
    grid = schedule.sampling_grid(10)
    assert grid[0] == 1000 and grid[-1] == 0 and len(grid) == 11
    x = y.clone()  # the sampler's first state: the source
    for index, (t, t_next) in enumerate(zip(grid, grid[1:])):
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        x = schedule.step(x, x0, y, t, t_next, eta=0.5 if index else 1.0, noise=noise)
        if t_next in (700, 300):
            a, b, s = (float(table[t_next]) for table in (schedule.a, schedule.b, schedule.s))
            assert x.mean().item() == pytest.approx(a * 0.5 - b * 0.5, abs=4 * s / (samples * 8) ** 0.5)
            assert x.var(dim=0).mean().item() == pytest.approx(s**2, rel=0.03)
    assert torch.allclose(x, x0)


@pytest.mark.parametrize("prediction", ["x0", "residual"])
def test_prediction_targets_invert_to_x0(prediction):
    schedule = BridgeSchedule(BridgeConfig(prediction=prediction))
    x0, x_t = torch.randn(2, 1, 4, 4, 4), torch.randn(2, 1, 4, 4, 4)
    target = schedule.training_target(x0, x_t)
    assert torch.allclose(schedule.predicted_x0(target, x_t), x0)
    assert torch.equal(target, x0) == (prediction == "x0")


def test_puzzle_gradient_loss_sees_seams_that_a_voxel_loss_weighs_equally():
    """Two estimates with the same voxel-wise error: one error on one sub-volume (a period-2 seam pattern
    after unpuzzling), one smooth. Only the seams change the gradients, so only they cost."""
    puzzle, shape = Puzzle(2), (8, 8, 8)
    target = puzzle.puzzle(torch.zeros(1, 1, *shape))
    seams = target.clone()
    seams[:, 0] += 0.5  # one of the 8 sub-volumes offset: every other voxel
    smooth = target + 0.5 / 8 ** 0.5 * torch.ones_like(target)  # same squared error, spread evenly
    assert (seams - target).pow(2).sum().item() == pytest.approx((smooth - target).pow(2).sum().item())
    assert puzzle_gradient_loss(smooth, target, puzzle, shape).item() == pytest.approx(0.0, abs=1e-7)
    assert puzzle_gradient_loss(seams, target, puzzle, shape).item() > 0.1
    estimate = seams.clone().requires_grad_(True)
    puzzle_gradient_loss(estimate, target, puzzle, shape).backward()
    assert estimate.grad.abs().sum() > 0 and estimate.grad[:, 1:].abs().sum() > 0
