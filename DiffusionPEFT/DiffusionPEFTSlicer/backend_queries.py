"""Short blocking questions to the backend's Python: a model's card, the torch build and device.

Each runs in a subprocess (the module never imports torch) and returns the JSON it printed.
"""

from __future__ import annotations

import json
import subprocess

from .job_result import JobFailed
from .launcher import BackendLauncher

QUERY_TIMEOUT_S = 120
ENVIRONMENT_PROBE = (
    "import json, torch; cuda = torch.cuda.is_available(); "
    "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'cudaAvailable': cuda, "
    "'gpu': torch.cuda.get_device_name(0) if cuda else None}))"
)


def queryJson(command: list[str], launcher: BackendLauncher) -> dict:
    """Run ``command``; its stdout must be one JSON document. Failures raise JobFailed with stderr's end."""
    try:
        completed = subprocess.run(command, env=launcher.environment, capture_output=True, text=True,
                                   timeout=QUERY_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise JobFailed(f"Could not run the backend: {error}", "Check the Python dependencies (Setup section).") from None
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.splitlines() if line.strip()]
        message = next((line for line in lines if line.startswith("error")), lines[-1] if lines else "no output")
        hint = next((line[len("hint:"):].strip() for line in lines if line.startswith("hint:")), "")
        raise JobFailed(message, hint or "See the log for details.")
    return json.loads(completed.stdout)


def modelCard(launcher: BackendLauncher, modelPath) -> dict:
    """``diffusion-peft info MODEL --json``: parameters, size, grid, intensity, provenance."""
    return queryJson(launcher.command("info", str(modelPath), "--json"), launcher)


def environmentReport(launcher: BackendLauncher) -> dict:
    """torch version, CUDA version, whether a GPU is usable and its name."""
    return queryJson([*launcher.python, "-c", ENVIRONMENT_PROBE], launcher)
