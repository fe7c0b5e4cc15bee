"""A backend subprocess whose output lines reach the caller's thread, and whose cancel really stops it.

Two reader threads queue stdout and stderr lines; :meth:`JobProcess.poll` hands them to the
callback on the thread that calls it (MRML and Qt may only be touched from the main thread).
Cancel first asks politely (the stop file, where the process has one: the job saves and exits with
130), then kills the whole process tree after a grace period (PythonSlicer is a launcher; torch may
start workers).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

STDOUT = "stdout"
STDERR = "stderr"
WINDOWS = os.name == "nt"
TASKKILL_TIMEOUT_S = 5  # taskkill normally returns at once; never let it hold the GUI longer


class JobProcess:
    """Run ``argv`` in ``cwd``; ``onLine(stream, text)`` gets each line, ``onExit(code, killed)`` the end."""

    def __init__(self, argv: list[str], cwd: Path, environment: dict[str, str] | None, stopFile: Path | None,
                 onLine: Callable[[str, str], None], onExit: Callable[[int, bool], None]):
        self.argv = argv
        self.cwd = Path(cwd)
        self.environment = environment
        self.stopFile = Path(stopFile) if stopFile is not None else None
        self.onLine = onLine
        self.onExit = onExit
        self._lines: queue.Queue = queue.Queue()
        self._readers: list[threading.Thread] = []
        self._process: subprocess.Popen | None = None
        self._killDeadline: float | None = None
        self._killed = False
        self._exited = False

    def start(self) -> None:
        self._process = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.environment, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
            **_ownProcessGroup(),
        )
        for stream, pipe in ((STDOUT, self._process.stdout), (STDERR, self._process.stderr)):
            reader = threading.Thread(target=self._read, args=(stream, pipe), daemon=True)
            reader.start()
            self._readers.append(reader)

    @property
    def running(self) -> bool:
        return self._process is not None and not self._exited

    def poll(self) -> bool:
        """Deliver waiting lines, enforce a pending kill, report the exit once; True while running."""
        if not self.running:
            return False
        if self._killDeadline is not None and time.monotonic() > self._killDeadline and self._process.poll() is None:
            self.kill()
        self._deliverLines()
        if self._process.poll() is None or any(reader.is_alive() for reader in self._readers):
            return True
        self._deliverLines()
        self._exited = True
        self.onExit(self._process.returncode, self._killed)
        return False

    def wait(self, idle: Callable[[], None] | None = None, interval: float = 0.05) -> int:
        """Block until the process has exited and every line was delivered; ``idle`` runs between polls."""
        while self.poll():
            if idle is not None:
                idle()
            time.sleep(interval)
        return self._process.returncode

    def cancel(self, graceSeconds: float = 10.0) -> None:
        """Ask the job to stop (stop file, if any); kill the process tree if it still runs after ``graceSeconds``
        (at once when it is 0; otherwise :meth:`poll` or :meth:`wait` enforce the deadline)."""
        if not self.running:
            return
        if self.stopFile is not None:
            self.stopFile.touch()
        if graceSeconds <= 0:
            self.kill()
            return
        deadline = time.monotonic() + graceSeconds
        self._killDeadline = deadline if self._killDeadline is None else min(deadline, self._killDeadline)

    def kill(self) -> None:
        """Kill the process and every process it started (its process group / tree)."""
        if self._process is None:
            return
        self._killed = self._killed or self._process.poll() is None
        if WINDOWS:
            try:  # bounded: this runs from the panel's poll timer, on the GUI thread
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(self._process.pid)], capture_output=True,
                               creationflags=subprocess.CREATE_NO_WINDOW, timeout=TASKKILL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
        else:
            try:
                os.killpg(self._process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # the whole group has already exited
        self._process.wait()

    def _read(self, stream: str, pipe) -> None:
        for line in pipe:
            self._lines.put((stream, line.rstrip("\r\n")))
        pipe.close()

    def _deliverLines(self) -> None:
        while True:
            try:
                stream, text = self._lines.get_nowait()
            except queue.Empty:
                return
            self.onLine(stream, text)


def _ownProcessGroup() -> dict:
    """Popen arguments that give the job its own process group (so the whole tree can be killed) and,
    on Windows, no console window."""
    if WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}
