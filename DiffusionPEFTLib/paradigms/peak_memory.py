"""Peak memory of one phase of this process (a fine-tuning run), above what was resident when it began.

- CUDA: the allocator's statistics: ``max_memory_allocated`` after the phase − ``memory_allocated`` at
  its start (tensors only; the caching allocator's reserve and the CUDA context are not counted).
- CPU on Linux: freed heap is first returned to the OS (glibc ``malloc_trim``), then the kernel's
  high-water mark VmHWM is reset to the resident set (``/proc/self/clear_refs`` = 5); peak = VmHWM
  after the phase − VmRSS at its start: activations, gradients, optimizer state, the adapter.
- Elsewhere (or where the kernel refuses the reset): not measured (None).

One-time allocations (thread pools, oneDNN kernel caches) are charged to the first phase of a process,
which is why the study runs every cell in a fresh process by default.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import torch

MB = 1e6


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


class PeakMemory:
    """``start()`` before the phase, ``peak_mb()`` after it; ``source`` says how it was measured."""

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.source = "cuda allocator" if self.device.type == "cuda" else "VmHWM − VmRSS (Linux)"
        self._start: int | None = None

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return
        try:
            libc = ctypes.util.find_library("c")
            if libc and hasattr(ctypes.CDLL(libc), "malloc_trim"):
                ctypes.CDLL(libc).malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")
            rss = _status_bytes("VmRSS")
            self._start = rss if _status_bytes("VmHWM") <= rss + MB else None  # None: the kernel did not reset it
        except OSError:
            self._start = None
        if self._start is None:
            self.source = "not measured (no /proc/self/clear_refs)"

    def peak_mb(self) -> float | None:
        if self._start is None:
            return None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return (torch.cuda.max_memory_allocated(self.device) - self._start) / MB
        return (_status_bytes("VmHWM") - self._start) / MB
