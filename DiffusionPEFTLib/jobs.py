"""Job files: the spec the Slicer module writes into a job folder and ``diffusion-peft run`` executes.

job.json = {"version": 1, "command": "synthesize",
            "args": {"model": "model/", "out": "outputs/sample.nii.gz", "n": 1},
            "options": {"device": "auto", "seed": 0}}

``args`` and ``options`` keys are the command's option names (dashes or underscores; positional
arguments by their names too); values are strings, numbers, booleans, null or lists of those.
Relative paths are taken relative to the job file's folder. The file is checked against
:data:`JOB_SCHEMA` before anything runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InputError
from .validation import validate_document

JOB_VERSION = 1
_SCALAR = {"type": ["string", "number", "boolean", "null"]}
_VALUES = {"type": "object", "additionalProperties": {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]},
           "description": "an object of option names to values (strings, numbers, true/false or lists) is needed"}
JOB_SCHEMA = {
    "type": "object",
    "required": ["version", "command", "args"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": JOB_VERSION, "description": f"this version reads version {JOB_VERSION}"},
        "command": {"type": "string", "description": "a command name (a string) is needed"},
        "args": _VALUES,
        "options": _VALUES,
    },
}
JOB_HINT = 'A job file is {"version": 1, "command": "synthesize", "args": {...}, "options": {...}}.'


def load_job(path: str | Path) -> dict:
    """Read and check a job file; InputError says what is wrong with it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"Cannot read job file {path}: {exc.strerror or exc}.", hint="Give a readable job.json.") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"Job file {path.name} is not UTF-8 text (byte {exc.start}).",
                         hint="Save job.json as UTF-8 (JSON files always are).") from None
    try:
        job = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"Job file {path.name} is not valid JSON ({exc.msg}, line {exc.lineno}).",
                         hint=JOB_HINT) from None
    validate_document(job, JOB_SCHEMA, path.name, InputError, JOB_HINT)
    return job


def job_to_argv(job: dict, parser) -> list[str]:
    """Translate a job spec into the argv the command line would take for the same job."""
    command = job.get("command")
    commands = next(a for a in parser._actions if a.dest == "command").choices
    if command not in commands or command == "run":
        raise InputError(f"The job file names an unknown command '{command}'.",
                         hint=f"Use one of: {', '.join(c for c in commands if c != 'run')}.")
    values = {k.replace("-", "_"): v for k, v in {**job.get("options", {}), **job["args"]}.items()}
    argv = [command]
    for action in commands[command]._actions:
        if action.dest not in values or action.dest == "help":
            continue
        value = values.pop(action.dest)
        items = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        if value is None:
            continue
        if not action.option_strings:
            argv.extend(items)
        elif action.nargs == 0:
            if value is not True and value is not False:
                raise InputError(f"The job file gives '{action.dest}' the value {value!r}; it is a switch.",
                                 hint=f'Write "{action.dest}": true or false.')
            if value:
                argv.append(action.option_strings[-1])
        else:
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
