"""Scoring translations of simulated subjects against their true target contrast, whole volume and in the brain."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from ..metrics import compare_in_mask, compare_volumes
from ..metrics.summary import mean_and_std, uncertainty_error_correlation
from ..plots import save_case_figure
from ..training import TrainingVolumes
from ..volumes import Volume, from_model_grid, read_volume, resample, to_model_grid, write_volume
from .baseline import histogram_matched
from .model import TranslationModel
from .pairs import find_pairs
from .sampling import translate

SCORES = ("psnr_brain", "ssim_brain", "nrmse_brain", "psnr_whole", "ssim_whole", "nrmse_whole")


def translation_scores(prediction: np.ndarray, truth: np.ndarray, brain: np.ndarray,
                       data_range: float) -> dict[str, float]:
    """PSNR (dB), SSIM and NRMSE of ``prediction`` against ``truth`` (both (X, Y, Z), same normalised range),
    over the whole volume (``*_whole``) and inside the ``brain`` mask (``*_brain``)."""
    whole = compare_volumes(prediction, truth, data_range)
    inside = compare_in_mask(prediction, truth, brain, data_range)
    return {**{f"{k}_whole": whole[k] for k in ("psnr", "ssim", "nrmse")},
            **{f"{k}_brain": v for k, v in inside.items()}}


def simulated_brain_masks(manifest: str | Path, sources: list[Path], grids: list[Volume],
                          source_key: str = "t1") -> list[np.ndarray]:
    """The brain (tissue labels > 0) of each simulated subject whose ``source_key`` volume is in ``sources``,
    on the matching grid of ``grids`` (a volume already on the model grid), (X, Y, Z) bool."""
    manifest = Path(manifest).resolve()
    subjects = {s["files"][source_key]: s for s in json.loads(manifest.read_text())["subjects"]}
    masks = []
    for source, grid in zip(sources, grids):
        subject = subjects[Path(source).resolve().relative_to(manifest.parent).as_posix()]
        labels = read_volume(manifest.parent / subject["files"]["tissue_labels"])
        masks.append(resample(labels, grid.shape, grid.affine, order=0, antialias=False).data > 0)
    return masks


def translate_simulated(model: TranslationModel, manifest: Path, out: Path, samples: int, steps: int, context,
                        figure_subjects: int = 2) -> dict:
    """Translate every subject of a simulator cohort (``manifest`` with the model's source and target contrasts):
    mean and std of ``samples`` draws (``steps`` bridge steps, η = 1 for several draws), written on each
    source's grid as ``out/translation/SUBJECT_TARGET_{translated,std}.nii.gz``, plus ``out/translation.png``
    (the first ``figure_subjects``). Returns the scores against the true targets, mean ± std over subjects, of
    the model and of histogram matching (each subject matched to the other subjects' true targets), the
    uncertainty–error correlation and the seconds per translated volume."""
    spec, names = model.config.input, model.spec
    sources, targets = find_pairs([manifest], names.source, names.target)
    pairs = TrainingVolumes.load(targets, spec, sources=sources, budget=context.budget)
    grids = [to_model_grid(read_volume(path), spec.shape, spec.spacing) for path in sources]
    brains = simulated_brain_masks(manifest, sources, [grid for grid, _ in grids], names.source)
    low, high = spec.normalisation().range
    truths = [image[0].numpy() for image in pairs.images]
    rows: dict[str, list[dict]] = {"translation": [], "histogram matching": []}
    seconds, figure = [], {}
    for index, ((grid, mapping), truth, brain) in enumerate(zip(grids, truths, brains)):
        tick = time.monotonic()
        mean, std = translate(model, pairs.sources[index:index + 1], steps, samples, eta=1.0 if samples > 1 else 0.0,
                              generator=context.generator(index), events=context.events, cancel=context.cancel)
        seconds.append(time.monotonic() - tick)
        prediction, std = mean[0, 0].numpy(), (None if std is None else std[0, 0].numpy())
        matched = histogram_matched(pairs.sources[index, 0].numpy(), truths[:index] + truths[index + 1:])
        row = translation_scores(prediction, truth, brain, high - low)
        if std is not None:
            row["std_error_pearson"] = uncertainty_error_correlation(std, prediction, truth, brain)
        rows["translation"].append(row)
        rows["histogram matching"].append(translation_scores(matched, truth, brain, high - low))
        name = Path(sources[index]).parent.name
        for suffix, data in (("translated", prediction), ("std", std)):
            if data is not None:
                write_volume(from_model_grid(Volume(data, grid.affine), mapping),
                             out / "translation" / f"{name}_{names.target}_{suffix}.nii.gz")
        if index < figure_subjects:
            panels = {f"source {names.source}": pairs.sources[index, 0].numpy(), f"true {names.target}": truth,
                      "histogram matching": matched, "translation": prediction}
            if std is not None:
                panels["std (uncertainty)"] = std
            panels["|error|"] = np.abs(prediction - truth)
            figure[name] = panels
    save_case_figure(figure, out / "translation.png", maps=("std (uncertainty)", "|error|"),
                            title=f"held-out {names.source} → {names.target}")
    summary = {method: {key: mean_and_std([r[key] for r in values]) for key in (*SCORES, "std_error_pearson")
                        if key in values[0]} for method, values in rows.items()}
    for method, values in summary.items():
        for key, (value, _) in values.items():
            context.events.metric(f"translation_{key}", value, model=method)
    return {"subjects": len(truths), "samples": samples, "steps": steps, "source": names.source,
            "target": names.target, "seconds_per_volume": statistics.fmean(seconds), "scores": summary}
