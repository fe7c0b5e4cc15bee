"""Command line: ``diffusion-peft COMMAND …`` (same as ``python -m DiffusionPEFTLib``).

Global options (any position after the command): --device, --seed, --events, --memory-budget-gb,
--stop-file, --threads, --overwrite. A user mistake ends in an ``error`` event and a non-zero exit, never a
traceback. Before a command does any work, its declared inputs and outputs (each command module's
``paths(args)``) go through the output rule of :mod:`DiffusionPEFTLib.files`. Under ``torchrun`` the
training commands join its process group first (:mod:`DiffusionPEFTLib.distributed`); only rank 0 reports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import traceback
from pathlib import Path
from types import ModuleType

from . import distributed
from .cancel import CancelToken, restore_signal_handlers
from .commands import COMMAND_MODULES
from .context import RunContext, resolve_device, seed_everything
from .commands.option_types import non_negative_int, positive_float, positive_int
from .errors import DiffusionPEFTError, InputError, JobCancelled
from .events import EventSink, HumanSink, JsonLinesSink
from .files import check_outputs
from .jobs import job_to_argv, load_job
from .memory import MemoryBudget


def command_modules() -> dict[str, ModuleType]:
    modules = [importlib.import_module(f"{__package__}.commands.{name}") for name in COMMAND_MODULES]
    return {module.NAME: module for module in modules}


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as an InputError (so it becomes an ``error`` event)."""

    def error(self, message):
        raise InputError(f"{self.prog}: {message}", hint=f"See '{self.prog} --help'.")


def global_options() -> argparse.ArgumentParser:
    parent = ArgumentParser(add_help=False)
    group = parent.add_argument_group("global options")
    group.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    group.add_argument("--seed", type=non_negative_int, default=0,
                       help="random seed; same seed → same result on the same device")
    group.add_argument("--events", choices=["human", "json"], default="human",
                       help="human: progress bar on stderr; json: one JSON event per line on stdout")
    group.add_argument("--memory-budget-gb", type=positive_float, default=None,
                       help="refuse jobs estimated to need more (default: 80%% of RAM / GPU memory)")
    group.add_argument("--stop-file", default=None, help="the job saves and stops when this file appears")
    group.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch (default: torch's choice)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace existing outputs (only files and folders DiffusionPEFT wrote; never an input)")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="diffusion-peft",
        description="Fine-tune 3D diffusion models with parameter-efficient adapters; synthesize, evaluate.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=ArgumentParser)
    parent = global_options()
    for name, module in command_modules().items():
        command = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[parent])
        module.add_arguments(command)
    run = sub.add_parser("run", help="Run a job folder's job.json (what the Slicer module does).", parents=[parent])
    run.add_argument("job", help="path to job.json; relative paths in it are relative to its folder")
    return parser


def make_context(args: argparse.Namespace, events: EventSink) -> RunContext:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    budget = MemoryBudget.from_gb(args.memory_budget_gb) if args.memory_budget_gb else MemoryBudget.default(str(device))
    seed_everything(args.seed)
    return RunContext(events=events, device=device, seed=args.seed, budget=budget, cancel=CancelToken(args.stop_file))


def execute(args: argparse.Namespace, events: EventSink, job_file: Path | None = None) -> int:
    """Check the command's paths, run it, report through ``events``; return the process exit code.

    ``job_file``: the job.json this command came from (an input like the others)."""
    previous_handlers = {}
    try:
        module = command_modules()[args.command]
        args.device = distributed.start(args.command, args.device)  # under torchrun: join its process group
        if not distributed.world().is_main:
            events = distributed.ProcessSink(distributed.world().rank)  # one process reports and writes
        failure = None
        try:
            inputs, outputs = module.paths(args)
            check_outputs(outputs, [*inputs, job_file, args.stop_file], args.overwrite)
        except DiffusionPEFTError as error:
            failure = error
        distributed.raise_first_error(failure)  # every process stops when one found a mistake
        context = make_context(args, events)
        previous_handlers = context.cancel.install_signal_handlers()
        outputs = module.run(args, context)
        events.done([str(p) for p in outputs or []])
        return 0
    except DiffusionPEFTError as error:
        events.emit(error.to_event())
        return error.exit_code
    except KeyboardInterrupt:
        events.emit(JobCancelled("The job was interrupted.").to_event())
        return JobCancelled.exit_code
    except Exception as error:  # a bug: short message for the user, the traceback in a file
        with tempfile.NamedTemporaryFile("w", prefix="diffusion-peft-crash-", suffix=".log", delete=False) as log:
            traceback.print_exc(file=log)
        events.emit({"event": "error", "kind": "internal", "message": f"Internal error: {type(error).__name__}: {error}",
                     "hint": f"This is a bug. The details are in {log.name}; please attach it to a report."})
        return 1
    finally:
        restore_signal_handlers(previous_handlers)
        events.close()
        distributed.stop()


def main(argv: list[str] | None = None, events: EventSink | None = None) -> int:
    """Parse ``argv`` and run it; ``events`` overrides the sink chosen by --events (Python callers, tests)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    events = events or (JsonLinesSink() if _wants_json(argv) else HumanSink())
    cwd = os.getcwd()
    try:
        args = parser.parse_args(argv)
        if args.command != "run":
            return execute(args, events)
        job_path = Path(args.job).resolve()
        job = load_job(job_path)
        # the job's own argv, then the options given on this command line (argparse keeps the last)
        inner = job_to_argv(job, parser) + [a for a in argv if a not in ("run", args.job)]
        os.chdir(job_path.parent)
        return execute(parser.parse_args(inner), events, job_file=job_path)
    except DiffusionPEFTError as error:
        events.emit(error.to_event())
        events.close()
        return error.exit_code
    finally:
        os.chdir(cwd)


def _wants_json(argv: list[str]) -> bool:
    """--events json, looked up before parsing so that parse errors are reported as events too."""
    pairs = zip(argv, argv[1:])
    return "--events=json" in argv or any(a == "--events" and b == "json" for a, b in pairs)


if __name__ == "__main__":
    sys.exit(main())
