"""glibc allocator settings for a benchmark's worker process, so a measured resident peak is the tensors' peak.

``default`` is glibc as a user runs it: its dynamic mmap threshold (up to 32 MiB) keeps freed tensors below it
in the heap, where fragmentation adds to the resident peak (VmHWM). ``fixed`` sets the threshold to 128 KiB
(``MALLOC_MMAP_THRESHOLD_``, read when the process starts), so every tensor above that is returned to the
system when freed and the resident peak follows the live tensors (docs/memory.md measures the difference).
"""

from __future__ import annotations

import os

ALLOCATORS = ("default", "fixed")
FIXED_MMAP_THRESHOLD = 128 * 1024
"""bytes: glibc's mmap threshold under ``fixed``"""


def allocator_environment(allocator: str, threads: int = 1) -> dict[str, str]:
    """This process's environment for a worker with ``allocator`` and ``threads`` OpenMP/MKL threads."""
    if allocator not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {ALLOCATORS}, got {allocator!r}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if allocator == "fixed":
        env["MALLOC_MMAP_THRESHOLD_"] = str(FIXED_MMAP_THRESHOLD)
    return env
