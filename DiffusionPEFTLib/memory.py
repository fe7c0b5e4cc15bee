"""Memory budget: refuse work that would not fit before it starts, with a hint on what to shrink.

The budget (bytes) comes from ``--memory-budget-gb``, else ``DIFFUSIONPEFT_MEMORY_GB``, else
80 % of physical RAM (CPU) or of the GPU's memory (CUDA).
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
