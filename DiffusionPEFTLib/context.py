"""What every job receives: where to report, which device, which seed, memory budget, cancel token."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch

from .cancel import CancelToken
from .errors import InputError
from .events import EventSink, ListSink
from .memory import MemoryBudget


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU. Asking for CUDA without one is an InputError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was requested but no CUDA GPU is available.", hint="Use --device cpu or --device auto.")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"Unknown device '{name}'.", hint="Use auto, cpu, cuda or cuda:N.")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (jobs also use explicit generators derived from the seed)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class RunContext:
    """Shared job settings. ``device`` is resolved; ``budget`` bounds the job's memory."""

    events: EventSink = field(default_factory=ListSink)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    budget: MemoryBudget = field(default_factory=MemoryBudget.default)
    cancel: CancelToken = field(default_factory=CancelToken)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the job seed (+ ``offset`` for independent streams)."""
        return torch.Generator().manual_seed(self.seed + offset)
