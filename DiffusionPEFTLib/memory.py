"""Memory budget and planner: refuse work that would not fit before it starts, and say which settings fit.

The budget (bytes) comes from ``--memory-budget-gb``, else ``DIFFUSIONPEFT_MEMORY_GB``, else
80 % of physical RAM (CPU) or of the GPU's memory (CUDA); the other 20 % is for what a prediction leaves
out (the CUDA context, cuDNN workspaces, allocator fragmentation; see footprint.py).

The planner (``--plan``, and every job's check before it starts) predicts a job's peak with footprint.py;
when it exceeds the budget it tries activation checkpointing, bf16, both, then smaller batches, and names the
first that fits: "fits with bf16 + activation checkpointing at batch 1". A latent model's sampling job decodes
whole when that fits, else in windows (models/tiled_decode.py): :func:`resolve_decoding` picks the largest window
that fits, and a refused whole decode names ``--decode tiled``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

from .errors import MemoryBudgetError

GIB = 1024**3


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * GIB


@dataclass(frozen=True)
class MemoryBudget:
    """An upper bound in bytes for one job's largest allocations."""

    limit_bytes: int

    @classmethod
    def default(cls, device: str = "cpu") -> "MemoryBudget":
        env = os.environ.get("DIFFUSIONPEFT_MEMORY_GB")
        if env:
            return cls.from_gb(float(env))
        if device.startswith("cuda"):
            import torch

            return cls(int(0.8 * torch.cuda.get_device_properties(device).total_memory))
        return cls(int(0.8 * physical_memory_bytes()))

    @classmethod
    def from_gb(cls, gb: float) -> "MemoryBudget":
        return cls(int(gb * GIB))

    def check(self, needed_bytes: float, what: str, hint: str) -> None:
        """Raise MemoryBudgetError when ``needed_bytes`` exceeds the budget."""
        if needed_bytes > self.limit_bytes:
            raise MemoryBudgetError(
                f"{what} needs about {needed_bytes / GIB:.2f} GiB, more than the memory budget of "
                f"{self.limit_bytes / GIB:.2f} GiB.",
                hint=hint + " Or raise the budget with --memory-budget-gb if this machine has more memory.",
            )


# --- the memory planner -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryPlan:
    """A job's predicted peak against a budget and, when it does not fit, the first change that fits (``proposal``,
    None when nothing does)."""

    job: "Job"
    footprint: "Footprint"
    budget: MemoryBudget
    where: str  # "on this machine", "on a 24 GB GPU"
    proposal: "Job | None" = None
    proposal_footprint: "Footprint | None" = None

    @property
    def fits(self) -> bool:
        return self.footprint.total <= self.budget.limit_bytes

    def advice(self) -> str:
        """"Fits on a 24 GB GPU …" / "Does not fit …; fits with bf16 + activation checkpointing at batch 1 …"."""
        room = f"{self.where} (budget {self.budget.limit_bytes / GIB:.2f} GiB)"
        if self.fits:
            return f"Fits {room}."
        if self.proposal is None:
            settings = " with bf16 and activation checkpointing" if self.job.mode == "train" else (
                " with tiled decoding" if _decodes(self.job) else "")
            return f"Does not fit {room}, not even at batch 1{settings}: use a smaller grid or more memory."
        return (f"Does not fit {room}; fits with {change_text(self.job, self.proposal)} "
                f"({self.proposal_footprint.total / GIB:.2f} GiB): {options_text(self.job, self.proposal)}.")

    def format(self) -> str:
        job = self.job
        what = {"train": f"Training ({job.setup.describe()})", "sample": "Sampling", "guide": "Guided sampling"}[job.mode]
        if _decodes(job):
            what = f"{what} ({job.decoding.describe()})"
        return (f"{what} at batch {job.batch} on {job.device}: about {self.footprint.format()}. {self.advice()}")

    def as_dict(self) -> dict:
        return {"mode": self.job.mode, "batch": self.job.batch, "device": self.job.device,
                "setup": {"method": self.job.setup.method, "precision": self.job.setup.precision,
                          "checkpointing": self.job.setup.checkpointing},
                "decoding": asdict(self.job.decoding) if _decodes(self.job) else None,
                "predicted": self.footprint.as_dict(), "budget_bytes": self.budget.limit_bytes, "where": self.where,
                "fits": self.fits, "advice": self.advice(),
                "proposal": None if self.proposal is None else {
                    "batch": self.proposal.batch, "precision": self.proposal.setup.precision,
                    "checkpointing": self.proposal.setup.checkpointing,
                    "options": options_text(self.job, self.proposal), "predicted": self.proposal_footprint.as_dict()}}


def plan_memory(job: "Job", budget: MemoryBudget, where: str = "on this machine") -> MemoryPlan:
    """Predict ``job``'s peak (footprint.py; its decoding resolved first, :func:`resolve_decoding`); when it
    exceeds ``budget``, try in turn: activation checkpointing, bf16, both, then halving the batch with both (a
    sampling job: smaller decoding windows, then halving the batch) — the first that fits is the proposal."""
    from .footprint import footprint

    job = resolve_decoding(job, budget)
    found = footprint(job)
    if found.total <= budget.limit_bytes:
        return MemoryPlan(job, found, budget, where)
    for candidate in cheaper_jobs(job):
        candidate_footprint = footprint(candidate)
        if candidate_footprint.total <= budget.limit_bytes:
            return MemoryPlan(job, found, budget, where, candidate, candidate_footprint)
    return MemoryPlan(job, found, budget, where)


def cheaper_jobs(job: "Job") -> list["Job"]:
    """The settings :func:`plan_memory` tries, in the order it prefers them (same numbers first)."""
    from .footprint import with_changes

    low = job.setup.precision if job.setup.precision != "fp32" else "bf16"
    if low == "bf16" and job.device == "cuda":
        import torch

        low = "fp16" if torch.cuda.is_available() and not torch.cuda.is_bf16_supported() else "bf16"
    settings = [{"checkpointing": True}, {"precision": low}, {"precision": low, "checkpointing": True}]
    batches = [job.batch]
    while batches[-1] > 1:
        batches.append(batches[-1] // 2)
    if job.mode == "train":
        candidates = [with_changes(job, **changes) for changes in settings]
        candidates += [with_changes(job, batch, **settings[-1]) for batch in batches[1:]]
    else:  # at each batch: its own decoding first, then smaller windows
        decodings = [job.decoding, *_smaller_decodings(job)]
        candidates = [with_changes(job, batch, decoding) for batch in batches for decoding in decodings]
    seen, unique = set(), []
    for candidate in candidates:
        if candidate.key() not in seen and candidate.key() != job.key():
            seen.add(candidate.key())
            unique.append(candidate)
    return unique


# --- a latent model's decoding ------------------------------------------------------------------------------


def _decodes(job: "Job") -> bool:
    """Whether ``job`` ends with a latent model's decoding (so its ``decoding`` matters)."""
    return job.config.task == "latent" and job.mode != "train"


def _candidate_windows(job: "Job") -> list[tuple[int, int, int]]:
    """The candidate windows (tiled_decode.py) for ``job``'s latent grid, largest first."""
    from .models.latent_model import LatentSpec
    from .models.tiled_decode import candidate_windows

    spec = LatentSpec.from_dict(job.config.latent)
    return candidate_windows(spec.latent_shape(job.config.input.shape))


def _smaller_decodings(job: "Job") -> list["Decoding"]:
    """Tiled decodings that need less memory than ``job``'s, largest window first: every candidate window after a
    whole decode, the candidates inside its window after a tiled one; [] for a job that decodes nothing."""
    from .models.tiled_decode import Decoding

    if not _decodes(job):
        return []
    own = job.decoding.window if job.decoding.tiled else None
    inside = [w for w in _candidate_windows(job) if own is None or (w != tuple(own) and all(
        side <= limit for side, limit in zip(w, own)))]
    return [Decoding("tiled", window, job.decoding.overlap) for window in inside]


def resolve_decoding(job: "Job", budget: MemoryBudget) -> "Job":
    """``job`` with a definite decoding for ``budget``: ``auto`` → whole when that fits, else tiled with its window
    or the largest candidate window that fits; ``tiled`` without a window → the largest candidate window that fits
    (the last candidate when none fits, for the refusal to report). A whole decode, a tiled one with its window or
    a job that decodes nothing stays as it is."""
    from .footprint import footprint
    from .models.tiled_decode import Decoding

    decoding = job.decoding
    if not _decodes(job) or decoding.mode == "whole" or (decoding.tiled and decoding.window is not None):
        return job
    whole = [Decoding("whole")] if decoding.mode == "auto" else []
    windows = [decoding.window] if decoding.window is not None else _candidate_windows(job)
    candidates = [replace(job, decoding=d) for d in [*whole, *(Decoding("tiled", tuple(window), decoding.overlap)
                                                               for window in windows)]]
    return next((c for c in candidates if footprint(c).total <= budget.limit_bytes), candidates[-1])


# --- the check every job runs ------------------------------------------------------------------------------


def check_job(budget: MemoryBudget, job: "Job", what: str, hint: str, events=None) -> "Footprint | None":
    """Raise MemoryBudgetError when ``job`` does not fit ``budget`` (the hint then names the settings that fit,
    if any); return its footprint. A latent model's ``auto`` or window-less ``tiled`` decoding is resolved first
    (:func:`resolve_decoding`): pass the resolved job to decode as checked. Should the trace itself fail (an
    operation fake tensors cannot run), the job starts unchecked, with a warning on ``events``, rather than not at
    all."""
    from .errors import DiffusionPEFTError

    try:
        plan = plan_memory(job, budget)
    except DiffusionPEFTError:
        raise
    except Exception as error:  # a limit of the tracer, not of the job
        if events is not None:
            events.log(f"The memory planner could not trace this job ({type(error).__name__}: {error}); it starts "
                       "without a memory check.", level="warning")
        return None
    if not plan.fits:
        job = plan.job  # its decoding resolved
        if plan.proposal is not None and (job.mode == "train" or plan.proposal.decoding != job.decoding):
            hint = f"It fits with {change_text(job, plan.proposal)}: {options_text(job, plan.proposal)}."
        budget.check(plan.footprint.total, what, hint)
    return plan.footprint


def change_text(job: "Job", proposal: "Job") -> str:
    """'bf16 + checkpointing at batch 1', 'tiled decoding, windows of 10×14×10 latent voxels, overlap 0.5'."""
    parts = []
    if proposal.setup.precision != job.setup.precision:
        parts.append(proposal.setup.precision)
    if proposal.setup.checkpointing and not job.setup.checkpointing:
        parts.append("activation checkpointing")
    if proposal.decoding != job.decoding:
        parts.append(proposal.decoding.describe())
    text = " + ".join(parts)
    if proposal.batch != job.batch:
        text = f"{text} at batch {proposal.batch}" if text else f"batch {proposal.batch}"
    return text


def options_text(job: "Job", proposal: "Job") -> str:
    """The command-line options that make ``job`` into ``proposal`` ('--precision bf16 --checkpointing …',
    '--decode tiled': synthesize then picks the window the proposal names; after a tiled decode, the window)."""
    options = []
    if proposal.setup.precision != job.setup.precision:
        options.append(f"--precision {proposal.setup.precision}")
    if proposal.setup.checkpointing and not job.setup.checkpointing:
        options.append("--checkpointing")
    if proposal.decoding != job.decoding:
        options.append("--decode tiled" if not job.decoding.tiled else
                       f"--decode-window {' '.join(map(str, proposal.decoding.window))}")
    if proposal.batch != job.batch:
        options.append(f"--batch {proposal.batch}")
        if job.mode == "train":
            options.append(f"(and --accum ×{job.batch // proposal.batch} for as many volumes per step)")
    return " ".join(options)
