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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from ..errors import InputError
from ..memory import MemoryBudget
from ..models.config import InputSpec
from ..volumes import VOLUME_SUFFIXES, Volume, read_volume, resample, to_model_grid
from ..volumes.grid import field_of_view_overlap

MIN_PAIR_OVERLAP = 0.5  # a target must cover at least this fraction of its source's field of view


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


def load_training_item(path: Path, spec: InputSpec, budget: MemoryBudget | None = None,
                       source: Path | None = None) -> tuple[torch.Tensor, torch.Tensor | None, str | None]:
    """One training volume on the model grid, normalised: (image (1, X, Y, Z), None, None); for a pair, the
    target resampled onto its source's model grid, the source, and a note when the target file lies on another
    grid than its source file (see :func:`_resampled_pair`: InputError when it covers too little of the source).
    The one place where training data meet the model grid: the in-memory and the streaming paths both call it."""
    normalisation = spec.normalisation()

    def normalised(volume) -> torch.Tensor:
        return torch.from_numpy(normalisation.fit(volume.data).apply(volume.data))[None]

    if source is None:
        volume, _ = to_model_grid(read_volume(path, budget), spec.shape, spec.spacing)
        return normalised(volume), None, None
    source_file, target = read_volume(source, budget), read_volume(path, budget)
    note = None if target.same_grid(source_file) else _resampled_pair(Path(source), source_file, Path(path), target)
    on_grid, _ = to_model_grid(source_file, spec.shape, spec.spacing)
    return normalised(resample(target, on_grid.shape, on_grid.affine)), normalised(on_grid), note


class VolumeSet:
    """What the trainer reads from its data, held in memory (:class:`TrainingVolumes`) or streamed
    (:class:`~DiffusionPEFTLib.training.streaming.StreamingVolumes`): ``len``, ``labels`` (N,) or None,
    ``item_shape`` (C, X, Y, Z) of one image, ``has_sources``, and :meth:`items`."""

    labels: torch.Tensor | None
    files: list[Path]
    resampled: list[str]

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def item_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def has_sources(self) -> bool:
        raise NotImplementedError

    def items(self, indices: list[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(image (C, X, Y, Z), source (C', X, Y, Z) or None) for each index, in the given order."""
        raise NotImplementedError

    def subset(self, indices: list[int]) -> "VolumeSet":
        raise NotImplementedError

    def resampling_warning(self) -> str | None:
        """One line for the user when loading resampled targets onto their source's grid (else None)."""
        if not self.resampled:
            return None
        return (f"{len(self.resampled)} of {len(self)} pairs have their target on another grid than their source; "
                f"each such target was resampled onto its source's grid (first: {self.resampled[0]}).")


@dataclass
class TrainingVolumes(VolumeSet):
    """Volumes on the model grid: ``images`` (N, 1, X, Y, Z) float32 in the model range, optional
    integer ``labels`` (N,), the files they came from, and for paired data (translation) the ``sources``
    (N, 1, X, Y, Z): each target is resampled onto its source's model grid, so a pair stays aligned.
    (For a latent model, fine-tuning replaces ``images`` by their latents (N, C, x, y, z) and ``sources`` by
    the condition vectors (N, n): ``sources`` is what the trainer hands to the model with each volume.)
    ``resampled``: what :meth:`load` found for paired data, one line per pair whose target file lies on
    another grid (shape or affine) than its source file."""

    images: torch.Tensor
    labels: torch.Tensor | None
    files: list[Path]
    sources: torch.Tensor | None = None
    resampled: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, files: list[Path], spec: InputSpec, labels: list[int] | None = None,
             budget: MemoryBudget | None = None, sources: list[Path] | None = None) -> "TrainingVolumes":
        """``files`` (the targets) and, for paired data, the ``sources`` they are paired with (same order).
        InputError for a target that covers less than MIN_PAIR_OVERLAP of its source's field of view."""
        images, source_images, resampled = [], [], []
        for index, path in enumerate(files):
            image, source, note = load_training_item(path, spec, budget, sources[index] if sources else None)
            images.append(image)
            if source is not None:
                source_images.append(source)
            if note is not None:
                resampled.append(note)
        label_tensor = torch.tensor(labels, dtype=torch.long) if labels is not None else None
        return cls(torch.stack(images), label_tensor, list(files), torch.stack(source_images) if sources else None,
                   resampled)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape[1:])

    @property
    def has_sources(self) -> bool:
        return self.sources is not None

    def items(self, indices: list[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        for index in indices:
            yield self.images[index], (self.sources[index] if self.sources is not None else None)

    def subset(self, indices: list[int]) -> "TrainingVolumes":
        labels = self.labels[indices] if self.labels is not None else None
        sources = self.sources[indices] if self.sources is not None else None
        return TrainingVolumes(self.images[indices], labels, [self.files[i] for i in indices], sources)


def _resampled_pair(source_path: Path, source: Volume, target_path: Path, target: Volume) -> str:
    """'TARGET (grid) onto SOURCE (grid)'; InputError when the target covers too little of the source's view."""
    overlap = field_of_view_overlap(source, target)
    if overlap < MIN_PAIR_OVERLAP:
        raise InputError(f"{_name(target_path)} covers {overlap:.0%} of the field of view of {_name(source_path)}, "
                         f"its source; a pair needs at least {MIN_PAIR_OVERLAP:.0%} to show the same anatomy "
                         f"(target {_grid(target)}; source {_grid(source)}).",
                         hint="Check that the two files are the same subject's scans (the manifest's rows, or the "
                         "subject names in the two folders) and that their headers place them in the same space.")
    return f"{_name(target_path)} ({_grid(target)}) onto {_name(source_path)} ({_grid(source)})"


def _name(path: Path) -> str:
    """The file name with its folder's name ('sub-001/t1.nii.gz'): subjects' scans often share file names."""
    return Path(path.parent.name, path.name).as_posix()


def _grid(volume: Volume) -> str:
    """'16×20×16 voxels of 12×12×12 mm, first voxel at (−90.0, −126.0, −72.0) mm'."""
    return (f"{'×'.join(map(str, volume.shape))} voxels of {'×'.join(f'{s:.3g}' for s in volume.spacing)} mm, "
            f"first voxel at ({', '.join(f'{c:.1f}' for c in volume.affine[:3, 3])}) mm")


def split_validation(data: VolumeSet, fraction: float, seed: int) -> tuple[VolumeSet, VolumeSet | None]:
    """Hold out ``fraction`` of the volumes (at least one when fraction > 0, never all) by a seeded shuffle."""
    if fraction <= 0 or len(data) < 2:
        return data, None
    count = min(max(1, round(fraction * len(data))), len(data) - 1)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    return data.subset(sorted(order[count:])), data.subset(sorted(order[:count]))
