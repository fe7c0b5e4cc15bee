"""Scoring reconstructions of simulated subjects against the fully sampled truth (fastMRI's conventions:
magnitudes, data range = the truth's maximum), whole volume and inside the brain."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..metrics import compare_in_mask, compare_volumes
from ..metrics.summary import mean_and_std, uncertainty_error_correlation
from ..volumes import read_volume, resample, to_model_grid
from ..volumes.intensity import IntensityNormalisation
from . import Reconstruction, reconstruct_measurement
from .acquisition import retrospective
from .posterior import PosteriorSettings


def reconstruction_scores(image: np.ndarray, truth: np.ndarray, brain: np.ndarray | None = None) -> dict[str, float]:
    """``nrmse``/``psnr``/``ssim`` over the whole volume and, with a ``brain`` mask (X, Y, Z) bool,
    ``*_brain`` inside it; ``image`` and ``truth`` are (X, Y, Z) magnitudes in the same units."""
    data_range = float(truth.max())
    whole = compare_volumes(image, truth, data_range)
    scores = {name: whole[name] for name in ("nrmse", "psnr", "ssim")}
    if brain is not None:
        scores.update({f"{name}_brain": value for name, value in compare_in_mask(image, truth, brain, data_range).items()})
    return scores


@dataclass
class Subject:
    """A held-out simulated subject on the prior's grid: ``truth`` (X, Y, Z) magnitude and its ``brain`` mask."""

    name: str
    truth: np.ndarray
    brain: np.ndarray


def simulated_subjects(manifest: str | Path, contrast: str, spec) -> list[Subject]:
    """Every subject of a simulator cohort: its ``contrast`` volume and brain (tissue labels > 0) on the grid
    of ``spec`` (a model's InputSpec)."""
    manifest = Path(manifest)
    subjects = []
    for subject in json.loads(manifest.read_text())["subjects"]:
        image, _ = to_model_grid(read_volume(manifest.parent / subject["files"][contrast]), spec.shape, spec.spacing)
        labels = read_volume(manifest.parent / subject["files"]["tissue_labels"])
        brain = resample(labels, image.shape, image.affine, order=0, antialias=False).data > 0
        subjects.append(Subject(subject["id"], image.data, brain))
    return subjects


def score_reconstruction(model, subject: Subject, method: str, acceleration: float, coils: int,
                         settings: PosteriorSettings, samples: int, seed: int, class_label: int | None = None,
                         cs_weight: float | None = None, mask: str = "equispaced") -> tuple[dict, Reconstruction]:
    """Retrospectively undersample ``subject`` (mask seed ``seed``), reconstruct with ``method`` and score it:
    (scores incl. ``seconds`` and, for several samples, ``std_error_pearson`` inside the brain; the result)."""
    spec_norm = IntensityNormalisation() if model is None else model.config.input.normalisation()
    measurement = retrospective(subject.truth, acceleration, mask, coils, spec_norm, seed=seed)
    tick = time.monotonic()
    result = reconstruct_measurement(model, measurement, method, samples, settings, torch.Generator().manual_seed(seed),
                                     class_label, cs_weight)
    scores = {**reconstruction_scores(result.mean, subject.truth, subject.brain), "seconds": time.monotonic() - tick}
    if result.std is not None:
        scores["std_error_pearson"] = uncertainty_error_correlation(result.std, result.mean, subject.truth,
                                                                    subject.brain)
    return scores, result


DEMO_METHODS = ("ddnm", "cs", "zero-filled")


def reconstruct_simulated(model, subjects: list[Subject], out: Path, acceleration: float, samples: int, steps: int,
                          context, class_label: int | None = None, methods=DEMO_METHODS) -> dict:
    """Reconstruct each subject (one coil, equispaced mask seeded by its index) with every method; write
    ``out/reconstruction/SUBJECT_METHOD.nii.gz`` (+ the sampler's std) on the model grid and
    ``out/reconstruction.png``. Returns mean ± std over subjects of each method's scores."""
    from ..plots import save_case_figure
    from ..volumes import Volume, model_grid_affine, write_volume

    spec = model.config.input
    affine = model_grid_affine((0.0, 0.0, 0.0), spec.shape, spec.spacing)
    rows: dict[str, list[dict]] = {method: [] for method in methods}
    figure = {}
    for index, subject in enumerate(subjects):
        panels = {"truth": subject.truth}
        for method in methods:
            context.cancel.raise_if_requested("Reconstruction")
            scores, result = score_reconstruction(model, subject, method, acceleration, 1, PosteriorSettings(steps=steps),
                                                  samples, index, class_label)
            rows[method].append(scores)
            panels[method] = result.mean
            write_volume(Volume(result.mean, affine), out / "reconstruction" / f"{subject.name}_{method}.nii.gz")
            if result.std is not None:
                panels[f"{method} std"], panels[f"{method} |error|"] = result.std, np.abs(result.mean - subject.truth)
                write_volume(Volume(result.std, affine), out / "reconstruction" / f"{subject.name}_{method}_std.nii.gz")
        figure[subject.name] = panels
    save_case_figure(figure, out / "reconstruction.png", maps=tuple(k for k in figure[subjects[0].name] if " " in k),
                     title=f"R = {acceleration:g}, one coil")
    summary = {method: {key: mean_and_std([row[key] for row in values]) for key in values[0]}
               for method, values in rows.items()}
    for method, values in summary.items():
        context.events.metric("reconstruction_nrmse_brain", values["nrmse_brain"][0], model=method)
    return {"subjects": len(subjects), "acceleration": acceleration, "samples": samples, "steps": steps,
            "scores": summary}
