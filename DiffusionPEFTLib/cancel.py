"""Cooperative cancellation: SIGINT/SIGTERM or a stop file ask a running job to save and stop."""

from __future__ import annotations

import signal
from pathlib import Path

from .errors import JobCancelled


class CancelToken:
    """Checked by long loops between steps. ``stop_file``: a path whose existence means "stop"."""

    def __init__(self, stop_file: str | Path | None = None):
        self.stop_file = Path(stop_file) if stop_file else None
        self._flag = False

    def cancel(self) -> None:
        self._flag = True

    @property
    def requested(self) -> bool:
        return self._flag or (self.stop_file is not None and self.stop_file.exists())

    def raise_if_requested(self, what: str = "The job", hint: str = "Run the same command again to start over.") -> None:
        """Raise JobCancelled if a stop was requested; ``hint`` says how to continue."""
        if self.requested:
            raise JobCancelled(f"{what} was cancelled.", hint=hint)

    def install_signal_handlers(self) -> dict:
        """Turn SIGINT and SIGTERM into a cancel request (the loop then stops at a safe point).

        Returns the previous handlers for :func:`restore_signal_handlers`."""
        return {sig: signal.signal(sig, lambda *_: self.cancel()) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore_signal_handlers(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
