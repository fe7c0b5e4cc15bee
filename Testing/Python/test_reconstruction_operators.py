"""k-space operators, masks and data consistency: adjointness, agreement with public implementations
(sigpy's and MONAI's centred FFT, MONAI's fastMRI-style masks), exact consistency of the projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from DiffusionPEFTLib.errors import InputError
from DiffusionPEFTLib.reconstruction.consistency import Measurement, conjugate_gradient, project, refine
from DiffusionPEFTLib.reconstruction.kspace import MRIOperator, centered_fft, centered_ifft, coil_maps
from DiffusionPEFTLib.reconstruction.masks import achieved_acceleration, line_mask_1d, sampling_mask

SHAPE = (12, 16, 10)


def random_complex(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=generator), torch.randn(shape, generator=generator))


def inner(a, b):
    return complex((a.conj() * b).sum())


@pytest.mark.parametrize("shape", [(8, 10, 6), (7, 9, 5)])
def test_the_centred_fft_is_sigpys_and_monais_and_keeps_energy(shape):
    import sigpy
    from monai.networks.blocks.fft_utils_t import fftn_centered_t

    image = random_complex(shape, 0).to(torch.complex128)
    ours = centered_fft(image)
    np.testing.assert_allclose(ours.numpy(), sigpy.fft(image.numpy(), axes=(-3, -2, -1)), atol=1e-10)
    monai = fftn_centered_t(torch.stack([image.real, image.imag], dim=-1), spatial_dims=3, is_complex=True)
    np.testing.assert_allclose(ours.numpy(), torch.complex(monai[..., 0], monai[..., 1]).numpy(), atol=1e-10)
    assert float(ours.abs().pow(2).sum()) == pytest.approx(float(image.abs().pow(2).sum()), rel=1e-10)
    np.testing.assert_allclose(centered_ifft(ours).numpy(), image.numpy(), atol=1e-10)
    dc = tuple(n // 2 for n in shape)
    assert complex(ours[dc]) == pytest.approx(complex(image.sum()) / np.sqrt(image.numel()), rel=1e-10)


@pytest.mark.parametrize("coils", [1, 6])
def test_the_adjoint_is_the_adjoint(coils):
    mask = torch.from_numpy(sampling_mask(SHAPE[1:], 3, "random", seed=2))
    operator = MRIOperator(mask, coil_maps(SHAPE, coils) if coils > 1 else None)
    x = random_complex((2, *SHAPE), 1)
    y = random_complex((2, coils, *SHAPE), 2)
    assert inner(operator.forward(x), y) == pytest.approx(inner(x, operator.adjoint(y)), rel=1e-5)
    assert operator.forward(x).shape == (2, coils, *SHAPE)


def test_coil_maps_are_normalised_so_a_full_acquisition_is_the_identity():
    maps = coil_maps(SHAPE, 8)
    np.testing.assert_allclose(maps.abs().pow(2).sum(0).numpy(), 1.0, rtol=1e-5)
    assert float((maps[0] - maps[1]).abs().max()) > 0.1  # the coils see the head differently
    operator = MRIOperator(torch.ones(SHAPE[1:]), maps)
    x = random_complex((1, *SHAPE), 3)
    np.testing.assert_allclose(operator.normal(x).numpy(), x.numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["equispaced", "random"])
@pytest.mark.parametrize("acceleration, centre", [(4, 0.08), (8, 0.04)])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_line_masks_are_monais_fastmri_masks(kind, acceleration, centre, seed):
    from monai.apps.reconstruction.transforms.array import EquispacedKspaceMask, RandomKspaceMask

    lines = 64
    monai_class = EquispacedKspaceMask if kind == "equispaced" else RandomKspaceMask
    transform = monai_class([centre], [acceleration], spatial_dims=2, is_complex=True)
    transform.set_random_state(seed)
    transform(torch.zeros(1, 8, lines, 2))
    expected = transform.mask.reshape(-1).numpy() > 0
    rng = np.random.RandomState(seed)
    rng.randint(0, 1)  # MONAI first draws which (centre, R) pair to use
    np.testing.assert_array_equal(line_mask_1d(lines, acceleration, centre, kind, rng), expected)


@pytest.mark.parametrize("kind", ["equispaced", "random", "vd"])
@pytest.mark.parametrize("acceleration", [4, 6, 8])
def test_masks_hit_their_acceleration_and_keep_the_centre(kind, acceleration):
    shape = (80, 64)
    masks = [sampling_mask(shape, acceleration, kind, seed=seed) for seed in range(8)]
    achieved = np.mean([achieved_acceleration(mask) for mask in masks])
    assert achieved == pytest.approx(acceleration, rel=0.12 if kind != "equispaced" else 0.2)
    centre = round(shape[0] * 0.32 / acceleration)
    pad = (shape[0] - centre + 1) // 2
    for mask in masks:
        assert mask[pad:pad + centre, shape[1] // 2].all()
        if kind != "vd":
            assert (mask == mask[:, :1]).all()  # lines: every kz of a chosen ky
    if kind != "equispaced":
        assert not np.array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(sampling_mask(shape, acceleration, kind, seed=3), masks[3])  # by seed


@pytest.mark.parametrize("acceleration, centre, words", [
    (0.5, None, "at least 1"), (float("nan"), None, "at least 1"), (100, None, "fewer than 2"),
    (4, 0.3, "as many as"), (4, 1.5, "not in (0, 1)")])
def test_impossible_accelerations_are_refused_with_a_hint(acceleration, centre, words):
    with pytest.raises(InputError) as error:
        sampling_mask((40, 32), acceleration, "equispaced", centre)
    assert words in error.value.message and error.value.hint


def test_the_single_coil_projection_is_exactly_consistent_and_keeps_the_unacquired_samples():
    operator = MRIOperator(torch.from_numpy(sampling_mask(SHAPE[1:], 4, "random", seed=0)))
    truth, guess = random_complex((1, *SHAPE), 4), random_complex((1, *SHAPE), 5)
    y = operator.forward(truth)
    projected = project(guess, y, operator)
    np.testing.assert_allclose(operator.forward(projected).numpy(), y.numpy(), atol=1e-5)
    unacquired = (1 - operator.mask)
    np.testing.assert_allclose((centered_fft(projected) * unacquired).numpy(),
                               (centered_fft(guess) * unacquired).numpy(), atol=1e-5)


def test_the_multi_coil_projection_converges_to_consistency_by_conjugate_gradients():
    # 2 coils at R = 4: fewer samples than voxels, so consistent images other than the truth exist
    operator = MRIOperator(torch.from_numpy(sampling_mask(SHAPE[1:], 4, "vd", seed=1)), coil_maps(SHAPE, 2))
    truth, guess = random_complex((2, *SHAPE), 6), random_complex((2, *SHAPE), 7)
    y = operator.forward(truth)
    before = float((operator.forward(guess) - y).abs().norm())
    after = float((operator.forward(project(guess, y, operator, iterations=40)) - y).abs().norm())
    assert after < 2e-3 * before
    few = float((operator.forward(refine(guess, y, operator, iterations=3)) - y).abs().norm())
    assert after < few < before  # DDS's few CG steps move towards the data without reaching it


def test_conjugate_gradient_solves_a_hermitian_positive_system():
    generator = torch.Generator().manual_seed(0)
    root = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    matrix = (root @ root.T + torch.eye(6, dtype=torch.float64)).to(torch.complex128)
    truth = torch.complex(torch.randn(1, 6, generator=generator, dtype=torch.float64),
                          torch.randn(1, 6, generator=generator, dtype=torch.float64))
    solution = conjugate_gradient(lambda x: x @ matrix.T, truth @ matrix.T, torch.zeros_like(truth), 6)
    np.testing.assert_allclose(solution.numpy(), truth.numpy(), atol=1e-8)


def test_model_units_turn_the_scanner_map_into_a_linear_problem():
    operator = MRIOperator(torch.from_numpy(sampling_mask(SHAPE[1:], 4, "equispaced")), coil_maps(SHAPE, 3))
    x_model = torch.rand(1, *SHAPE) * 2 - 1
    measurement = Measurement(operator.forward((3.0 * x_model + 5.0).to(torch.complex64))[0], operator, 3.0, 5.0)
    np.testing.assert_allclose(measurement.model_units().numpy(), operator.forward(x_model.to(torch.complex64)).numpy(),
                               atol=1e-4)


@pytest.mark.parametrize("coils", [1, 4])
def test_a_simulated_complex_image_goes_to_kspace_and_back_exactly(coils):
    from DiffusionPEFTLib.simulate import simulate_subject

    image = torch.from_numpy(simulate_subject(6, shape=(16, 20, 16), contrasts="t2").complex_images["t2"])[None]
    operator = MRIOperator(torch.ones(20, 16), coil_maps((16, 20, 16), coils) if coils > 1 else None)
    kspace = operator.forward(image)
    assert kspace.shape == (1, coils, 16, 20, 16) and kspace.dtype == torch.complex64
    np.testing.assert_allclose(operator.adjoint(kspace).numpy(), image.numpy(), atol=1e-5)
    assert float(kspace.abs().norm()) == pytest.approx(float(image.abs().norm()), rel=1e-4)  # orthonormal
