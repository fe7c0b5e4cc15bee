"""The study's labelled target-domain data: simulated subjects of the target contrast in two classes.

``OUT/data/{train,heldout}_{healthy,atrophy}/`` are simulator cohorts (manifest + volumes) written once,
on the model grid; every cell reads them. Class k of split s has cohort seed ``data_seed + offset``
(train 100 + k, held-out 200 + k), so the same settings give the same subjects on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cancel import CancelToken
from ..events import EventSink
from ..memory import MemoryBudget
from ..models import InputSpec
from ..simulate import write_cohort
from ..training import TrainingVolumes, find_volume_files
from .study import CLASSES, StudySettings

SPLITS = {"train": 100, "heldout": 200}  # split -> cohort seed offset


def cohort_folder(data: Path, split: str, label: int) -> Path:
    return data / f"{split}_{CLASSES[label]}"


def write_study_data(data: Path, settings: StudySettings, spec: InputSpec, events: EventSink,
                     cancel: CancelToken) -> None:
    """Simulate every cohort that is not there yet (a resumed run reuses the others)."""
    counts = {"train": settings.train_per_class, "heldout": settings.heldout_per_class}
    for split, offset in SPLITS.items():
        for label in range(len(CLASSES)):
            folder = cohort_folder(data, split, label)
            if not (folder / "manifest.json").exists():
                write_cohort(folder, counts[split], seed=settings.data_seed + offset + label,
                             atrophy=settings.atrophy[label], contrasts=settings.target, shape=spec.shape,
                             spacing=spec.spacing, events=events, cancel=cancel)


@dataclass
class StudyData:
    """files[split][label]: volume paths; images[split][label]: (N, 1, X, Y, Z) in the model's range."""

    files: dict[str, list[list[Path]]]
    images: dict[str, list[torch.Tensor]]

    @classmethod
    def load(cls, data: Path, settings: StudySettings, spec: InputSpec, budget: MemoryBudget) -> "StudyData":
        files = {split: [find_volume_files([cohort_folder(data, split, label) / "manifest.json"],
                                           contrast=settings.target) for label in range(len(CLASSES))]
                 for split in SPLITS}
        images = {split: [TrainingVolumes.load(paths, spec, budget=budget).images for paths in per_class]
                  for split, per_class in files.items()}
        return cls(files, images)

    def volumes(self, split: str, label: int | None = None) -> list[np.ndarray]:
        """(X, Y, Z) arrays of one class, or of both (label None; healthy first)."""
        labels = range(len(CLASSES)) if label is None else [label]
        return [image[0].numpy() for k in labels for image in self.images[split][k]]

    def labelled(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Both classes: volumes (N, 1, X, Y, Z) and labels (N,) 0/1."""
        return labelled(self.images[split])


def labelled(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Volumes of each class (the label is the index in ``parts``) → all volumes (N, 1, X, Y, Z) and labels (N,)."""
    return torch.cat(parts), torch.cat([torch.full((len(part),), label) for label, part in enumerate(parts)])
