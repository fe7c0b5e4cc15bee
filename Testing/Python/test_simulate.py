"""The cohort simulator's Python API: determinism, geometry, contrast physics, atrophy, lesions, k-space."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from DiffusionPEFTLib.errors import InputError
from DiffusionPEFTLib.simulate import (
    AnatomyVariation, TISSUE_LABELS, LESION_LABELS, load_anatomy, resources_dir,
    simulate_cohort, simulate_subject, TISSUE_RELAXATION,
)
from DiffusionPEFTLib.simulate.deformation import random_warp
from DiffusionPEFTLib.simulate.subject import NORMAL_CLASSES
from DiffusionPEFTLib.simulate.lesions import LESION_CLASSES
from DiffusionPEFTLib.volumes import Volume, model_grid_affine, resample

ALL = "t1,t2,pd,flair"
PHYSICS = dict(shape=(48, 56, 48), spacing=4.0, contrasts=ALL, snr=None, bias_strength=0.0)


@pytest.fixture(scope="module")
def clean_subject():
    """Noise- and bias-free, some atrophy so the ventricles hold pure-CSF voxels at 4 mm."""
    return simulate_subject(11, atrophy=0.5, **PHYSICS)


def tissue_means(subject, contrast: str) -> dict[str, float]:
    """Mean intensity over voxels made of ≥ 80 % of one class."""
    image = subject.images[contrast].data
    return {name: float(image[subject.fractions[name] >= 0.8].mean()) for name in ("ventricles", "gm", "wm")}


def test_same_seed_gives_identical_arrays_and_another_seed_does_not():
    first, again = (simulate_subject(3, contrasts="t1,flair", lesions="wmh", atrophy=0.2) for _ in range(2))
    other = simulate_subject(4, contrasts="t1,flair", lesions="wmh", atrophy=0.2)
    for contrast in ("t1", "flair"):
        np.testing.assert_array_equal(first.images[contrast].data, again.images[contrast].data)
        np.testing.assert_array_equal(first.complex_images[contrast], again.complex_images[contrast])
        assert np.abs(first.images[contrast].data - other.images[contrast].data).mean() > 0.01
    np.testing.assert_array_equal(first.lesion_labels.data, again.lesion_labels.data)
    assert first.params == again.params and first.params["pose"] != other.params["pose"]


def test_paired_contrasts_and_labels_share_one_grid():
    subject = simulate_subject(0, shape=(20, 24, 18), spacing=(5.0, 6.0, 7.0), contrasts=ALL)
    grids = [*subject.images.values(), subject.tissue_labels, subject.lesion_labels]
    assert list(subject.images) == ["t1", "t2", "pd", "flair"]
    for volume in grids:
        assert volume.shape == (20, 24, 18) and volume.data.dtype == np.float32
        np.testing.assert_array_equal(volume.affine, subject.affine)
    np.testing.assert_allclose(subject.images["t1"].spacing, [5.0, 6.0, 7.0])
    assert all(f.shape == (20, 24, 18) for f in subject.fractions.values())


def test_tissue_contrast_follows_the_signal_equations(clean_subject):
    t1, t2, pd, flair = (tissue_means(clean_subject, c) for c in ("t1", "t2", "pd", "flair"))
    assert t1["wm"] > t1["gm"] > t1["ventricles"]
    assert t2["ventricles"] > t2["gm"] > t2["wm"]
    assert pd["ventricles"] > pd["gm"] > pd["wm"]
    assert flair["ventricles"] < 0.15 * min(flair["gm"], flair["wm"])  # CSF nulled
    assert flair["gm"] > flair["wm"]


def test_tissue_fractions_are_a_partition_of_the_brain(clean_subject):
    assert set(clean_subject.fractions) == set(NORMAL_CLASSES)
    total = sum(clean_subject.fractions.values())
    assert total.min() >= 0.0 and total.max() <= 1.0 + 1e-5
    labels = clean_subject.tissue_labels.data
    assert set(np.unique(labels)) <= set(TISSUE_LABELS.values())
    assert np.all(labels[total < 0.5] == 0) and np.all(labels[total >= 0.5] > 0)
    assert set(TISSUE_RELAXATION) == set(NORMAL_CLASSES) | set(LESION_CLASSES)


def test_lesions_are_bright_on_flair():
    for lesions, label in (("wmh", "wmh"), ("tumour", "oedema")):
        subject = simulate_subject(2, lesions=lesions, **PHYSICS)
        flair = subject.images["flair"].data
        in_lesion = subject.lesion_labels.data == LESION_LABELS[label]
        normal_wm = (subject.fractions["wm"] >= 0.8) & (subject.lesion_labels.data == 0)
        assert in_lesion.sum() >= 3, lesions
        assert flair[in_lesion].mean() > 1.4 * flair[normal_wm].mean(), lesions


@pytest.mark.parametrize("lesions", ["tumour", "wmh"])
def test_lesion_changes_the_images_only_at_its_mask(lesions):
    options = dict(shape=(32, 40, 32), spacing=6.0, contrasts="t2,flair", atrophy=0.3)
    healthy = simulate_subject(8, **options)
    sick = simulate_subject(8, lesions=lesions, **options)
    touched = sum(sick.fractions[c] for c in LESION_CLASSES if c in sick.fractions) > 0
    mask = sick.lesion_labels.data > 0
    assert mask.any() and np.all(touched[mask])
    np.testing.assert_array_equal(healthy.tissue_labels.data, sick.tissue_labels.data)
    for contrast in ("t2", "flair"):
        change = sick.images[contrast].data - healthy.images[contrast].data
        assert np.all(change[~touched] == 0), contrast
        assert change[mask].mean() > 0.1, contrast


def test_atrophy_enlarges_the_ventricles_monotonically_and_keeps_brain_volume():
    subjects = [simulate_subject(5, atrophy=a, snr=None) for a in (0.0, 0.3, 0.6, 0.9)]
    ventricles = [s.params["volumes_ml"]["ventricles"] for s in subjects]
    labelled = [int((s.tissue_labels.data == TISSUE_LABELS["ventricles"]).sum()) for s in subjects]
    grey = [s.params["volumes_ml"]["gm"] for s in subjects]
    assert all(a < b for a, b in zip(ventricles, ventricles[1:])), ventricles
    assert all(a <= b for a, b in zip(labelled, labelled[1:])) and labelled[-1] > 2 * labelled[0], labelled
    assert all(a > b for a, b in zip(grey, grey[1:])), grey
    assert ventricles[-1] > 2.5 * ventricles[0]
    brain = [sum(s.params["volumes_ml"].values()) for s in subjects]
    np.testing.assert_allclose(brain, brain[0], rtol=1e-4)


def test_background_noise_is_rician_with_the_requested_snr():
    subject = simulate_subject(1, shape=(40, 48, 40), spacing=6.0, snr=20.0)
    far_outside = ndimage.distance_transform_edt(subject.tissue_labels.data == 0) > 3
    assert far_outside.sum() > 2000
    # |complex Gaussian| with σ per channel has mean σ·√(π/2)
    np.testing.assert_allclose(subject.images["t1"].data[far_outside].mean(), np.sqrt(np.pi / 2) / 20.0, rtol=0.05)


def test_without_variation_the_subject_is_the_template_resampled():
    shape, spacing = (20, 22, 18), 2.0
    subject = simulate_subject(0, shape=shape, spacing=spacing, snr=None, bias_strength=0.0,
                               variation=AnatomyVariation.none())
    anatomy = load_anatomy()
    grid = model_grid_affine(anatomy.brain_centre, shape, spacing)
    wm = resample(Volume(anatomy.maps["wm"], anatomy.affine), shape, grid, order=1, antialias=False).data
    np.testing.assert_allclose(subject.fractions["wm"], wm, atol=1e-4)
    np.testing.assert_allclose(subject.affine, grid)


def test_the_warp_is_smooth_and_folds_nothing():
    spacing = 6.0
    warp = random_warp(np.random.default_rng(0), (32, 40, 32), (spacing,) * 3, AnatomyVariation())
    gradients = np.stack([np.stack(np.gradient(component, spacing)) for component in warp])  # [a, b] = ∂u_a/∂x_b
    jacobian = np.moveaxis(gradients, (0, 1), (-2, -1)) + np.eye(3)
    assert np.linalg.det(jacobian).min() > 0.1
    assert 0.5 < np.abs(warp).mean() < 5.0


def test_cohort_draws_atrophy_per_subject_and_records_reproducible_seeds():
    subjects = list(simulate_cohort(3, seed=9, atrophy=(0.2, 0.6), shape=(16, 20, 16), spacing=8.0))
    atrophies = [s.params["atrophy"] for s in subjects]
    assert all(0.2 <= a <= 0.6 for a in atrophies) and len(set(atrophies)) == 3
    again = simulate_subject(subjects[1].params["seed"], shape=(16, 20, 16), spacing=8.0, atrophy=atrophies[1])
    np.testing.assert_array_equal(again.images["t1"].data, subjects[1].images["t1"].data)


@pytest.mark.parametrize("options", [
    dict(shape=(0, 8, 8)), dict(shape=(8, 8)), dict(contrasts="t1,t9"), dict(contrasts="t1,t1"),
    dict(atrophy=1.5), dict(lesions="cyst"), dict(snr=-1.0), dict(spacing=0.0), dict(seed=-1),
    dict(bias_strength=-0.1),
])
def test_bad_options_raise_input_errors_with_a_hint(options):
    options = {"seed": 0, **options}
    with pytest.raises(InputError) as caught:
        simulate_subject(**options)
    assert caught.value.hint


def test_missing_anatomy_files_are_an_input_error(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFUSIONPEFT_RESOURCES", str(tmp_path))
    assert resources_dir() == tmp_path
    load_anatomy.cache_clear()
    try:
        with pytest.raises(InputError, match="anatomy file"):
            load_anatomy()
    finally:
        monkeypatch.delenv("DIFFUSIONPEFT_RESOURCES")
        load_anatomy.cache_clear()
