"""Distribution metrics on the features of a 3D network: FID, feature MMD, precision/recall/density/coverage and
the Vendi score, the shipped feature network (sha256, degradation ranking) and MedicalNet weights from a local file.

Exact values are checked on hand-made features where the formula gives a number (so a metric missing a term
or a normalisation fails); the shipped network is checked on 24 simulated subjects (about 7 s in all).
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from DiffusionPEFTLib import metrics
from DiffusionPEFTLib.errors import InputError, ModelError
from DiffusionPEFTLib.metrics.degradations import FAILURES, MILD, degraded_sets
from DiffusionPEFTLib.metrics.feature_net import CONFIG_NAME, CONTRASTS, WEIGHTS_NAME, shipped_feature_net
from DiffusionPEFTLib.resources import feature_net_dir
from DiffusionPEFTLib.simulate import simulate_cohort
from DiffusionPEFTLib.volumes import IntensityNormalisation


@pytest.fixture(scope="module")
def cohort() -> dict[str, list[np.ndarray]]:
    """24 simulated subjects on the demo grid (8 each healthy, WMH, tumour), T1w and T2w in the model range."""
    normalisation = IntensityNormalisation()
    volumes = {"t1": [], "t2": [], "t1_volume": []}
    for index, lesions in enumerate(("none", "wmh", "tumour")):
        for subject in simulate_cohort(8, seed=500 + index, atrophy=(0.0, 1.0), lesions=lesions, contrasts="t1,t2"):
            for contrast in ("t1", "t2"):
                data = subject.images[contrast].data
                volumes[contrast].append(normalisation.fit(data).apply(data))
            volumes["t1_volume"].append(subject.images["t1"])
    return volumes


# --- FID ---------------------------------------------------------------------------------------------------

def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)))
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = torch.arange(6, dtype=torch.float64)
    assert metrics.frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
    # Same mean, covariance × 4: ‖Δμ‖² = 0 and tr(Σ + 4Σ − 2·2Σ) = tr Σ — only the trace term sees it.
    spread = a.mean(0) + 2 * (a - a.mean(0))
    trace = float(torch.trace(torch.cov(a.T)))
    assert metrics.frechet_distance(a, spread) == pytest.approx(trace, rel=1e-6)


def test_fid_of_a_set_against_itself_is_zero_and_against_a_shifted_set_positive(cohort):
    reals = cohort["t1"][:8]
    assert metrics.fid(reals, reals) == pytest.approx(0.0, abs=1e-6)
    assert metrics.fid(reals, [v + 0.2 for v in reals]) > 1.0


def test_the_shipped_network_ranks_degradations_in_order(cohort):
    """By FID (12 volumes a set): held-out reals < every degradation; mild blur and noise < the mean image
    repeated and another contrast; a degradation grows with its strength."""
    reference, held_out = cohort["t1"][::2], cohort["t1"][1::2]  # both halves mix the lesion types
    sets = degraded_sets(reference, held_out, cohort["t2"][1::2])
    fid = {name: metrics.fid(reference, volumes) for name, volumes in sets.items()}
    assert fid["held-out real"] < min(value for name, value in fid.items() if name != "held-out real"), fid
    assert max(fid[name] for name in MILD) < min(fid[name] for name in FAILURES), fid
    assert fid["blur σ=1"] < fid["blur σ=2"] and fid["noise σ=0.05"] < fid["noise σ=0.1"], fid


# --- MMD, precision/recall -----------------------------------------------------------------------------------

def test_feature_mmd_separates_another_contrast_from_real(cohort):
    reference, held_out = cohort["t1"][::2], cohort["t1"][1::2]
    assert metrics.feature_mmd(reference, held_out) < 0.5 * metrics.feature_mmd(reference, cohort["t2"][1::2])


def test_manifold_scores_on_points_on_a_line():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    generated = torch.tensor([[0.5], [1.5], [10.0]])
    # k = 1: real balls have radius 1; generated radii 1, 1, 8.5.
    scores = metrics.manifold_scores(real, generated, k=1)
    assert scores["precision"] == pytest.approx(2 / 3)  # 10 lies in no real ball
    assert scores["recall"] == pytest.approx(1.0)  # the ball of 10 (radius 8.5) reaches 2 and 3
    assert scores["density"] == pytest.approx(4 / 3)  # 0.5 and 1.5 lie in two real balls each: 4 / (1 · 3)
    assert scores["coverage"] == pytest.approx(3 / 4)  # the ball of 3 holds no sample


def test_precision_and_recall_of_a_set_against_itself_are_one(cohort):
    scores = metrics.precision_recall(cohort["t1"], cohort["t1"], k=3)
    assert scores["precision"] == scores["recall"] == scores["coverage"] == 1.0
    with pytest.raises(InputError, match="k = 3"):
        metrics.precision_recall(cohort["t1"][:3], cohort["t1"], k=3)


# --- Vendi ---------------------------------------------------------------------------------------------------

def test_vendi_score_counts_distinct_groups():
    assert metrics.vendi_score(np.ones((5, 5))) == pytest.approx(1.0)
    assert metrics.vendi_score(np.eye(5)) == pytest.approx(5.0)
    two_groups = np.kron(np.eye(2), np.ones((3, 3)))  # 6 items, two groups of 3 identical ones
    assert metrics.vendi_score(two_groups) == pytest.approx(2.0)


def test_vendi_of_identical_volumes_is_one_and_of_distinct_ones_between_one_and_n(cohort):
    distinct = cohort["t1"][:4]
    identical = [distinct[0]] * 4
    assert metrics.feature_vendi(identical) == pytest.approx(1.0, abs=1e-6)
    assert metrics.ms_ssim_vendi(identical, data_range=2.0) == pytest.approx(1.0, abs=1e-6)
    for score in (metrics.feature_vendi(distinct), metrics.ms_ssim_vendi(distinct, data_range=2.0)):
        assert 1.05 < score <= 4.0


# --- the shipped network ---------------------------------------------------------------------------------------

def test_shipped_weights_match_their_sha256_and_a_changed_file_is_refused(tmp_path):
    folder = feature_net_dir()
    spec = json.loads((folder / CONFIG_NAME).read_text())
    weights = (folder / WEIGHTS_NAME).read_bytes()
    assert hashlib.sha256(weights).hexdigest() == spec["weights_sha256"]
    assert len(weights) < 2 * 1024 * 1024
    copy = tmp_path / "FeatureNet"
    shutil.copytree(folder, copy)
    damaged = bytearray(weights)
    damaged[-1] ^= 0xFF
    (copy / WEIGHTS_NAME).write_bytes(bytes(damaged))
    with pytest.raises(ModelError, match="sha256"):
        metrics.load_feature_net(copy)


def test_shipped_network_tells_the_contrast_of_simulated_volumes(cohort):
    network = shipped_feature_net()
    batch = torch.from_numpy(np.stack(cohort["t1"][:4] + cohort["t2"][:4]))[:, None]
    with torch.no_grad():
        predicted = network.predict(batch)["contrast"].argmax(1).tolist()
    assert [CONTRASTS[i] for i in predicted] == ["t1"] * 4 + ["t2"] * 4


def test_volumes_in_scanner_units_and_arrays_on_another_grid_reach_the_network_grid(cohort):
    """A Volume is normalised like the arrays; an array on a finer grid of the same field of view is resampled."""
    arrays, volumes = cohort["t1"][:2], cohort["t1_volume"][:2]
    assert torch.allclose(metrics.volume_features(volumes), metrics.volume_features(arrays), atol=1e-4)
    finer = [np.repeat(np.repeat(np.repeat(v, 2, 0), 2, 1), 2, 2) for v in arrays]
    features, original = metrics.volume_features(finer), metrics.volume_features(arrays)
    assert torch.linalg.vector_norm(features - original) < 0.5 * torch.linalg.vector_norm(original)


# --- MedicalNet ----------------------------------------------------------------------------------------------

def test_a_missing_medicalnet_file_is_an_input_error_with_a_hint(tmp_path):
    with pytest.raises(InputError) as caught:
        metrics.load_medicalnet(tmp_path / "resnet_10_23dataset.pth")
    assert "never downloaded" in caught.value.hint


def test_medicalnet_weights_from_a_local_file_give_features(tmp_path, cohort):
    from monai.networks.nets import resnet

    bias_downsample, shortcut_type = resnet.get_medicalnet_pretrained_resnet_args(10)
    network = resnet.resnet10(spatial_dims=3, n_input_channels=1, feed_forward=False, shortcut_type=shortcut_type,
                              bias_downsample=bias_downsample)
    path = tmp_path / "resnet_10_23dataset.pth"  # MedicalNet's layout: {"state_dict": {"module.…": tensor}}
    torch.save({"state_dict": {f"module.{k}": v for k, v in network.state_dict().items()}}, path)
    medicalnet = metrics.load_medicalnet(path)
    assert metrics.volume_features(cohort["t1"][:3], medicalnet).shape == (3, 512)
    assert metrics.fid(cohort["t1"][:4], cohort["t1"][:4], medicalnet) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ModelError, match="ResNet-18"):
        metrics.load_medicalnet(path, depth=18)


# --- the assessment: MS-SSIM-to-real beside feature metrics -----------------------------------------------------

def test_assessment_exposes_a_mean_like_generator_that_ms_ssim_to_real_rewards(cohort):
    """A 'generator' returning slightly perturbed copies of the training mean is closer to the reals by MS-SSIM
    than the reals are to each other (realism ratio > 1), yet the feature metrics put it far behind
    held-out reals on FID and feature MMD, and its Vendi scores are near 1 while the reals' are not."""
    from DiffusionPEFTLib.assessment import assess_samples

    train, reals, held_out = cohort["t1"][:8], cohort["t1"][8:16], cohort["t1"][16:24]
    mean = np.mean(train, axis=0)
    rng = np.random.default_rng(0)
    mean_like = [mean + rng.normal(0, 0.01, mean.shape).astype(np.float32) for _ in range(8)]
    honest = assess_samples(held_out, reals, mean)
    gamed = assess_samples(mean_like, reals, mean)
    assert gamed["realism_ratio"] > 1.0 > honest["realism_ratio"]
    assert gamed["fid_sample_real"] > 3 * honest["fid_sample_real"]
    assert gamed["feature_mmd_sample_real"] > honest["feature_mmd_sample_real"]
    assert gamed["vendi_features_samples"] < 1.2 < honest["vendi_features_samples"]
    assert gamed["vendi_ms_ssim_samples"] < honest["vendi_ms_ssim_samples"]
    assert honest["vendi_features_reals"] == gamed["vendi_features_reals"]  # the cohort's own level, unchanged
    assert gamed["coverage"] < honest["coverage"] and honest["recall"] > gamed["recall"]
    assert honest["fid_mean_real"] == pytest.approx(gamed["fid_mean_real"])  # the mean image, repeated 8 times
    assert honest["fid_sample_real"] < honest["fid_mean_real"]
