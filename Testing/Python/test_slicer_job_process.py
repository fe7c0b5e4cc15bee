"""The job process plumbing without the backend: line delivery, exit reporting, killing a process tree,
no console windows on Windows."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import slicer_standins

slicer_standins.install()

from DiffusionPEFTSlicer import job_process  # noqa: E402
from DiffusionPEFTSlicer.job_process import STDERR, STDOUT, JobProcess  # noqa: E402
from DiffusionPEFTSlicer.job_result import JobFailed, JobResult  # noqa: E402


def isAlive(pid: int) -> bool:
    """True while ``pid`` runs; a killed zombie waiting to be reaped counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = f"/proc/{pid}/stat"
    return not (os.path.exists(stat) and open(stat).read().rsplit(")", 1)[1].split()[0] == "Z")


def pythonProcess(tmp_path, code: str, lines: list, exits: list) -> JobProcess:
    return JobProcess([sys.executable, "-c", textwrap.dedent(code)], tmp_path, None, tmp_path / "STOP",
                      onLine=lambda stream, text: lines.append((stream, text)),
                      onExit=lambda code, killed: exits.append((code, killed)))


def test_lines_arrive_in_order_on_the_polling_thread_and_exit_is_reported_once(tmp_path):
    lines, exits = [], []
    process = pythonProcess(tmp_path, """
        import json, sys
        for step in range(3):
            print(json.dumps({"event": "progress", "stage": "s", "step": step, "total": 3}), flush=True)
        print("plain text", file=sys.stderr)
        sys.exit(4)
    """, lines, exits)
    process.start()
    assert process.wait() == 4
    assert [json.loads(text)["step"] for stream, text in lines if stream == STDOUT] == [0, 1, 2]
    assert (STDERR, "plain text") in lines
    assert exits == [(4, False)] and not process.poll() and exits == [(4, False)]


@pytest.mark.skipif(os.name == "nt", reason="process groups are POSIX; Windows uses taskkill /T")
def test_cancel_writes_the_stop_file_then_kills_the_whole_tree(tmp_path):
    lines, exits = [], []
    process = pythonProcess(tmp_path, """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(child.pid, flush=True)
        time.sleep(60)
    """, lines, exits)
    process.start()
    while not lines:
        process.poll()
        time.sleep(0.02)
    grandchild = int(lines[0][1])
    started = time.monotonic()
    process.cancel(graceSeconds=0.3)
    process.wait()
    assert (tmp_path / "STOP").exists() and exits[0][1] is True and time.monotonic() - started < 10
    deadline = time.monotonic() + 5
    while isAlive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not isAlive(grandchild)


def test_a_crash_without_error_event_still_reports_message_and_hint(tmp_path):
    result = JobResult(tmp_path)
    result.addStderr("Traceback (most recent call last):")
    result.addStderr("RuntimeError: boom")
    result.finish(1, killed=False)
    with pytest.raises(JobFailed) as failure:
        result.raiseIfFailed()
    assert failure.value.kind == "internal" and "boom" in failure.value.hint


def test_events_are_folded_into_the_result(tmp_path):
    result = JobResult(tmp_path)
    for event in ({"event": "metric", "name": "psnr", "value": 31.5},
                  {"event": "artifact", "kind": "volume", "path": "out.nii", "role": "sample"},
                  {"event": "done", "outputs": ["outputs/a.nii", str(tmp_path / "b.nii")]}):
        result.add(event)
    result.finish(0, killed=False)
    assert result.succeeded and result.metrics == {"psnr": 31.5} and len(result.artifacts) == 1
    assert result.outputs == [tmp_path / "outputs" / "a.nii", tmp_path / "b.nii"]


def test_on_windows_neither_the_process_nor_its_kill_opens_a_console_window(tmp_path, monkeypatch):
    """Slicer is a GUI program: without CREATE_NO_WINDOW every backend start (and taskkill) flashes a console."""
    for name, flag in (("CREATE_NO_WINDOW", 0x08000000), ("CREATE_NEW_PROCESS_GROUP", 0x00000200)):
        monkeypatch.setattr(subprocess, name, flag, raising=False)
    monkeypatch.setattr(job_process, "WINDOWS", True)
    starts = []

    class WindowsPopen:
        """Records how the process was started; it prints nothing and never exits by itself."""

        pid, returncode = 4321, None

        def __init__(self, argv, **options):
            starts.append(options)
            self.stdout, self.stderr = io.StringIO(), io.StringIO()

        def poll(self):
            return None

        def wait(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", WindowsPopen)
    monkeypatch.setattr(subprocess, "run", lambda argv, **options: starts.append(options))
    process = JobProcess(["backend"], tmp_path, None, None, onLine=lambda *a: None, onExit=lambda *a: None)
    process.start()
    process.kill()
    assert len(starts) == 2 and all(options["creationflags"] & subprocess.CREATE_NO_WINDOW for options in starts)
