"""What a backend job reported, folded from its JSON-lines events, and the error a failed job raises."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .library_path import LIBRARY_PACKAGE

CANCELLED_EXIT_CODE = 130
STDERR_LINES_KEPT = 20
MISSING_MODULE = re.compile(r"No module named '([\w.]+)'")
SETUP_HINT = "Open Setup and press Install dependencies… (torch comes through the PyTorch extension)."


class JobFailed(RuntimeError):
    """A job ended without success: ``kind`` as in the backend's error event, a message and a hint."""

    def __init__(self, message: str, hint: str = "", kind: str = "internal"):
        super().__init__(message if not hint else f"{message}\nHint: {hint}")
        self.message = message
        self.hint = hint
        self.kind = kind


def missingPackageFailure(stderrLines: list[str]) -> tuple[str, str] | None:
    """(message, hint) when the backend's Python stopped because a dependency (torch, monai, …) is not
    installed; None for any other failure (a broken DiffusionPEFTLib itself is not a setup problem)."""
    for line in reversed(stderrLines):
        match = MISSING_MODULE.search(line)
        if match:
            package = match.group(1).split(".")[0]
            if package == LIBRARY_PACKAGE:
                return None
            return f"The Python package '{package}' is not installed.", SETUP_HINT
    return None


@dataclass
class JobResult:
    """Everything a job said: progress is forwarded live; the rest is kept here.

    ``outputs``: paths from the ``done`` event (absolute); ``metrics``: name → value;
    ``nodes``: the MRML nodes the logic created from the outputs; ``adapterPath``: a trained adapter.
    """

    folder: Path
    returnCode: int | None = None
    outputs: list[Path] = field(default_factory=list)
    artifacts: list[dict] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    error: dict | None = None
    stderrTail: list[str] = field(default_factory=list)
    nodes: list = field(default_factory=list)
    adapterPath: Path | None = None

    def artifactPath(self, role: str) -> Path | None:
        """The volume an ``artifact`` event reported in ``role`` (e.g. translation, uncertainty); None if none."""
        paths = [self.folder / a["path"] for a in self.artifacts if a.get("role") == role]
        return paths[-1] if paths else None

    @property
    def finished(self) -> bool:
        return self.returnCode is not None

    @property
    def succeeded(self) -> bool:
        return self.returnCode == 0 and self.error is None

    @property
    def cancelled(self) -> bool:
        return self.returnCode == CANCELLED_EXIT_CODE or (self.error or {}).get("kind") == "cancelled"

    def add(self, event: dict) -> None:
        """Keep what a terminal, artifact or metric event carries."""
        kind = event.get("event")
        if kind == "done":
            self.outputs = [self.folder / p for p in event.get("outputs", [])]
        elif kind == "artifact":
            self.artifacts.append(event)
        elif kind == "metric":
            self.metrics[event["name"]] = event["value"]
        elif kind == "error":
            self.error = event

    def addStderr(self, line: str) -> None:
        self.stderrTail = (self.stderrTail + [line])[-STDERR_LINES_KEPT:]

    def finish(self, returnCode: int, killed: bool) -> None:
        """Record the exit; a kill or a crash without an error event still yields one."""
        self.returnCode = CANCELLED_EXIT_CODE if killed else returnCode
        if self.error is None and killed:
            self.error = {"event": "error", "kind": "cancelled", "message": "The job was cancelled.",
                          "hint": "Start it again when you are ready."}
        elif self.error is None and returnCode != 0:
            message, hint = missingPackageFailure(self.stderrTail) or (
                f"The backend stopped with exit code {returnCode}.",
                "Its last output: " + " | ".join(self.stderrTail[-3:]) if self.stderrTail else "See the log for details.")
            self.error = {"event": "error", "kind": "internal", "message": message, "hint": hint}

    def raiseIfFailed(self) -> None:
        if not self.succeeded:
            error = self.error or {}
            raise JobFailed(error.get("message", "The job failed."), error.get("hint", ""), error.get("kind", "internal"))
