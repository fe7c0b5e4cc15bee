"""A small, slow stand-in for the backend's Python, for the Widget and Logic tests (the real one needs seconds
to import torch; this one takes ``SLOW_BACKEND_DELAY`` seconds on purpose and uses no CPU meanwhile).

It is started as the launcher's interpreter: ``slow_backend.py -m DiffusionPEFTLib <command> …`` or
``slow_backend.py -c <probe>``, and speaks the backend's protocol: ``info --json`` prints a card,
``finetune --dry-run --json`` an adapter plan, ``finetune --plan --json`` a memory plan (see :func:`memoryPlan`;
with ``SLOW_BACKEND_REAL_PLAN=1`` the real backend answers it), the probe an environment, and ``run job.json
--events json --stop-file STOP`` emits JSON-line events (a fine-tune, a translation or a reconstruction steps
every ``SLOW_BACKEND_STEP_S`` seconds and, when the stop file appears, stops and exits 130 like the real backend;
a fine-tune saves a checkpoint first). A model.json may say ``"task": "translation"`` (with ``"translation":
{"source": …, "target": …}``) or ``"latent"``, list ``"condition_classes"`` and hold a ``"latent"`` entry (an
imported bundle's, with its conditions): the card tells them, and a job of another task fails as the backend's
does (a synthesis model synthesizes and reconstructs, a latent model synthesizes).
``SLOW_BACKEND_NO_TORCH=1`` fails at import time as a Python without torch does.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

DELAY_S = float(os.environ.get("SLOW_BACKEND_DELAY", "1.0"))
STEP_S = float(os.environ.get("SLOW_BACKEND_STEP_S", "0.05"))
ENVIRONMENT = {"torch": "2.8.0+cu128", "cuda": "12.8", "cudaAvailable": True, "gpu": "Stand-in GPU"}
GIB = 1024**3
GPU_BUDGET_BYTES = int(0.8 * 24 * GIB)  # the stand-in GPU: 24 GB
VOLUME_GIB = 8.0  # what a fine-tune step needs per volume of its batch in fp32 without checkpointing
SAVING = 0.6  # what bf16 (or fp16), and checkpointing, leave of it


def emit(**event) -> None:
    print(json.dumps(event), flush=True)


def option(arguments: list[str], name: str) -> str:
    return arguments[arguments.index(name) + 1]


def modelDescription(path: Path) -> dict:
    """The model.json of a package; {} when there is none."""
    description = path / "model.json"
    return json.loads(description.read_text()) if description.is_file() else {}


def info(arguments: list[str]) -> int:
    """The card; a model.json with ``answerDelay`` takes that many seconds instead of DELAY_S."""
    path = Path(arguments[0])
    description = modelDescription(path)
    time.sleep(description.get("answerDelay", DELAY_S))
    if not (path / "model.json").is_file():
        print(f"error (model): Model not found: {path}", file=sys.stderr)
        print("hint: Give a model package folder.", file=sys.stderr)
        return 2
    emit(path=str(path), parameters=2_920_289, size_mb=11.7, grid={"shape": [32, 40, 32], "spacing_mm": [6.0] * 3},
         task=description.get("task", "synthesis"), translation=description.get("translation"),
         condition_classes=description.get("condition_classes", []),
         **({"latent": description["latent"]} if "latent" in description else {}))
    return 0


def plan(arguments: list[str]) -> int:
    time.sleep(DELAY_S)
    rank = int(option(arguments, "--rank")) if "--rank" in arguments else 0
    adapter = 1000 * rank
    emit(method=option(arguments, "--method"),
         counts={"adapter": adapter, "extra": 50, "base": 100_000, "total": adapter + 50, "share": (adapter + 50) / 1e5})
    return 0


def memoryPlan(arguments: list[str]) -> int:
    """The planner's document on the stand-in GPU: a step needs VOLUME_GIB (a model.json's ``"volumeGiB"``) per
    volume, SAVING × that with bf16/fp16 and again with checkpointing; the proposal is the first that fits of
    checkpointing, bf16, both, then halved batches with both (the real planner's order). It answers after
    ``answerDelay`` (else DELAY_S) × the batch, so an older question with a bigger batch would answer after a
    newer one."""
    if os.environ.get("SLOW_BACKEND_REAL_PLAN") == "1":
        os.execv(sys.executable, [sys.executable, "-m", "DiffusionPEFTLib", "finetune", *arguments])
    description = modelDescription(Path(arguments[0]))
    batch, precision = int(option(arguments, "--batch")), option(arguments, "--precision")
    precision = "bf16" if precision == "auto" else precision  # as on a GPU with bf16
    checkpointing = "--checkpointing" in arguments
    time.sleep(description.get("answerDelay", DELAY_S) * batch)

    def need(batch: int, precision: str, checkpointing: bool) -> int:
        return int(description.get("volumeGiB", VOLUME_GIB) * GIB * batch * (SAVING if precision != "fp32" else 1)
                   * (SAVING if checkpointing else 1))

    job = (batch, precision, checkpointing)
    candidates = [(batch, precision, True), (batch, "bf16", checkpointing), (batch, "bf16", True)]
    candidates += [(batch >> halvings, "bf16", True) for halvings in range(1, batch.bit_length())]
    fitting = next((c for c in candidates if need(*c) <= GPU_BUDGET_BYTES), None)
    fits = need(*job) <= GPU_BUDGET_BYTES
    emit(mode="train", batch=batch, device="cuda",
         setup={"method": option(arguments, "--method"), "precision": precision, "checkpointing": checkpointing},
         predicted={"total": need(*job)}, budget_bytes=GPU_BUDGET_BYTES, where="on this GPU", fits=fits,
         proposal=None if fits or fitting is None else {
             "batch": fitting[0], "precision": fitting[1], "checkpointing": fitting[2],
             "predicted": {"total": need(*fitting)}})
    return 0


def stepThrough(stage: str, total: int, stopFile: Path, withLoss: bool = False) -> int | None:
    """One progress event every STEP_S seconds; the step at which the stop file appeared, None if it did not."""
    for step in range(1, total + 1):
        if stopFile.exists():
            return step
        time.sleep(STEP_S)
        emit(event="progress", stage=stage, step=step, total=total, **({"loss": 1.0 / step} if withLoss else {}))
    return None


def fineTune(folder: Path, args: dict, stopFile: Path) -> int:
    stoppedAt = stepThrough("finetune", int(args["steps"]), stopFile, withLoss=True)
    if stoppedAt is not None:
        (folder / "adapter.work").mkdir(exist_ok=True)
        (folder / "adapter.work" / "checkpoint.pt").write_text(str(stoppedAt))
        emit(event="error", kind="cancelled", message=f"finetune was cancelled at step {stoppedAt}; a checkpoint was saved.",
             hint="Run the same command with --resume to continue.")
        return 130
    (folder / args["out"]).mkdir()
    (folder / args["out"] / "adapter.json").write_text(json.dumps({"method": args["method"]}))
    emit(event="done", outputs=[args["out"]])
    return 0


RECONSTRUCT_STEPS = 20  # progress steps per sample (the panel does not choose reconstruct's steps)
RECONSTRUCTION_METRICS = {"nrmse": 0.12, "psnr": 31.5, "ssim": 0.91,
                          "zero_filled_nrmse": 0.34, "zero_filled_psnr": 22.25, "zero_filled_ssim": 0.58}


def companion(out: Path, tag: str) -> Path:
    """``out.nii`` + "std" → ``out_std.nii``, as the backend names a companion output."""
    return out.with_name(f"{out.stem}_{tag}{out.suffix}")


def fromSource(folder: Path, command: str, args: dict, stopFile: Path) -> int:
    """translate or reconstruct: the source itself as each output, on its grid (the std map from 2 samples
    on); a reconstruction also gets its zero-filled image and metrics."""
    samples = int(args["samples"])
    steps = int(args.get("steps", RECONSTRUCT_STEPS))
    noun = {"translate": "Translation", "reconstruct": "Reconstruction"}[command]
    if stepThrough(command, samples * steps, stopFile) is not None:
        emit(event="error", kind="cancelled", message=f"{noun} was cancelled.",
             hint="Run the same command again to start over.")
        return 130
    out = Path(args["out"])
    outputs = {"translation": out} if command == "translate" else {
        "reconstruction": out, "zero_filled": companion(out, "zerofilled")}
    if samples > 1:
        outputs["uncertainty"] = companion(out, "std")
    for role, path in outputs.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / args["source"], folder / path)
        emit(event="artifact", kind="volume", path=str(path), role=role)
    if command == "reconstruct":
        for name, value in RECONSTRUCTION_METRICS.items():
            emit(event="metric", name=name, value=value)
    emit(event="done", outputs=[str(path) for path in outputs.values()])
    return 0


def wrongTask(job: dict) -> str | None:
    """The backend's message when the job's command does not suit its model's task."""
    task = modelDescription(Path(job["args"]["model"])).get("task", "synthesis")
    wanted = {"synthesize": ("synthesis", "latent"), "reconstruct": ("synthesis",), "translate": ("translation",)}
    wanted = wanted.get(job["command"], (task,))
    return None if task in wanted else f"{Path(job['args']['model']).name} is a {task} model, not a {wanted[0]} model."


def run(arguments: list[str]) -> int:
    jobFile = Path(arguments[0])
    job = json.loads(jobFile.read_text())
    folder, args = jobFile.parent, job["args"]
    stopFile = Path(option(arguments, "--stop-file"))
    if job["command"] == "finetune":
        return fineTune(folder, args, stopFile)
    mismatch = wrongTask(job) if "model" in args else None
    if mismatch:
        emit(event="error", kind="model", message=mismatch, hint="Give a model of this task, or use the right command.")
        return 3
    if job["command"] in ("translate", "reconstruct"):
        return fromSource(folder, job["command"], args, stopFile)
    time.sleep(DELAY_S)
    if job["command"] == "evaluate":
        for name, value in (("ms_ssim", 0.8), ("ssim", 0.7), ("psnr", 25.0), ("nrmse", 0.2)):
            emit(event="metric", name=name, value=value)
        emit(event="done", outputs=[args["json"]])
        return 0
    (folder / args["out"]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / args["like"], folder / args["out"])  # synthesize: the reference itself, on its grid
    emit(event="done", outputs=[args["out"]])
    return 0


def main(argv: list[str]) -> int:
    if os.environ.get("SLOW_BACKEND_NO_TORCH") == "1":
        print("Traceback (most recent call last):\nModuleNotFoundError: No module named 'torch'", file=sys.stderr)
        return 1
    if argv[0] == "-c":
        time.sleep(DELAY_S)
        emit(**ENVIRONMENT)
        return 0
    command, *arguments = argv[2:]  # after "-m DiffusionPEFTLib"
    if command == "info":
        return info(arguments)
    if command == "finetune":
        return memoryPlan(arguments) if "--plan" in arguments else plan(arguments)
    return run(arguments)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
