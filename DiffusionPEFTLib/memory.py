"""Memory budget and planner: refuse work that would not fit before it starts, and say which settings fit.

The budget (bytes) comes from ``--memory-budget-gb``, else ``DIFFUSIONPEFT_MEMORY_GB``, else
80 % of physical RAM (CPU) or of the GPU's memory (CUDA); the other 20 % is for what a prediction leaves
out (the CUDA context, cuDNN workspaces, allocator fragmentation; see footprint.py).

The planner (``--plan``, and every job's check before it starts) predicts a job's peak with footprint.py;
when it exceeds the budget it tries activation checkpointing, bf16, both, then smaller batches, and names the
first that fits: "fits with bf16 + activation checkpointing at batch 1".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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
            settings = " with bf16 and activation checkpointing" if self.job.mode == "train" else ""
            return f"Does not fit {room}, not even at batch 1{settings}: use a smaller grid or more memory."
        return (f"Does not fit {room}; fits with {change_text(self.job, self.proposal)} "
                f"({self.proposal_footprint.total / GIB:.2f} GiB): {options_text(self.job, self.proposal)}.")

    def format(self) -> str:
        job = self.job
        what = {"train": f"Training ({job.setup.describe()})", "sample": "Sampling", "guide": "Guided sampling"}[job.mode]
        return (f"{what} at batch {job.batch} on {job.device}: about {self.footprint.format()}. {self.advice()}")

    def as_dict(self) -> dict:
        return {"mode": self.job.mode, "batch": self.job.batch, "device": self.job.device,
                "setup": {"method": self.job.setup.method, "precision": self.job.setup.precision,
                          "checkpointing": self.job.setup.checkpointing},
                "predicted": self.footprint.as_dict(), "budget_bytes": self.budget.limit_bytes, "where": self.where,
                "fits": self.fits, "advice": self.advice(),
                "proposal": None if self.proposal is None else {
                    "batch": self.proposal.batch, "precision": self.proposal.setup.precision,
                    "checkpointing": self.proposal.setup.checkpointing,
                    "options": options_text(self.job, self.proposal), "predicted": self.proposal_footprint.as_dict()}}


def plan_memory(job: "Job", budget: MemoryBudget, where: str = "on this machine") -> MemoryPlan:
    """Predict ``job``'s peak (footprint.py); when it exceeds ``budget``, try in turn: activation checkpointing,
    bf16, both, then halving the batch with both — the first that fits is the proposal."""
    from .footprint import footprint

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
    if job.mode != "train":
        settings = []
    candidates = [with_changes(job, **changes) for changes in settings]
    batch = job.batch
    while batch > 1:
        batch //= 2
        candidates.append(with_changes(job, batch, **(settings[-1] if settings else {})))
    seen, unique = set(), []
    for candidate in candidates:
        if candidate.key() not in seen and candidate.key() != job.key():
            seen.add(candidate.key())
            unique.append(candidate)
    return unique


def check_job(budget: MemoryBudget, job: "Job", what: str, hint: str, events=None) -> "Footprint | None":
    """Raise MemoryBudgetError when ``job`` does not fit ``budget`` (the hint then names the settings that fit,
    if any); return its footprint. Should the trace itself fail (an operation fake tensors cannot run), the job
    starts unchecked, with a warning on ``events``, rather than not at all."""
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
        if plan.proposal is not None and job.mode == "train":  # the training commands' options
            hint = f"It fits with {change_text(job, plan.proposal)}: {options_text(job, plan.proposal)}."
        budget.check(plan.footprint.total, what, hint)
    return plan.footprint


def change_text(job: "Job", proposal: "Job") -> str:
    """'bf16 + checkpointing at batch 1'."""
    parts = []
    if proposal.setup.precision != job.setup.precision:
        parts.append(proposal.setup.precision)
    if proposal.setup.checkpointing and not job.setup.checkpointing:
        parts.append("activation checkpointing")
    text = " + ".join(parts)
    if proposal.batch != job.batch:
        text = f"{text} at batch {proposal.batch}" if text else f"batch {proposal.batch}"
    return text


def options_text(job: "Job", proposal: "Job") -> str:
    """The command-line options that make ``job`` into ``proposal`` ('--precision bf16 --checkpointing …')."""
    options = []
    if proposal.setup.precision != job.setup.precision:
        options.append(f"--precision {proposal.setup.precision}")
    if proposal.setup.checkpointing and not job.setup.checkpointing:
        options.append("--checkpointing")
    if proposal.batch != job.batch:
        options.append(f"--batch {proposal.batch}")
        if job.mode == "train":
            options.append(f"(and --accum ×{job.batch // proposal.batch} for as many volumes per step)")
    return " ".join(options)
