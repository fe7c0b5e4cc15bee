"""Safe file output: check a destination before work starts, write under a temporary name, rename.

A cancelled or crashed job therefore never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import InputError


def ensure_writable(path: str | os.PathLike) -> Path:
    """Create the parent folder of ``path`` if needed and prove it accepts files.

    Raises InputError before any work is done when the folder cannot be written.
    """
    path = Path(path)
    parent = path.parent if path.parent != Path("") else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise InputError(
            f"Cannot write to the output folder {parent}: {exc.strerror or exc}.",
            hint="Choose an output path in a folder you can write to.",
        ) from None
    return path


def partial_name(path: Path) -> Path:
    """Temporary sibling of ``path`` that keeps its full extension (``.nii.gz`` stays last)."""
    suffix = "".join(path.suffixes)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.partial-{os.getpid()}{suffix}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; rename it onto ``path`` only if the block succeeds."""
    final = ensure_writable(path)
    tmp = partial_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)
