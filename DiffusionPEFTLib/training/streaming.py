"""Training data that need not fit in memory: volumes read, put on the model grid and normalised when the
trainer needs them, through a MONAI ``Dataset`` (``stream``), ``CacheDataset`` (``cache``: as many volumes as
half the memory budget holds stay in memory, the rest are read as needed) or ``PersistentDataset``
(``persistent``: each volume's model-grid tensor is kept in the work folder's ``data-cache`` after its first
read), and a torch ``DataLoader`` whose workers read ahead.

The trainer decides which volume comes next (its seeded generator, checkpointed) and hands the order to
:meth:`StreamingVolumes.items`; the loader only reads ahead in that order. So a run draws the same batches
whether its volumes are in memory or streamed, and ``--resume`` continues it exactly either way.
Every volume goes through :func:`~DiffusionPEFTLib.training.data.load_training_item`, the same code as the
in-memory path. Before training, every volume is read once (split over the processes of a distributed run):
a damaged file or a pair that does not overlap is reported before the first step, not at step 3000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Transform
from torch.utils.data import DataLoader

from .. import distributed
from ..context import RunContext
from ..errors import DiffusionPEFTError, InputError
from ..memory import GIB, MemoryBudget
from ..models.config import InputSpec
from .data import TrainingVolumes, VolumeSet, load_training_item

LOADINGS = ("memory", "stream", "cache", "persistent")
CACHE_FOLDER = "data-cache"  # inside the work folder
CACHE_VERSION = 1  # part of every cache key: raise it when load_training_item changes what it returns
CACHE_SHARE = 0.5  # ``cache`` keeps at most this share of the memory budget in volumes


@dataclass(frozen=True)
class DataLoading:
    """How training volumes reach the trainer: ``mode`` one of :data:`LOADINGS`; ``workers``: DataLoader
    worker processes reading ahead (0: read in the training process)."""

    mode: str = "memory"
    workers: int = 0

    def check(self) -> None:
        if self.mode not in LOADINGS:
            raise InputError(f"Unknown data loading '{self.mode}'.", hint=f"Use one of {', '.join(LOADINGS)}.")
        if self.mode == "memory" and self.workers:
            raise InputError("--workers reads volumes ahead while training, which needs a streaming --data-loading.",
                             hint="Add --data-loading stream (or cache, persistent), or leave --workers out.")


class LoadTrainingItem(Transform):
    """MONAI transform: {"image": path, "source": path or ""} → {"image": (1, X, Y, Z), "source": (1, X, Y, Z) or
    an empty tensor, "note": the resampling note or ""} (see ``load_training_item``). Deterministic, so the
    Cache/PersistentDataset keep its result."""

    def __init__(self, spec: InputSpec, budget: MemoryBudget | None):
        self.spec, self.budget = spec, budget

    def __call__(self, item: dict) -> dict:
        source = Path(item["source"]) if item["source"] else None
        image, source_image, note = load_training_item(Path(item["image"]), self.spec, self.budget, source)
        return {"image": image, "source": source_image if source_image is not None else torch.empty(0),
                "note": note or ""}


@dataclass
class StreamingVolumes(VolumeSet):
    """Training volumes read as :meth:`items` asks for them. ``dataset``: the MONAI dataset over every file;
    ``positions``: which of its items this set holds (a validation split is a subset of positions)."""

    dataset: torch.utils.data.Dataset
    positions: list[int]
    labels: torch.Tensor | None
    files: list[Path]
    shape: tuple[int, ...]
    paired: bool
    workers: int = 0
    pin_memory: bool = False
    resampled: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def has_sources(self) -> bool:
        return self.paired

    def items(self, indices: list[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Read the volumes at ``indices`` in that order; the workers read ahead (2 per worker)."""
        for item in self.read(indices):
            yield item["image"], (item["source"] if self.paired else None)

    def read(self, indices: list[int]) -> Iterator[dict]:
        """The items (see :class:`LoadTrainingItem`) at ``indices``, in that order; a user error met by a worker
        is raised here as itself."""
        if not indices:
            return
        loader = DataLoader(_Reported(self.dataset), batch_size=None, sampler=[self.positions[i] for i in indices],
                            num_workers=self.workers, pin_memory=self.pin_memory, collate_fn=_as_is,
                            generator=torch.Generator())  # its worker seeds must not draw from torch's global RNG
        for _, item, error in loader:
            if error is not None:
                raise _rebuilt(error)
            yield item

    def subset(self, indices: list[int]) -> "StreamingVolumes":
        labels = self.labels[indices] if self.labels is not None else None
        return StreamingVolumes(self.dataset, [self.positions[i] for i in indices], labels,
                                [self.files[i] for i in indices], self.shape, self.paired, self.workers,
                                self.pin_memory)


def training_data(files: list[Path], spec: InputSpec, loading: DataLoading, context: RunContext,
                  workdir: Path | None = None, labels: list[int] | None = None,
                  sources: list[Path] | None = None) -> VolumeSet:
    """The training volumes as ``loading`` says: all in memory (:class:`TrainingVolumes`, refused when they
    would not fit the memory budget) or streamed (:class:`StreamingVolumes`, checked by one read of every
    volume first). ``workdir``: where ``persistent`` keeps its cache."""
    loading.check()
    per_volume = 4 * math.prod(spec.shape) * (2 if sources else 1)
    budget = host_budget(context)
    if loading.mode == "memory":
        budget.check(per_volume * len(files), f"Holding {len(files)} training volumes on the "
                     f"{'×'.join(map(str, spec.shape))} grid in memory",
                     hint="Stream them instead: --data-loading stream (or persistent, which also keeps them on disk "
                     "on the model grid).")
        return TrainingVolumes.load(files, spec, labels, context.budget, sources)
    entries = [{"image": str(path), "source": str(sources[i]) if sources else "", "stamp": _stamp(path, sources, i),
                "grid": [list(spec.shape), list(spec.spacing), spec.intensity], "version": CACHE_VERSION}
               for i, path in enumerate(files)]
    transform = LoadTrainingItem(spec, context.budget)
    if loading.mode == "stream":
        dataset = Dataset(entries, transform)
    elif loading.mode == "cache":
        count = min(len(files), int(CACHE_SHARE * budget.limit_bytes // per_volume))
        context.events.log(f"Caching {count} of {len(files)} training volumes in memory "
                           f"({count * per_volume / GIB:.2f} GiB); the others are read as needed.")
        try:  # reads the cached volumes now, with --workers threads
            dataset = CacheDataset(entries, transform, cache_num=count, num_workers=max(1, loading.workers),
                                   progress=False)
        except Exception as exc:  # MONAI wraps a transform's error in RuntimeError
            raise _user_error(exc) or exc from None
    else:
        if workdir is None:
            raise InputError("--data-loading persistent needs a work folder for its cache.", hint="Give --workdir.")
        dataset = PersistentDataset(entries, transform, cache_dir=Path(workdir) / CACHE_FOLDER)
    data = StreamingVolumes(dataset, list(range(len(files))),
                            torch.tensor(labels, dtype=torch.long) if labels is not None else None, list(files),
                            (1, *spec.shape), sources is not None, loading.workers,
                            pin_memory=context.device.type == "cuda")
    data.resampled = checked(data, context)
    return data


def checked(data: StreamingVolumes, context: RunContext) -> list[str]:
    """Read every volume once (each process its share) before training; return the resampling notes of all
    processes; raise the first user error any process met (the same on every process)."""
    world = distributed.world()
    mine = list(range(world.rank, len(data), world.size))
    readers = f" with {data.workers} reader processes" if data.workers else ""
    context.events.log(f"Checking {len(data)} training volumes{readers}.")
    notes, error = [], None
    try:
        for done, item in enumerate(data.read(mine), start=1):
            context.cancel.raise_if_requested("Checking the training volumes")
            notes.append(item["note"])
            context.events.progress("check-data", done, len(mine))
    except DiffusionPEFTError as failure:
        error = failure
    distributed.raise_first_error(error)
    return [note for note in distributed.gather_lists(notes) if note]


def host_budget(context: RunContext) -> MemoryBudget:
    """The budget for what stays in host memory: the job's budget on the CPU; 80 % of RAM when it runs on a GPU
    (whose budget is the GPU's memory)."""
    return context.budget if context.device.type == "cpu" else MemoryBudget.default("cpu")


def _stamp(path: Path, sources: list[Path] | None, index: int) -> list[int]:
    """Size and modification time of the file(s) of one item: a changed file gets a new cache entry."""
    paths = [Path(path)] + ([Path(sources[index])] if sources else [])
    stamps = []
    for item in paths:
        try:
            stat = item.stat()
        except OSError:
            raise InputError(f"Volume file not found: {item}", hint="Check the path and file name.") from None
        stamps += [stat.st_size, stat.st_mtime_ns]
    return stamps


class _Reported(torch.utils.data.Dataset):
    """index → (index, item, None), or (index, None, (error class, message, hint)) for a user error: in a worker
    process it travels back as data, so the user sees the message, not a worker traceback."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return index, self.dataset[index], None
        except Exception as exc:  # MONAI wraps a transform's error in RuntimeError: find ours in the chain
            error = _user_error(exc)
            if error is None:
                raise
            return index, None, (type(error).__name__, error.message, error.hint)


def _user_error(exc: BaseException | None) -> DiffusionPEFTError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, DiffusionPEFTError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _rebuilt(error: tuple[str, str, str]) -> DiffusionPEFTError:
    name, message, hint = error
    return distributed.error_class(name)(message, hint=hint)


def _as_is(item):
    return item
