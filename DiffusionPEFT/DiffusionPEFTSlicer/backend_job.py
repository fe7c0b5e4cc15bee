"""One backend job: its folder (job.json, inputs, outputs: an audit trail), its process and its result.

``python -m DiffusionPEFTLib run job.json --events json --stop-file STOP`` runs with the job folder as
working directory. Events are folded into a :class:`JobResult` and forwarded to the callbacks:
``progressCallback(event)`` for progress, ``logCallback(text)`` for log lines and stderr text,
``completionCallback(result)`` once at the end, after ``finish(result)`` built the scene outputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable

from .job_process import STDERR, JobProcess
from .job_result import JobResult
from .launcher import BackendLauncher

STOP_FILE_NAME = "STOP"


class BackendJob:
    """Create with a prepared job folder, then :meth:`start`; poll it from a timer or :meth:`wait`."""

    def __init__(self, folder: Path, launcher: BackendLauncher, finish: Callable[[JobResult], None] | None = None,
                 progressCallback: Callable[[dict], None] | None = None,
                 logCallback: Callable[[str], None] | None = None,
                 completionCallback: Callable[[JobResult], None] | None = None):
        self.folder = Path(folder)
        self.result = JobResult(self.folder)
        self._finish = finish
        self._progressCallback = progressCallback
        self._logCallback = logCallback
        self._completionCallback = completionCallback
        argv = launcher.command("run", str(self.folder / "job.json"), "--events", "json",
                                "--stop-file", str(self.folder / STOP_FILE_NAME))
        self.process = JobProcess(argv, self.folder, launcher.environment, self.folder / STOP_FILE_NAME,
                                  onLine=self._onLine, onExit=self._onExit)

    def start(self) -> "BackendJob":
        self._log(f"Job folder: {self.folder}")
        self.process.start()
        return self

    def poll(self) -> bool:
        """For a GUI timer: deliver pending events; False once the job has finished."""
        return self.process.poll()

    def wait(self, idle: Callable[[], None] | None = None) -> JobResult:
        """Block until the end; raise :class:`JobFailed` (message + hint) unless the job succeeded."""
        self.process.wait(idle)
        self.result.raiseIfFailed()
        return self.result

    def cancel(self, graceSeconds: float = 10.0) -> None:
        self.process.cancel(graceSeconds)

    @property
    def running(self) -> bool:
        return self.process.running

    def _onLine(self, stream: str, text: str) -> None:
        event = None if stream == STDERR else _parseEvent(text)
        if event is None:
            if stream == STDERR:
                self.result.addStderr(text)
            self._log(text)
            return
        self.result.add(event)
        kind = event.get("event")
        if kind == "progress" and self._progressCallback:
            self._progressCallback(event)
        elif kind == "log":
            self._log(f"[{event.get('level', 'info')}] {event.get('message', '')}")
        elif kind == "metric":
            self._log(f"{event['name']} = {event['value']}")
        elif kind == "error":
            self._log(f"Error ({event.get('kind')}): {event.get('message')} {event.get('hint', '')}".rstrip())

    def _onExit(self, returnCode: int, killed: bool) -> None:
        self.result.finish(returnCode, killed)
        if self.result.succeeded and self._finish is not None:
            try:
                self._finish(self.result)
            except Exception as error:  # outputs unreadable: report like a backend error, keep the scene usable
                logging.exception("Loading the job outputs failed")
                self.result.error = {"event": "error", "kind": "internal", "message": f"Could not load the outputs: {error}",
                                     "hint": f"The files are in {self.folder}."}
        self._log("Job finished." if self.result.succeeded else "Job cancelled." if self.result.cancelled
                  else "Job failed.")
        if self._completionCallback is not None:
            self._completionCallback(self.result)

    def _log(self, text: str) -> None:
        if self._logCallback is not None:
            self._logCallback(text)
        else:
            logging.info(text)


def _parseEvent(text: str) -> dict | None:
    """The event a stdout line holds, or None for plain text."""
    try:
        event = json.loads(text)
    except ValueError:
        return None
    return event if isinstance(event, dict) and "event" in event else None
