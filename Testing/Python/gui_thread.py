"""For the Slicer tests: a blocking process call (``subprocess.run`` and kin) from the main thread, Slicer's
GUI thread, fails the test; the module must start processes and poll them instead."""

from __future__ import annotations

import subprocess
import threading

BLOCKING_CALLS = ("run", "call", "check_call", "check_output")


def refuseBlockingProcessCalls(monkeypatch) -> None:
    """Until ``monkeypatch`` is undone, the blocking calls raise AssertionError on the main thread."""
    def refuse(*arguments, **options):
        if threading.current_thread() is threading.main_thread():
            raise AssertionError(f"a process ran synchronously on the GUI thread: {arguments}")

    for name in BLOCKING_CALLS:
        monkeypatch.setattr(subprocess, name, refuse)
