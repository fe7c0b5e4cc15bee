"""One cell of the study, computed in this process (``worker.py`` runs it in a fresh one).

A method cell fine-tunes **one generator per class**: the method's adapter is trained separately on each
class's real training subjects (budget steps each, same seed), merged, and sampled (``samples_per_class``
volumes, DDIM). Per-class generators work with every method and an unconditional base model, where a
class-conditioned variant would need a new class embedding that only some methods can train. The cell
records:

- cost: trainable parameters (mean of the two generators), median optimizer-step time (steps after the
  first of each run; intervals with a validation excluded), peak memory of the fine-tuning (``peak_memory.py``);
- fit: held-out denoising loss of each class's generator on that class's held-out reals (mean of both);
- sample quality: ``assess_samples`` of all samples (both classes) against all held-out reals: FID,
  feature MMD, precision/recall/density/coverage, Vendi on features and MS-SSIM, MS-SSIM to the reals;
- downstream: the classifier trained on the real training volumes plus the samples, labelled by the
  generator that drew them, scored on the held-out reals (one score per classifier seed).

A base cell samples the base model (``2 × samples_per_class`` volumes) and scores them the same way; the
reference cell trains the classifier on the reals alone.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..adapters import get_method
from ..assessment import assess_samples
from ..context import RunContext, seed_everything
from ..events import EventSink
from ..files import staged
from ..finetuning import FineTuneSettings, fine_tune
from ..metrics import denoising_loss
from ..models import load_model, read_model_config
from ..synthesis import sample
from ..volumes import Volume, model_grid_affine, write_volume
from .classifier import ClassifierSettings, downstream_scores
from .cohort import StudyData, labelled
from .peak_memory import PeakMemory
from .study import CLASSES, Cell, StudySettings

SAMPLE_NOISE_OFFSET = 7  # sampling noise of class k comes from seed + 7 + k (class 0 shares the base model's)


@dataclass
class CellJob:
    """Everything a cell needs, JSON-ready (a worker process gets it on stdin). save_samples: write the
    samples to ``OUT/samples/CELL`` (the montages' source)."""

    cell: dict
    model: str
    out: str
    settings: dict
    isolation: str
    save_samples: bool = False


class StepTimer(EventSink):
    """Passes every event on to ``inner`` and stamps each fine-tuning step; a validation voids that interval."""

    def __init__(self, inner: EventSink):
        super().__init__()
        self.inner = inner
        self.stamps: list[float | None] = []

    def emit(self, event):
        if event["event"] == "progress" and event["stage"] == "finetune":
            self.stamps.append(time.perf_counter())
        elif event["event"] == "metric" and event["name"] == "val_loss":
            self.stamps.append(None)
        self.inner.emit(event)

    def step_durations(self) -> list[float]:
        """Seconds of each optimizer step after the first (stamp 0 is the announcement before step 1)."""
        pairs = zip(self.stamps[1:], self.stamps[2:])
        return [b - a for a, b in pairs if a is not None and b is not None]


def method_options(method: str, rank: int) -> dict:
    """``rank`` for methods with a fixed rank; SeLoRA's rank is where its growth starts, so it keeps its own."""
    defaults = get_method(method).defaults
    return {"rank": rank} if "rank" in defaults and "max_rank" not in defaults else {}


def run_cell(job: CellJob, context: RunContext) -> dict:
    """Compute one cell (see the module docstring); return its record for the state file."""
    started = time.monotonic()
    cell, settings = Cell(**job.cell), StudySettings.from_dict(job.settings)
    seed_everything(context.seed)  # adapter initialisation draws from the global generators
    config = read_model_config(job.model)
    data = StudyData.load(Path(job.out) / "data", settings, config.input, context.budget)
    classifier = ClassifierSettings.from_dict(settings.classifier)
    test = data.labelled("heldout")
    record = {"id": cell.id, **cell.as_dict()}
    if cell.kind == "reference":
        record["downstream"] = downstream_scores(data.labelled("train"), test, classifier, context.device,
                                                 context.events, context.cancel)
    else:
        samples = (sample_base(job, settings, data, record, context) if cell.kind == "base" else
                   fine_tune_and_sample(job, cell, settings, data, record, context))
        low, high = config.input.normalisation().range
        train_mean = torch.cat(data.images["train"]).mean(dim=0)[0].numpy()
        everything = [volume for per_class in samples for volume in per_class]
        record["assessment"] = assess_samples(everything, data.volumes("heldout"), train_mean, data_range=high - low)
        if cell.kind == "method":  # the reals plus each class's samples, labelled by the generator that drew them
            train = labelled([torch.cat([real, torch.from_numpy(np.stack(drawn))[:, None]])
                              for real, drawn in zip(data.images["train"], samples)])
            record["downstream"] = downstream_scores(train, test, classifier, context.device, context.events,
                                                     context.cancel)
        if job.save_samples:
            save_samples(Path(job.out) / "samples" / cell.id, samples, cell.kind, config.input)
    record["wall_s"] = time.monotonic() - started
    record["environment"] = {"device": str(context.device), "threads": torch.get_num_threads(),
                             "isolation": job.isolation, "torch": torch.__version__}
    return record


def class_label_of(model, target: str) -> int | None:
    """The class of the target contrast in a class-conditioned base model; None for an unconditional one."""
    names = list(model.config.input.condition_classes)
    return names.index(target) if target in names else None


def load(job: CellJob, context: RunContext):
    """The base model, fresh (the command checked its kind and the memory budget before the study began)."""
    return load_model(job.model, context.device)


def draw(model, count: int, settings: StudySettings, offset: int,
         context: RunContext) -> tuple[list[np.ndarray], float]:
    """``count`` DDIM samples as (X, Y, Z) arrays and the seconds per sample."""
    tick = time.perf_counter()
    images = sample(model, count, settings.sampling_steps, "ddim", generator=context.generator(offset),
                    class_label=class_label_of(model, settings.target), batch_size=min(count, 4),
                    events=context.events, cancel=context.cancel)
    return [image[0].numpy() for image in images], (time.perf_counter() - tick) / count


def sample_base(job: CellJob, settings: StudySettings, data: StudyData, record: dict,
                context: RunContext) -> list[list[np.ndarray]]:
    model = load(job, context).eval()
    label = class_label_of(model, settings.target)
    record["heldout_loss"] = statistics.mean(denoising_loss(model, data.images["heldout"][k], class_label=label)
                                             for k in range(len(CLASSES)))
    samples, record["sampling_s"] = draw(model, 2 * settings.samples_per_class, settings, SAMPLE_NOISE_OFFSET, context)
    return [samples]


def fine_tune_and_sample(job: CellJob, cell: Cell, settings: StudySettings, data: StudyData, record: dict,
                         context: RunContext) -> list[list[np.ndarray]]:
    """Fine-tune one generator per class, record cost and fit, return each class's samples."""
    samples, runs = [], []
    for label in range(len(CLASSES)):
        model = load(job, context)
        timer = StepTimer(context.events)
        probe = PeakMemory(context.device)
        tune = FineTuneSettings(method=cell.method, options=method_options(cell.method, settings.rank),
                                steps=cell.budget, lr=settings.lr, checkpoint_every=0,
                                class_label=class_label_of(model, settings.target))
        context.events.log(f"{cell.id}: fine-tuning the {CLASSES[label]} generator.")
        probe.start()
        with tempfile.TemporaryDirectory(prefix="diffusion-peft-paradigms-") as work:
            outcome = fine_tune(model, data.files["train"][label], tune, work,
                                dataclasses.replace(context, events=timer))
        peak = probe.peak_mb()
        counts = outcome.adapters.counts()
        model.unet = outcome.adapters.merge_and_unload()
        model.eval()
        loss = denoising_loss(model, data.images["heldout"][label], class_label=tune.class_label)
        drawn, seconds = draw(model, settings.samples_per_class, settings, SAMPLE_NOISE_OFFSET + label, context)
        samples.append(drawn)
        runs.append({"class": CLASSES[label], "steps": outcome.result.steps, "lr": outcome.provenance["lr"],
                     "trainable": counts.total, "share": counts.share, "step_durations": timer.step_durations(),
                     "peak_mb": peak, "final_loss": outcome.provenance["final_loss"], "heldout_loss": loss,
                     "sampling_s": seconds})
    durations = [d for run in runs for d in run.pop("step_durations")]
    peaks = [run["peak_mb"] for run in runs if run["peak_mb"] is not None]
    record.update({
        "steps": max(run["steps"] for run in runs), "lr": runs[0]["lr"],
        "trainable": round(statistics.mean(run["trainable"] for run in runs)),
        "share": statistics.mean(run["share"] for run in runs),
        "step_s": statistics.median(durations) if durations else None,
        "peak_mb": max(peaks) if peaks else None, "peak_memory": probe.source,
        "final_loss": statistics.mean(run["final_loss"] for run in runs),
        "heldout_loss": statistics.mean(run["heldout_loss"] for run in runs),
        "sampling_s": statistics.mean(run["sampling_s"] for run in runs), "per_class": runs,
    })
    return samples


def save_samples(folder: Path, samples: list[list[np.ndarray]], kind: str, spec) -> None:
    """The samples as NIfTI volumes on the model grid: ``healthy_01.nii.gz`` … (base: ``sample_01.nii.gz`` …)."""
    affine = model_grid_affine((0.0, 0.0, 0.0), spec.shape, spec.spacing)
    names = ["sample"] if kind == "base" else list(CLASSES)
    with staged(folder, overwrite=True, folder=True) as temporary:
        for name, per_class in zip(names, samples):
            for index, image in enumerate(per_class, 1):
                write_volume(Volume(image, affine), temporary / f"{name}_{index:02d}.nii.gz")
