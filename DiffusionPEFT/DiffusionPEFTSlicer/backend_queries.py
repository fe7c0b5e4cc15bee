"""Short questions to the backend's Python: a model's card, the torch build and device, an adapter's plan, a
fine-tune's memory plan.

Each runs in a subprocess (the module never imports torch), in the background: a
:class:`BackgroundQuery` is started, polled from a timer, and answers with the JSON it printed.
Nothing here waits for a process, so the panel stays responsive (``info`` takes 6–15 s in Slicer).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from .job_process import STDOUT, JobProcess
from .job_result import JobFailed, missingPackageFailure
from .launcher import BackendLauncher

QUERY_TIMEOUT_S = 120
NOT_STARTED_HINT = "Check the Python dependencies (Setup section)."
SELECTION_METHODS = ("norm-bias", "full", "controlled")  # train a fixed selection of base parameters
ENVIRONMENT_PROBE = (
    "import json, torch; cuda = torch.cuda.is_available(); "
    "print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'cudaAvailable': cuda, "
    "'gpu': torch.cuda.get_device_name(0) if cuda else None}))"
)

Answer = Callable[[dict], None]
Failure = Callable[[JobFailed], None]


def adapterOptions(method: str, rank: int, targets: str) -> dict:
    """``finetune``'s adapter options: rank and targets only for the methods that wrap layers."""
    if method in SELECTION_METHODS:
        return {"method": method}
    return {"method": method, "rank": rank, "targets": targets}


def answerOf(returnCode: int, stdout: str, stderrLines: list[str]) -> dict:
    """The JSON document a finished query printed; JobFailed (its error line and hint) when it failed."""
    if returnCode != 0:
        missing = missingPackageFailure(stderrLines)
        if missing:
            raise JobFailed(*missing)
        lines = [line for line in stderrLines if line.strip()]
        message = next((line for line in lines if line.startswith("error")), lines[-1] if lines else "no output")
        hint = next((line[len("hint:"):].strip() for line in lines if line.startswith("hint:")), "")
        raise JobFailed(message, hint or "See the log for details.")
    try:
        return json.loads(stdout)
    except ValueError:
        raise JobFailed("The backend's answer is not JSON.", "See the log for details.") from None


class BackgroundQuery:
    """A query that does not block: :meth:`start`, then :meth:`poll` from a timer until it returns False.

    At the end ``onAnswer(dict)`` or ``onFailure(JobFailed)`` is called once, on the polling thread.
    :meth:`cancel` kills the process and delivers nothing (a newer query supersedes this one).
    """

    def __init__(self, command: list[str], launcher: BackendLauncher, onAnswer: Answer, onFailure: Failure,
                 timeoutSeconds: float = QUERY_TIMEOUT_S):
        self._onAnswer = onAnswer
        self._onFailure = onFailure
        self._timeoutSeconds = timeoutSeconds
        self._cancelled = False
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self._deadline: float | None = None
        self._process = JobProcess(command, Path.cwd(), launcher.environment, None,
                                   onLine=self._keepLine, onExit=self._answer)

    def start(self) -> "BackgroundQuery":
        try:
            self._process.start()
        except OSError as error:
            raise JobFailed(f"Could not run the backend: {error}", NOT_STARTED_HINT) from None
        self._deadline = time.monotonic() + self._timeoutSeconds
        return self

    def poll(self) -> bool:
        """Deliver the answer once the process has ended; True while it runs."""
        if self._cancelled:
            return False
        if self._process.running and time.monotonic() > self._deadline:
            self._process.kill()
        return self._process.poll()

    def cancel(self) -> None:
        self._cancelled = True
        self._process.cancel(graceSeconds=0)

    def _keepLine(self, stream: str, text: str) -> None:
        (self._stdout if stream == STDOUT else self._stderr).append(text)

    def _answer(self, returnCode: int, killed: bool) -> None:
        if killed:
            message = f"The backend did not answer within {self._timeoutSeconds:g} s."
            self._onFailure(JobFailed(message, NOT_STARTED_HINT))
            return
        try:
            answer = answerOf(returnCode, "\n".join(self._stdout), self._stderr)
        except JobFailed as failure:
            self._onFailure(failure)
            return
        self._onAnswer(answer)


def modelCard(launcher: BackendLauncher, modelPath, onAnswer: Answer, onFailure: Failure) -> BackgroundQuery:
    """Start ``diffusion-peft info MODEL --json``: parameters, size, grid, intensity, provenance."""
    return BackgroundQuery(launcher.command("info", str(modelPath), "--json"), launcher, onAnswer, onFailure).start()


def environmentReport(launcher: BackendLauncher, onAnswer: Answer, onFailure: Failure) -> BackgroundQuery:
    """Start the probe of the backend's torch: version, CUDA version, whether a GPU is usable and its name."""
    return BackgroundQuery([*launcher.python, "-c", ENVIRONMENT_PROBE], launcher, onAnswer, onFailure).start()


def adapterPlan(launcher: BackendLauncher, modelPath, method: str, rank: int, targets: str,
                onAnswer: Answer, onFailure: Failure) -> BackgroundQuery:
    """Start ``diffusion-peft finetune MODEL --dry-run --json`` (needs model.json only, no weights).

    The answer is the plan: method, options, targets, layers and counts {adapter, extra, base, total, share}.
    """
    arguments = adapterArguments(method, rank, targets)
    command = launcher.command("finetune", str(modelPath), "--dry-run", "--json", *arguments)
    return BackgroundQuery(command, launcher, onAnswer, onFailure).start()


def memoryPlan(launcher: BackendLauncher, modelPath, method: str, rank: int, targets: str, batch: int, precision: str,
               checkpointing: bool, device: str, onAnswer: Answer, onFailure: Failure) -> BackgroundQuery:
    """Start ``diffusion-peft finetune MODEL --plan --json`` on ``device`` (its memory: 80 % of the GPU's or the
    RAM; model.json only, one traced step, seconds).

    The answer is the plan: fits, predicted {…, total} and budget_bytes, where ("on this GPU"), the setup with the
    precision resolved for the device, and the proposal {batch, precision, checkpointing, predicted} that fits
    when the job does not (None if nothing does).
    """
    command = launcher.command("finetune", str(modelPath), "--plan", "--json", *adapterArguments(method, rank, targets),
                               "--batch", str(batch), "--precision", precision,
                               *(["--checkpointing"] if checkpointing else []), "--device", device)
    return BackgroundQuery(command, launcher, onAnswer, onFailure).start()


def adapterArguments(method: str, rank: int, targets: str) -> list[str]:
    """:func:`adapterOptions` as ``finetune`` arguments."""
    return [item for key, value in adapterOptions(method, rank, targets).items() for item in (f"--{key}", str(value))]
