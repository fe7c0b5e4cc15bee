"""The shipped T1w → FLAIR translation model: intact, described by its card, and better than histogram matching."""

import json

import pytest
import torch

from DiffusionPEFTLib.resources import translation_model_dir
from DiffusionPEFTLib.simulate import simulate_cohort
from DiffusionPEFTLib.translation.baseline import histogram_matched
from DiffusionPEFTLib.translation.evaluation import translation_scores
from DiffusionPEFTLib.translation.model import load_translation_model
from DiffusionPEFTLib.translation.sampling import translate
from DiffusionPEFTLib.volumes import resample, to_model_grid


@pytest.fixture(scope="module")
def shipped():
    return load_translation_model(translation_model_dir())  # raises if the weights do not match model.json's sha256


def test_package_matches_its_card(shipped):
    folder = translation_model_dir()
    assert (shipped.spec.source, shipped.spec.target, shipped.spec.puzzle) == ("t1", "flair", 2)
    assert shipped.config.input.shape == (64, 80, 64) and shipped.config.input.spacing == (3.0, 3.0, 3.0)
    evaluation = json.loads((folder / "evaluation.json").read_text())
    card = (folder / "MODEL_CARD.md").read_text()
    ours, matched = evaluation["scores"]["translation"], evaluation["scores"]["histogram matching"]
    assert f"{shipped.parameter_count():,}" in card and f"{ours['ssim_brain'][0]:.3f}" in card
    assert evaluation["subjects"] >= 8 and ours["ssim_brain"][0] > matched["ssim_brain"][0]


def test_it_translates_an_unseen_t1_closer_to_its_flair_than_histogram_matching(shipped):
    spec = shipped.config.input
    normalise = spec.normalisation()
    subjects = simulate_cohort(3, seed=424_242, contrasts="t1,flair", shape=spec.shape, spacing=spec.spacing)
    pairs = []
    for subject in subjects:
        t1, _ = to_model_grid(subject.images["t1"], spec.shape, spec.spacing)
        flair = resample(subject.images["flair"], t1.shape, t1.affine).data
        brain = resample(subject.tissue_labels, t1.shape, t1.affine, order=0, antialias=False).data > 0
        pairs.append((normalise.fit(t1.data).apply(t1.data), normalise.fit(flair).apply(flair), brain))
    source, truth, brain = pairs[0]
    mean, _ = translate(shipped, torch.from_numpy(source)[None, None], steps=10)
    ours = translation_scores(mean[0, 0].numpy(), truth, brain, 2.0)
    baseline = translation_scores(histogram_matched(source, [p[1] for p in pairs[1:]]), truth, brain, 2.0)
    assert ours["ssim_brain"] > baseline["ssim_brain"] + 0.1
    assert ours["nrmse_brain"] < baseline["nrmse_brain"]


def test_its_source_signature_accepts_unseen_t1_and_flags_other_contrasts(shipped):
    """Recorded by translate-train from the 160 training T1w: translate warns on a non-T1w source."""
    signature, spec = shipped.spec.source_signature, shipped.config.input
    assert signature is not None and 0.015 <= signature.threshold < 0.03
    normalise = spec.normalisation()
    distances = {}
    for subject in simulate_cohort(3, seed=515_151, contrasts="t1,t2,pd,flair", shape=spec.shape, spacing=spec.spacing):
        for contrast, image in subject.images.items():
            volume, _ = to_model_grid(image, spec.shape, spec.spacing)
            distance = signature.distance(normalise.fit(volume.data).apply(volume.data), normalise.range, spec.spacing)
            distances.setdefault(contrast, []).append(distance)
    assert max(distances["t1"]) <= signature.threshold
    assert min(min(distances[c]) for c in ("t2", "pd", "flair")) > signature.threshold
