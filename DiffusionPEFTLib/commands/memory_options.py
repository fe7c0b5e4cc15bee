"""The memory options of the training commands (pretrain, finetune, translate-train): ``--precision``,
``--checkpointing``, ``--plan`` and ``--gpu-memory-gb``; the training setup they describe, the check every job
makes before it starts, and the plan ``--plan`` prints instead of training."""

from __future__ import annotations

from ..context import RunContext
from ..errors import InputError
from ..footprint import Job, TrainingSetup
from ..memory import GIB, MemoryBudget, check_job, plan_memory
from ..models.config import ModelConfig
from ..training.precision import PRECISIONS, resolve_precision
from .option_types import positive_float


def add_memory_arguments(parser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto (bf16 on a GPU that has it, else fp16; fp32 on the CPU), fp32, bf16 (CPU or GPU) "
                        "or fp16 (GPU only, with loss scaling)")
    parser.add_argument("--checkpointing", action="store_true",
                        help="activation checkpointing: recompute each U-Net block's activations in the backward "
                        "pass instead of keeping them (less memory, more time, the same results)")
    parser.add_argument("--plan", action="store_true",
                        help="predict the job's peak memory against the budget, name the settings that fit if it "
                        "does not, and exit (no volume is read, nothing is written)")
    parser.add_argument("--gpu-memory-gb", type=positive_float, default=None, metavar="GB",
                        help="with --plan: plan for a CUDA GPU with this much memory (e.g. 24) instead of this "
                        "machine (budget: 80 %% of it)")


def check_memory_arguments(args) -> None:
    """Mistakes in the memory options, before any work."""
    if args.gpu_memory_gb is not None and not args.plan:
        raise InputError("--gpu-memory-gb goes with --plan (it plans for a GPU this machine may not have).",
                         hint="Add --plan, or use --memory-budget-gb to bound this job's memory.")


def training_setup(args, device, method: str | None = None, targets: str | None = None,
                   options: dict | None = None, ema: bool = False) -> TrainingSetup:
    """The training settings of ``args`` for ``device`` (InputError for a precision the device cannot run)."""
    what_if = getattr(args, "gpu_memory_gb", None) is not None
    precision = resolve_precision(args.precision, "cuda" if what_if else device, bf16_supported=True if what_if else None)
    return TrainingSetup.of(method, targets, options, precision=precision, checkpointing=args.checkpointing,
                            accumulation=args.accum > 1, ema=ema)


def check_training_memory(context: RunContext, config: ModelConfig, batch: int, setup: TrainingSetup) -> None:
    """Refuse a training job whose predicted peak exceeds the budget, naming the settings that would fit."""
    check_job(context.budget, Job(config, batch, "train", setup, context.device.type),
              f"Training this model at {'×'.join(map(str, config.input.shape))} with batch {batch} "
              f"({setup.describe()})",
              hint="Use a smaller --batch or grid, or a GPU with more memory.", events=context.events)


def report_plan(args, context: RunContext, config: ModelConfig, setup: TrainingSetup) -> list:
    """``--plan``: log the prediction and the advice, emit them as metrics (and as a document with --json)."""
    if args.gpu_memory_gb is not None:
        device, budget = "cuda", MemoryBudget(int(0.8 * args.gpu_memory_gb * GIB))
        where = f"on a {args.gpu_memory_gb:g} GB GPU"
    else:
        device, budget = context.device.type, context.budget
        where = "on this GPU" if device == "cuda" else "on this machine"
    plan = plan_memory(Job(config, args.batch, "train", setup, device), budget, where)
    context.events.log(plan.format())
    context.events.metric("predicted_peak_bytes", plan.footprint.total)
    context.events.metric("memory_budget_bytes", budget.limit_bytes)
    context.events.metric("fits", int(plan.fits))
    if getattr(args, "json", False):
        context.events.document("memory_plan", plan.as_dict())
    return []
