"""Reconstruction end to end with a tiny prior: DDNM samples agree exactly with the acquired k-space, DPS's
gradient pulls towards the data, and ``reconstruct`` writes its volumes on an oblique source's grid."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from conftest import oblique_affine, run_cli, smooth_volume

from DiffusionPEFTLib.models import load_model
from DiffusionPEFTLib.reconstruction import PosteriorSettings, reconstruct_measurement
from DiffusionPEFTLib.reconstruction.acquisition import retrospective
from DiffusionPEFTLib.volumes import read_volume, write_volume


@pytest.fixture(scope="module")
def prior(tiny_model_dir):
    return load_model(tiny_model_dir)


def measurement_of(prior, coils=1, acceleration=4):
    truth = smooth_volume(shape=prior.grid_shape, seed=3).data
    return truth, retrospective(truth, acceleration, "equispaced", coils, prior.config.input.normalisation())


@pytest.mark.parametrize("coils", [1, 3])
def test_ddnm_samples_reproduce_the_acquired_kspace(prior, coils):
    truth, measurement = measurement_of(prior, coils)
    settings = PosteriorSettings(steps=4, project_iterations=60)
    result = reconstruct_measurement(prior, measurement, "ddnm", 2, settings, torch.Generator().manual_seed(0))
    y = measurement.kspace[None]
    residual = (measurement.operator.forward(result.samples) - y).abs().norm() / y.abs().norm()
    assert float(residual) < (1e-5 if coils == 1 else 5e-3)
    assert result.std is not None and result.std.shape == truth.shape and result.std.max() > 0
    np.testing.assert_allclose(result.mean, result.samples.abs().mean(0).numpy(), rtol=1e-5)


def test_the_zero_filled_image_is_the_adjoint_and_compressed_sensing_beats_it_on_a_brain():
    from DiffusionPEFTLib.simulate import simulate_subject
    from DiffusionPEFTLib.volumes.intensity import IntensityNormalisation

    truth = simulate_subject(seed=11, shape=(32, 40, 32), spacing=6.0, contrasts="flair").images["flair"].data
    measurement = retrospective(truth, 8, "equispaced", 1, IntensityNormalisation())

    def error(method, weight=None):
        result = reconstruct_measurement(None, measurement, method, 1, PosteriorSettings(), torch.Generator(),
                                         cs_weight=weight)
        assert result.std is None
        return result, float(np.linalg.norm(result.mean - truth) / np.linalg.norm(truth))

    zero, zero_error = error("zero-filled")
    np.testing.assert_allclose(zero.mean, measurement.operator.adjoint(measurement.kspace[None])[0].abs().numpy(),
                               rtol=1e-5)
    assert error("cs")[1] < 0.85 * zero_error
    assert error("cs", 1e-9)[1] == pytest.approx(zero_error, rel=1e-3)  # no penalty: the least-squares image


def test_dps_steps_lower_the_data_residual_and_a_larger_step_lowers_it_more(prior):
    truth, measurement = measurement_of(prior)
    y = measurement.kspace[None]

    def residual(scale):
        settings = PosteriorSettings(steps=5, eta=0.0, dps_scale=scale)
        result = reconstruct_measurement(prior, measurement, "dps", 1, settings, torch.Generator().manual_seed(0))
        return float((measurement.operator.forward(result.samples) - y).abs().norm())

    assert residual(3.0) < residual(0.3) < residual(1e-6)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reconstruct_lands_on_the_oblique_source_grid_with_zero_filled_and_std(tiny_model_dir, tmp_path):
    source = smooth_volume(shape=(20, 18, 14), affine=oblique_affine(spacing=(3.5, 4.0, 5.0)), seed=5)
    path = write_volume(source, tmp_path / "scan.nii.gz")
    before = digest(path)
    code, events = run_cli("reconstruct", tiny_model_dir, path, "--acceleration", "4", "--mask", "vd", "--coils", "2",
                           "--samples", "2", "--steps", "3", "--out", tmp_path / "recon.nii.gz")
    assert code == 0, events.events
    roles = {event["role"]: event["path"] for event in events.of("artifact")}
    assert set(roles) == {"reconstruction", "zero_filled", "uncertainty"}
    assert roles["zero_filled"].endswith("recon_zerofilled.nii.gz") and roles["uncertainty"].endswith("recon_std.nii.gz")
    for written in roles.values():
        volume = read_volume(written)
        assert volume.shape == source.shape
        np.testing.assert_allclose(volume.affine, source.affine, atol=1e-4)
    warnings = [e["message"] for e in events.of("log") if e.get("level") == "warning"]
    assert any("resampled onto the prior's grid" in message for message in warnings), warnings
    metrics = {event["name"]: event["value"] for event in events.of("metric")}
    assert {"nrmse", "psnr", "ssim", "zero_filled_nrmse", "zero_filled_psnr", "zero_filled_ssim"} <= set(metrics)
    assert 0 < metrics["zero_filled_nrmse"] < 1
    assert digest(path) == before


def test_reconstruct_from_a_kspace_file_and_its_mask(tiny_model_dir, prior, tmp_path):
    truth, measurement = measurement_of(prior)
    np.save(tmp_path / "kspace.npy", measurement.kspace[0].numpy())
    np.save(tmp_path / "mask.npy", measurement.operator.mask.numpy().astype(np.uint8))
    code, events = run_cli("reconstruct", tiny_model_dir, tmp_path / "kspace.npy", "--kspace", "--mask-file",
                           tmp_path / "mask.npy", "--method", "zero-filled", "--out", tmp_path / "zf.nii.gz")
    assert code == 0, events.events
    image = read_volume(tmp_path / "zf.nii.gz").data
    expected = measurement.operator.adjoint(measurement.kspace[None])[0].abs().numpy()
    np.testing.assert_allclose(image, expected, rtol=1e-4, atol=1e-4 * expected.max())


@pytest.mark.parametrize("setup, argv, words", [
    ("mask-shape", ["--kspace", "--mask-file", "mask.npy"], ["mask.npy", "does not fit"]),
    ("real-kspace", ["--kspace", "--mask-file", "mask.npy"], ["real numbers", "complex"]),
    ("nan-kspace", ["--kspace", "--mask-file", "mask.npy"], ["nan"]),
    ("other-grid", ["--kspace", "--mask-file", "mask.npy"], ["not the prior's", "cannot be resampled"]),
    ("good", ["--kspace"], ["--mask-file"]),
    ("good", ["--acceleration", "0.5"], ["at least 1"]),
    ("good", ["--acceleration", "64"], ["fewer than 2"]),
    ("good", ["--contrast", "flair"], ["not class-conditioned"]),
])
def test_bad_reconstruction_inputs_are_refused_and_write_nothing(tiny_model_dir, prior, tmp_path, setup, argv, words):
    truth, measurement = measurement_of(prior)
    kspace, mask = measurement.kspace[0].numpy(), measurement.operator.mask.numpy()
    arrays = {"mask-shape": (kspace, mask[:-1]), "real-kspace": (kspace.real, mask),
              "nan-kspace": (np.where(mask[None, :, :, None] > 2, 0, kspace) * np.nan, mask),
              "other-grid": (kspace[:, :-2], mask[:-2]), "good": (kspace, mask)}[setup]
    np.save(tmp_path / "kspace.npy", arrays[0])
    np.save(tmp_path / "mask.npy", arrays[1])
    source = tmp_path / "kspace.npy" if "--kspace" in argv else write_volume(smooth_volume(seed=1), tmp_path / "s.nii.gz")
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [tmp_path / a if a == "mask.npy" else a for a in argv]
    code, events = run_cli("reconstruct", tiny_model_dir, source, *argv, "--out", tmp_path / "out.nii.gz")
    errors = events.of("error")
    assert code == 2 and len(errors) == 1 and errors[0]["kind"] == "input", events.events
    text = (errors[0]["message"] + " " + errors[0]["hint"]).lower()
    assert all(word.lower() in text for word in words), errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_classical_method_asked_for_several_samples_writes_no_std_map(tiny_model_dir, tmp_path):
    path = write_volume(smooth_volume(seed=2), tmp_path / "scan.nii.gz")
    code, events = run_cli("reconstruct", tiny_model_dir, path, "--method", "cs", "--samples", "3",
                           "--out", tmp_path / "cs.nii.gz")
    assert code == 0, events.events
    assert {e["role"] for e in events.of("artifact")} == {"reconstruction", "zero_filled"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cs.nii.gz", "cs_zerofilled.nii.gz", "scan.nii.gz"]


@pytest.mark.parametrize("acceleration", [1, 2])
def test_multi_coil_kspace_files_get_espirit_maps_and_the_phase_from_the_centre(tmp_path, acceleration):
    from DiffusionPEFTLib.reconstruction.acquisition import read_kspace
    from DiffusionPEFTLib.reconstruction.classical import zero_filled
    from DiffusionPEFTLib.reconstruction.kspace import MRIOperator, coil_maps
    from DiffusionPEFTLib.reconstruction.masks import sampling_mask
    from DiffusionPEFTLib.simulate import simulate_subject
    from DiffusionPEFTLib.volumes.intensity import IntensityNormalisation

    image = simulate_subject(6, shape=(16, 20, 16), contrasts="t2").complex_images["t2"]  # smooth phase ≈ ±1 rad
    mask = sampling_mask((20, 16), acceleration, "equispaced", centre_fraction=0.4)
    operator = MRIOperator(torch.from_numpy(mask), coil_maps(image.shape, 4))
    np.save(tmp_path / "k.npy", operator.forward(torch.from_numpy(image)[None])[0].numpy())
    np.save(tmp_path / "m.npy", mask.astype(np.uint8))
    measurement = read_kspace(tmp_path / "k.npy", tmp_path / "m.npy", IntensityNormalisation())
    combined = zero_filled(measurement)
    magnitude = np.abs(image)
    if acceleration == 1:  # fully sampled: the magnitude comes back, nearly real after the phase estimate
        assert np.linalg.norm(combined.abs().numpy() - magnitude) < 0.02 * np.linalg.norm(magnitude)
        assert float(combined.imag.abs().mean()) < 0.15 * float(combined.abs().mean())
    projected = measurement.operator.forward(combined.abs().to(torch.complex64)[None])
    assert torch.isfinite(combined).all() and float(projected.abs().norm()) > 0  # maps neither NaN nor empty
