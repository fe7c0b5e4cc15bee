"""The JSON-lines event protocol (DESIGN.md §3) and its two renderings.

Every job reports through an :class:`EventSink`. ``JsonLinesSink`` writes one JSON object per
line (what the Slicer module and the tests read); ``HumanSink`` draws a tqdm progress bar and
prints logs to stderr; ``ListSink`` keeps events in memory for Python callers and tests.
Events: progress, log, metric, artifact, result, done, error. ``result`` carries a document a command
was asked for with ``--json`` (a model card, an adapter plan): with ``--events json`` it is one event
line like every other, so the stream stays one JSON object per line; at a terminal the document
alone is printed on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any


class EventSink:
    """Base sink: subclasses implement :meth:`emit`; helpers build the event dicts."""

    def __init__(self):
        self._stage_started: dict[str, float] = {}

    def emit(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def progress(self, stage: str, step: int, total: int, **values: Any) -> None:
        """Report ``step`` of ``total`` in ``stage``; adds ``eta_s`` from the stage's pace."""
        now = time.monotonic()
        started = self._stage_started.setdefault(stage, now)
        if step <= 0:
            self._stage_started[stage] = now
            started = now
        event = {"event": "progress", "stage": stage, "step": int(step), "total": int(total)}
        event.update({k: _plain(v) for k, v in values.items()})
        if step > 0 and total > 0:
            event["eta_s"] = round((now - started) / step * (total - step), 1)
        self.emit(event)

    def log(self, message: str, level: str = "info") -> None:
        self.emit({"event": "log", "level": level, "message": message})

    def metric(self, name: str, value: float, **context: Any) -> None:
        self.emit({"event": "metric", "name": name, "value": _plain(value), **context})

    def artifact(self, kind: str, path: str, role: str) -> None:
        self.emit({"event": "artifact", "kind": kind, "path": str(path), "role": role})

    def document(self, name: str, value: Any) -> None:
        """A JSON document the user asked for (``--json``): a ``result`` event."""
        self.emit({"event": "result", "name": name, "value": value})

    def done(self, outputs: list[str]) -> None:
        self.emit({"event": "done", "outputs": [str(p) for p in outputs]})

    def close(self) -> None:
        """Finish any open display (progress bars)."""


class JsonLinesSink(EventSink):
    """One JSON object per line, flushed at once so a reading process sees it live."""

    def __init__(self, stream: IO[str] | None = None):
        super().__init__()
        self.stream = stream or sys.stdout

    def emit(self, event: dict[str, Any]) -> None:
        self.stream.write(json.dumps(event) + "\n")
        self.stream.flush()


class ListSink(EventSink):
    """Keeps every event in ``self.events`` (Python API and tests)."""

    def __init__(self):
        super().__init__()
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


class HumanSink(EventSink):
    """Progress bars (tqdm) and plain log lines on stderr, for people at a terminal."""

    def __init__(self, stream: IO[str] | None = None):
        super().__init__()
        self.stream = stream or sys.stderr
        self._bar = None
        self._bar_stage = None

    def document(self, name: str, value: Any) -> None:
        """Print the document alone on stdout (what ``--json`` promises at a terminal and to scripts)."""
        self.close()
        print(json.dumps(value, indent=2), file=sys.stdout, flush=True)

    def emit(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "progress":
            self._draw(event)
            return
        self.close()
        if kind == "log":
            print(f"[{event['level']}] {event['message']}", file=self.stream)
        elif kind == "metric":
            print(f"{event['name']}: {event['value']}", file=self.stream)
        elif kind == "artifact":
            print(f"wrote {event['role']}: {event['path']}", file=self.stream)
        elif kind == "done":
            print("done", file=self.stream)
        elif kind == "error":
            print(f"error ({event['kind']}): {event['message']}", file=self.stream)
            if event.get("hint"):
                print(f"hint: {event['hint']}", file=self.stream)

    def _draw(self, event: dict[str, Any]) -> None:
        from tqdm import tqdm

        if self._bar is None or self._bar_stage != event["stage"]:
            self.close()
            self._bar = tqdm(total=event["total"], desc=event["stage"], file=self.stream, leave=True)
            self._bar_stage = event["stage"]
        self._bar.n = event["step"]
        shown = {k: v for k, v in event.items() if k not in ("event", "stage", "step", "total", "eta_s")}
        if shown:
            self._bar.set_postfix(shown, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._bar_stage = None


def _plain(value: Any) -> Any:
    """Turn numpy/torch scalars into JSON numbers; round floats to 6 significant digits."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value
