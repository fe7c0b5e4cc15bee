"""Job files: the spec the Slicer module writes into a job folder and ``diffusion-peft run`` executes.

job.json = {"version": 1, "command": "synthesize",
            "args": {"model": "model/", "out": "outputs/sample.nii.gz", "n": 1},
            "options": {"device": "auto", "seed": 0}}

``args`` and ``options`` keys are the command's option names (dashes or underscores; positional
arguments by their names too). Relative paths are taken relative to the job file's folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError

JOB_VERSION = 1


def load_job(path: str | Path) -> dict:
    path = Path(path)
    try:
        job = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read job file {path}: {exc}", hint="Give a readable job.json.") from None
    if not isinstance(job, dict) or job.get("version") != JOB_VERSION:
        raise InputError(f"{path} is not a version-{JOB_VERSION} job file.",
                         hint='A job file needs "version": 1, "command" and "args".')
    return job


def job_to_argv(job: dict, parser) -> list[str]:
    """Translate a job spec into the argv the command line would take for the same job."""
    command = job.get("command")
    commands = next(a for a in parser._actions if a.dest == "command").choices
    if command not in commands or command == "run":
        raise InputError(f"The job file names an unknown command '{command}'.",
                         hint=f"Use one of: {', '.join(c for c in commands if c != 'run')}.")
    values = {k.replace("-", "_"): v for k, v in {**job.get("options", {}), **job.get("args", {})}.items()}
    argv = [command]
    for action in commands[command]._actions:
        if action.dest not in values:
            continue
        value = values.pop(action.dest)
        items = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        if not action.option_strings:
            argv.extend(items)
        elif action.nargs == 0:
            if value:
                argv.append(action.option_strings[-1])
        elif value is not None:
            argv.extend([action.option_strings[-1], *items])
    if values:
        raise InputError(f"The job file has options that '{command}' does not take: {', '.join(sorted(values))}.",
                         hint=f"See 'diffusion-peft {command} --help'.")
    return argv


def write_job(folder: str | Path, command: str, args: dict, options: dict | None = None) -> Path:
    """Write ``folder/job.json`` (used by the Slicer logic and batch scripts)."""
    from .files import write_text_atomic

    spec = {"version": JOB_VERSION, "command": command, "args": args, "options": options or {}}
    return write_text_atomic(Path(folder) / "job.json", json.dumps(spec, indent=2))
