"""The shipped demo base model: intact, described by its card, and it has learned T1w brains."""

import json

import pytest
import torch

from DiffusionPEFTLib.metrics import denoising_loss
from DiffusionPEFTLib.models import DiffusionModel, load_model, read_model_config
from DiffusionPEFTLib.resources import demo_model_dir
from DiffusionPEFTLib.simulate import simulate_cohort
from DiffusionPEFTLib.volumes import to_model_grid


@pytest.fixture(scope="module")
def shipped():
    return load_model(demo_model_dir())  # raises if the weights do not match model.json's sha256


def test_package_matches_its_card(shipped):
    folder = demo_model_dir()
    assert shipped.parameter_count() == 2_920_289
    assert shipped.config.input.shape == (32, 40, 32)
    assessment = json.loads((folder / "assessment.json").read_text())
    assert assessment["realism_ratio"] >= 0.8
    assert assessment["mmd_sample_real"] < assessment["mmd_mean_real"]
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"**{assessment['realism_ratio']:.2f}**" in card and "2,920,289" in card


def test_shipped_weights_denoise_unseen_t1_far_better_than_untrained_weights(shipped):
    spec = shipped.config.input
    normalisation = spec.normalisation()
    images = []
    for subject in simulate_cohort(2, seed=987_654, contrasts="t1", shape=spec.shape, spacing=spec.spacing):
        volume, _ = to_model_grid(subject.images["t1"], spec.shape, spec.spacing)
        images.append(torch.from_numpy(normalisation.fit(volume.data).apply(volume.data))[None])
    x0 = torch.stack(images).float()
    torch.manual_seed(0)
    untrained = DiffusionModel(read_model_config(demo_model_dir())).eval()
    trained_loss, untrained_loss = denoising_loss(shipped, x0), denoising_loss(untrained, x0)
    assert trained_loss < 0.2 * untrained_loss, (trained_loss, untrained_loss)
    assert denoising_loss(shipped, x0) == trained_loss  # fixed noise: reproducible
