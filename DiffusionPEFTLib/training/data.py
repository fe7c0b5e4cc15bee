"""Training data: volume files → model-grid tensors in the model's intensity range.

Sources may be folders (searched recursively, optionally filtered by a glob such as
``*/t1.nii.gz``), volume files, or manifests (``.txt``/``.csv``: one path per line or a ``path``
column; ``.json``: a list of paths or {"volumes": [...]} / {"subjects": [{"files": {...}}]}).
Every volume goes through the same grid mapping and normalisation as inference inputs.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from ..memory import MemoryBudget
from ..models.config import InputSpec
from ..volumes import VOLUME_SUFFIXES, read_volume, resample, to_model_grid


def find_volume_files(sources: list[str | Path], pattern: str | None = None, contrast: str | None = None) -> list[Path]:
    """Expand folders, files and manifests into a sorted, de-duplicated list of volume paths.

    contrast: with a JSON manifest of subjects, which entry of each subject's ``files`` to take.
    """
    found: list[Path] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            candidates = source.rglob(pattern) if pattern else source.rglob("*")
            found.extend(sorted(p for p in candidates if p.is_file() and p.name.lower().endswith(VOLUME_SUFFIXES)
                                and not p.name.startswith(".")))
        elif source.is_file() and source.suffix.lower() in (".json", ".csv", ".txt"):
            found.extend(_read_manifest(source, contrast))
        elif source.is_file():
            found.append(source)
        else:
            raise InputError(f"Training data not found: {source}", hint="Give folders, volume files or a manifest.")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise InputError("No training volumes were found in the given sources.",
                         hint=f"Volume files must end in one of {', '.join(VOLUME_SUFFIXES)}.")
    return unique


def _read_manifest(path: Path, contrast: str | None) -> list[Path]:
    """The volume paths a manifest lists (relative ones from its folder); InputError for a broken manifest."""
    base = path.parent
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"Manifest {path.name} is not UTF-8 text.", hint="Save it as UTF-8 (plain text).") from None
    if path.suffix.lower() == ".json":
        entries = _json_manifest_entries(path, text, contrast)
    else:
        rows = list(csv.reader(io.StringIO(text)))
        if rows and rows[0] and rows[0][0].strip().lower() == "path":
            rows = rows[1:]
        entries = [row[0].strip() for row in rows if row and row[0].strip()]
    return [p if p.is_absolute() else base / p for p in map(Path, entries)]


def _json_manifest_entries(path: Path, text: str, contrast: str | None) -> list[str]:
    shapes = 'a list of paths, {"volumes": [...]}, or a simulator manifest {"subjects": [...]}'
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"Manifest {path.name} is not valid JSON ({exc.msg}, line {exc.lineno}).",
                         hint=f"A JSON manifest is {shapes}.") from None
    if isinstance(spec, dict) and "subjects" in spec:
        key = contrast or "t1"
        try:
            entries = [subject["files"][key] for subject in spec["subjects"]]
        except (KeyError, TypeError):
            raise InputError(f"{path.name}: not every subject has a '{key}' file.",
                             hint="Choose the contrast with --contrast.") from None
    else:
        entries = spec.get("volumes") if isinstance(spec, dict) else spec
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise InputError(f"Manifest {path.name} does not list volume paths.", hint=f"A JSON manifest is {shapes}.")
    return entries


@dataclass
class TrainingVolumes:
    """Volumes on the model grid: ``images`` (N, 1, X, Y, Z) float32 in the model range, optional
    integer ``labels`` (N,), the files they came from, and for paired data (translation) the ``sources``
    (N, 1, X, Y, Z): each target is resampled onto its source's model grid, so a pair stays aligned."""

    images: torch.Tensor
    labels: torch.Tensor | None
    files: list[Path]
    sources: torch.Tensor | None = None

    @classmethod
    def load(cls, files: list[Path], spec: InputSpec, labels: list[int] | None = None,
             budget: MemoryBudget | None = None, sources: list[Path] | None = None) -> "TrainingVolumes":
        """``files`` (the targets) and, for paired data, the ``sources`` they are paired with (same order)."""
        normalisation = spec.normalisation()

        def normalised(volume) -> torch.Tensor:
            return torch.from_numpy(normalisation.fit(volume.data).apply(volume.data))[None]

        images, source_images = [], []
        for index, path in enumerate(files):
            if sources is None:
                volume, _ = to_model_grid(read_volume(path, budget), spec.shape, spec.spacing)
            else:
                source, _ = to_model_grid(read_volume(sources[index], budget), spec.shape, spec.spacing)
                volume = resample(read_volume(path, budget), source.shape, source.affine)
                source_images.append(normalised(source))
            images.append(normalised(volume))
        label_tensor = torch.tensor(labels, dtype=torch.long) if labels is not None else None
        return cls(torch.stack(images), label_tensor, list(files), torch.stack(source_images) if sources else None)

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, indices: list[int]) -> "TrainingVolumes":
        labels = self.labels[indices] if self.labels is not None else None
        sources = self.sources[indices] if self.sources is not None else None
        return TrainingVolumes(self.images[indices], labels, [self.files[i] for i in indices], sources)


def split_validation(data: TrainingVolumes, fraction: float, seed: int) -> tuple[TrainingVolumes, TrainingVolumes | None]:
    """Hold out ``fraction`` of the volumes (at least one when fraction > 0, never all) by a seeded shuffle."""
    if fraction <= 0 or len(data) < 2:
        return data, None
    count = min(max(1, round(fraction * len(data))), len(data) - 1)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    return data.subset(sorted(order[count:])), data.subset(sorted(order[:count]))
