"""A cell in a fresh process: ``python -m DiffusionPEFTLib.paradigms.worker`` with the job as JSON on stdin.

Why a process per cell: its peak memory is its own (one-time allocations are not charged to whichever
cell ran first), and a crash in one cell does not end the study. The worker speaks the events protocol
(JSON lines on stdout): progress and logs are passed on to the study's sink as they come, the cell's
record arrives as a ``result`` event, a user-facing failure as an ``error`` event (raised again here as
the same DiffusionPEFTError class). Cancel: the parent creates a stop file that the worker's CancelToken
watches; the worker stops at its next safe point.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..cancel import CancelToken
from ..context import RunContext
from ..errors import DiffusionPEFTError, JobCancelled
from ..events import JsonLinesSink
from ..memory import MemoryBudget
from .cell import CellJob, run_cell

POLL_S = 0.5
STOP_GRACE_S = 120.0  # how long a worker may take to reach a safe point after a cancel before it is killed


def error_class(kind: str) -> type[DiffusionPEFTError]:
    """The DiffusionPEFTError subclass whose ``kind`` is ``kind`` (the base class for an unknown one)."""
    pending, found = [DiffusionPEFTError], {}
    while pending:
        cls = pending.pop()
        found.setdefault(cls.kind, cls)
        pending.extend(cls.__subclasses__())
    return found.get(kind, DiffusionPEFTError)


def run_in_worker(job: CellJob, context: RunContext, threads: int | None) -> dict:
    """Run ``job`` in a fresh Python process; return its record (see the module docstring)."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="diffusion-peft-worker-") as scratch:
        stop_file, log_path = Path(scratch) / "stop", Path(scratch) / "stderr.log"
        request = {"job": dataclasses.asdict(job), "device": str(context.device), "seed": context.seed,
                   "threads": threads, "budget_bytes": context.budget.limit_bytes, "stop_file": str(stop_file)}
        with open(log_path, "w") as log:
            process = subprocess.Popen([sys.executable, "-m", "DiffusionPEFTLib.paradigms.worker"], env=env,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
            try:
                process.stdin.write(json.dumps(request))
                process.stdin.close()
                result, error = relay(process, context, stop_file)
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait()
        if error is not None:
            raise error_class(error["kind"])(error["message"], hint=error.get("hint", ""))
        if result is None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the worker for cell {job.cell} ended with status {process.returncode} and no "
                               f"result; its last output:\n{tail}")
        return result


def relay(process: subprocess.Popen, context: RunContext, stop_file: Path) -> tuple[dict | None, dict | None]:
    """Pass the worker's events on until it exits; return (its result, its error event)."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    result = error = None
    stop_sent_at = None
    while True:
        if context.cancel.requested and stop_sent_at is None:
            stop_file.touch()
            stop_sent_at = time.monotonic()
        if stop_sent_at is not None and time.monotonic() - stop_sent_at > STOP_GRACE_S:
            process.kill()
        try:
            line = lines.get(timeout=POLL_S)
        except queue.Empty:
            continue
        if line is None:
            return result, error
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a library printed to stdout; not an event
        if not isinstance(event, dict):
            continue
        if event.get("event") == "result" and event.get("name") == "cell":
            result = event["value"]
        elif event.get("event") == "error":
            error = event
        elif event.get("event") != "done":
            context.events.emit(event)


def main() -> int:
    """The worker: read the request from stdin, run the cell, report through JSON-line events on stdout."""
    import torch

    request = json.loads(sys.stdin.read())
    events = JsonLinesSink()
    if request["threads"]:
        torch.set_num_threads(request["threads"])
    context = RunContext(events=events, device=torch.device(request["device"]), seed=request["seed"],
                         budget=MemoryBudget(request["budget_bytes"]), cancel=CancelToken(request["stop_file"]))
    context.cancel.install_signal_handlers()
    try:
        events.document("cell", run_cell(CellJob(**request["job"]), context))
    except DiffusionPEFTError as error:
        events.emit(error.to_event())
        return error.exit_code
    except KeyboardInterrupt:
        events.emit(JobCancelled("The cell was interrupted.").to_event())
        return JobCancelled.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
