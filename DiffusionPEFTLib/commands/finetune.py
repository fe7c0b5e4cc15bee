"""``finetune``: attach an adapter (or a selection method) to a base model, train it on a few
volumes, and write an adapter package. ``--dry-run`` only prints the plan (layers, ranks, counts) and ``--plan``
the predicted peak memory (memory_options.py); both need just model.json."""

from __future__ import annotations

import json
from pathlib import Path

from .. import distributed
from ..adapters import plan_adapter, save_adapter
from ..adapters.registry import METHODS
from ..distributed import shared_work_folder
from ..errors import InputError
from ..files import Output, write_text_atomic
from ..finetuning import FineTuneSettings, check_adapter_size, fine_tune
from ..models import read_model_config
from ..plots import save_loss_curve
from ..training import CHECKPOINT_NAME, find_volume_files
from ..translation.pairs import find_pairs
from .common import class_of_contrast, load_model_for_job
from .memory_options import check_memory_arguments, report_plan, training_setup
from .option_types import condition_values, non_negative_int, positive_int
from .training_options import (add_data_arguments, add_training_arguments, check_work_folder, data_loading,
                               work_folder_of)

NAME = "finetune"
HELP = "Fine-tune a pretrained model with a parameter-efficient adapter and save the adapter package."


def add_arguments(parser) -> None:
    parser.add_argument("model", help="base model package folder or .zip")
    add_data_arguments(parser, required=False)
    parser.set_defaults(val_fraction=0.0)
    parser.add_argument("--source", default=None,
                        help="translation model with a simulator manifest: the source contrast (e.g. t1)")
    parser.add_argument("--target", default=None,
                        help="translation model with a simulator manifest: the target contrast (e.g. flair)")
    parser.add_argument("--method", choices=sorted(METHODS), default="tenvoo-l", help="adapter or selection method")
    parser.add_argument("--rank", type=positive_int, default=None, help="adapter rank (method default if omitted)")
    parser.add_argument("--targets", default=None,
                        help="preset (tenvoo, all-conv, attention) or a regex over module names; method default if omitted")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="further method options, e.g. alpha=8, threshold=1.3 (values parsed as JSON)")
    parser.add_argument("--class-label", type=non_negative_int, default=None,
                        help="class label of the training volumes")
    parser.add_argument("--condition", type=condition_values, default=None, metavar="NAME=VALUE,…",
                        help="for a model conditioned on numbers (an imported latent model): the values of the "
                        "training volumes, e.g. age=0.7; the others take the model's defaults")
    parser.add_argument("--out", default=None, help="adapter package folder to write")
    parser.add_argument("--dry-run", action="store_true", help="print the plan (layers, ranks, counts) and exit")
    parser.add_argument("--json", action="store_true", help="with --dry-run or --plan: print the plan as JSON on stdout")
    add_training_arguments(parser, steps=200, lr=None, lr_help=learning_rate_help())


def learning_rate_help() -> str:
    """--lr help listing each method's default learning rate, grouped by value."""
    groups: dict[float, list[str]] = {}
    for name, method in METHODS.items():
        groups.setdefault(method.lr, []).append(name)
    listed = "; ".join(f"{lr:g} for {', '.join(names)}" for lr, names in groups.items())
    return f"AdamW learning rate (default: the method's own: {listed}; controlled then applies its lr_factor)"


def method_options(args) -> dict:
    """--rank and --option KEY=VALUE pairs as keyword arguments for ``inject``."""
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--option {item!r} is not KEY=VALUE.", hint="Write e.g. --option alpha=8.")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    if args.rank is not None:
        options["rank"] = args.rank
    if args.targets is not None:
        options["targets"] = args.targets
    return options


def paths(args):
    """Inputs: the base model and every training volume; outputs: the adapter folder and its work folder."""
    check_memory_arguments(args)
    if args.dry_run or args.plan:
        return [args.model], []
    if not args.data or not args.out:
        raise InputError("finetune needs training volumes and --out (or --dry-run).",
                         hint="e.g. diffusion-peft finetune MODEL scans/ --method tenvoo-l --out my_adapter")
    files, sources = training_files(args)
    inputs = [args.model, *args.data, *files, *(sources or [])]
    data_loading(args)
    check_work_folder(work_folder_of(args), [*inputs, args.out], args.resume, args.overwrite)
    return inputs, [Output.of(args.out, folder=True)]


def training_files(args) -> tuple[list[Path], list[Path] | None]:
    """(volumes, None) for a synthesis model; (targets, their sources) for a translation model, whose
    data are pairs (see translation/pairs.py)."""
    if read_model_config(args.model).task == "translation":
        sources, targets = find_pairs(args.data, args.source, args.target)
        return targets, sources
    return find_volume_files(args.data, args.pattern, args.contrast), None


def dry_run(args, context):
    plan = plan_adapter(read_model_config(args.model).unet, args.method, **method_options(args))
    check_adapter_size(plan)
    if args.json:
        context.events.document("plan", plan.as_dict())
    context.events.log(plan.format())
    counts = plan.counts.as_dict()
    context.events.metric("trainable_parameters", plan.counts.total)
    context.events.metric("trainable_share", plan.counts.share)
    context.events.metric("base_parameters", counts.get("base", 0))
    return []


def setup_of(args, device):
    """The training setup (method, targets, options, precision, checkpointing) the memory planner sees."""
    options = method_options(args)
    return training_setup(args, device, args.method, options.pop("targets", None), options)


def run(args, context):
    if args.dry_run:
        return dry_run(args, context)
    setup = setup_of(args, context.device)
    config = read_model_config(args.model)
    check_adapter_size(plan_adapter(config.unet, args.method, **method_options(args)))  # before its memory is traced
    if args.plan:
        return report_plan(args, context, config, setup)
    files, sources = training_files(args)
    model = load_model_for_job(args.model, context, args.batch, training=True, task=None, setup=setup)
    options = method_options(args)
    settings = FineTuneSettings(
        method=args.method, targets=options.pop("targets", None), options=options, steps=args.steps,
        batch=args.batch, accum=args.accum, lr=args.lr, val_fraction=args.val_fraction, val_every=args.val_every,
        checkpoint_every=args.checkpoint_every, augment=not args.no_augment,
        class_label=class_of_contrast(model, args.contrast, args.class_label), class_name=args.contrast, resume=args.resume,
        conditions=args.condition, loading=data_loading(args), precision=args.precision,
        checkpointing=args.checkpointing)
    with shared_work_folder(work_folder_of(args), keep_if=CHECKPOINT_NAME) as workdir:
        outcome = fine_tune(model, files, settings, workdir, context, sources)
        if not distributed.world().is_main:  # the main process writes the adapter
            return []
        path = save_adapter(outcome.adapters, args.out, base_fingerprint=model.config.weights_sha256,
                            base_architecture=model.config.unet, provenance=outcome.provenance,
                            overwrite=args.overwrite)
        history = {"losses": outcome.result.losses, "val_losses": outcome.result.val_losses}
        write_text_atomic(workdir / "history.json", json.dumps(history), overwrite=True)
        save_loss_curve(outcome.result.losses, workdir / "loss_curve.png", outcome.result.val_losses,
                        title=f"{args.method} fine-tuning", overwrite=True)
    context.events.artifact("adapter", str(path), "adapter")
    return [path]
