"""``translate-train``: train a PPDM-style translation model (bridge diffusion on puzzled tensors) on paired
volumes and write a model package with ``"task": "translation"``."""

from __future__ import annotations

import json

from .. import distributed
from ..distributed import shared_work_folder
from ..files import write_text_atomic
from ..models import InputSpec, ModelConfig, save_model
from ..training import CHECKPOINT_NAME, Trainer, TrainConfig, split_validation
from ..training.ema import weight_average
from ..training.streaming import training_data
from ..translation.bridge import KINDS, PREDICTIONS, BridgeConfig
from ..translation.contrast_check import source_signature
from ..translation.model import TranslationModel, TranslationSpec
from ..translation.pairs import find_pairs
from ..translation.puzzle import FACTORS
from .import_checkpoint import package_output
from .memory_options import check_memory_arguments, check_training_memory, report_plan, training_setup
from .option_types import at_least_two, non_negative_float, positive_float
from .training_options import (add_architecture_arguments, add_training_arguments, add_validation_arguments,
                               add_weight_average_argument, check_work_folder, data_loading, grid_spacing,
                               unet_arguments, work_folder_of)

NAME = "translate-train"
HELP = "Train a translation model (e.g. T1w → FLAIR) on paired volumes: bridge diffusion on puzzled tensors."


def add_pair_arguments(parser, required: bool = True) -> None:
    """Paired-data options, shared with ``finetune`` on a translation model."""
    parser.add_argument("pairs", nargs="+" if required else "*",
                        help="a simulator manifest (with --source/--target), a pairs manifest (.csv: source,target) "
                        "or two folders SOURCES TARGETS matched by subject")
    parser.add_argument("--source", default=None, help="with a simulator manifest: the source contrast (e.g. t1)")
    parser.add_argument("--target", default=None, help="with a simulator manifest: the target contrast (e.g. flair)")


def add_arguments(parser) -> None:
    add_pair_arguments(parser)
    parser.add_argument("--out", required=True, help="model package folder (or .zip) to write")
    add_architecture_arguments(parser, shape=[64, 80, 64], spacing=3.0)
    parser.add_argument("--puzzle", type=int, choices=FACTORS, default=2, help="pixel-puzzle factor p")
    parser.add_argument("--bridge", choices=KINDS, default="bbdm", help="bridge parameterisation")
    parser.add_argument("--prediction", choices=PREDICTIONS, default="x0", help="what the network predicts")
    parser.add_argument("--timesteps", type=at_least_two, default=1000, help="bridge steps T")
    parser.add_argument("--max-var", type=positive_float, default=1.0, help="BBDM's variance scale κ")
    parser.add_argument("--pg-weight", type=non_negative_float, default=0.1,
                        help="weight λ of the puzzle-gradient loss (0: off)")
    parser.add_argument("--source-name", default=None, help="name of the source contrast in the card (default --source)")
    parser.add_argument("--target-name", default=None, help="name of the target contrast in the card (default --target)")
    add_validation_arguments(parser)
    add_weight_average_argument(parser)
    add_training_arguments(parser, steps=1000, lr=1e-3)


def build_config(args) -> ModelConfig:
    p = args.puzzle
    spec = TranslationSpec(
        source=args.source_name or args.source or "source", target=args.target_name or args.target or "target",
        puzzle=p, bridge=BridgeConfig(kind=args.bridge, timesteps=args.timesteps, max_var=args.max_var,
                                      prediction=args.prediction),
        puzzle_gradient_weight=args.pg_weight)
    unet = unet_arguments(args, in_channels=2 * p**3, out_channels=p**3)
    return ModelConfig(unet, None, InputSpec(tuple(args.shape), grid_spacing(args)), task="translation",
                       translation=spec.to_dict())


def paths(args):
    check_memory_arguments(args)
    if args.plan:  # nothing is read or written
        return [], []
    sources, targets = find_pairs(args.pairs, args.source, args.target)
    inputs = [*args.pairs, *sources, *targets]
    data_loading(args)
    check_work_folder(work_folder_of(args), [*inputs, args.out], args.resume, args.overwrite)
    return inputs, [package_output(args.out)]


def run(args, context):
    config = build_config(args)
    setup = training_setup(args, context.device, ema=args.ema is not None)
    if args.plan:
        return report_plan(args, context, config, setup)
    check_training_memory(context, config, args.batch, setup)
    sources, targets = find_pairs(args.pairs, args.source, args.target)
    model = TranslationModel(config)
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch, grad_accum=args.accum, lr=args.lr,
                               val_every=args.val_every, checkpoint_every=args.checkpoint_every,
                               augment=not args.no_augment, precision=args.precision,
                               checkpointing=args.checkpointing, seed=context.seed)
    average = weight_average(model.unet, args.ema)
    with shared_work_folder(work_folder_of(args), keep_if=CHECKPOINT_NAME) as workdir:
        context.events.log(f"Loading {len(targets)} (source, target) pairs onto the model grid.")
        data = training_data(targets, config.input, data_loading(args), context, workdir, sources=sources)
        if warning := data.resampling_warning():
            context.events.log(warning, level="warning")
        train, val = split_validation(data, args.val_fraction, context.seed)
        context.events.log(f"Translation model {model.spec.source} → {model.spec.target}: "
                           f"{model.parameter_count():,} parameters, puzzle p = {model.spec.puzzle} (U-Net grid "
                           f"{'×'.join(map(str, model.puzzle.puzzled_shape(config.input.shape)))}); {len(train)} "
                           f"training, {len(val) if val else 0} validation pairs{distributed.processes_note()}.")
        trainer = Trainer(model, list(model.parameters()), train, train_config, workdir, context.device,
                          context.events, context.cancel, val=val, callbacks=[average] if average else (),
                          stage="translate-train",
                          identity={"config": config.to_dict(), "data": [str(p) for p in targets],
                                    "sources": [str(p) for p in sources], "ema": args.ema})
        if args.resume and not trainer.load_checkpoint():
            context.events.log(f"No checkpoint in {workdir}; starting from scratch.", level="warning")
        result = trainer.run()
        if not distributed.world().is_main:  # the main process writes the package
            return []
        write_text_atomic(workdir / "history.json", json.dumps({"losses": result.losses,
                                                                "val_losses": result.val_losses}), overwrite=True)
        provenance = {"command": NAME, "training": {
            "pairs": len(train), "validation_pairs": len(val) if val else 0, "steps": result.steps,
            "batch": args.batch, "lr": args.lr, "seed": context.seed, "wall_s": round(result.wall_s, 1),
            "device": str(context.device), "best_val_loss": result.best_val_loss,
            "final_loss_mean_last_50": sum(result.losses[-50:]) / len(result.losses[-50:]), "ema_decay": args.ema,
            "processes": distributed.world().size, "data_loading": args.data_loading}}
        # after training and outside the trainer's identity, so a run started before signatures existed resumes
        sources_on_grid = (source[0].numpy() for _, source in data.items(list(range(len(data)))))  # read again if streamed
        model.record_source_signature(source_signature(sources_on_grid, config.input.normalisation().range,
                                                       config.input.spacing))
        context.events.log(f"Intensity signature of the {len(data)} {model.spec.source} sources recorded: translate "
                           f"warns above a distance of {model.spec.source_signature.threshold:.3f}.")
        if average:
            average.copy_to(model.unet)
        path = save_model(model, args.out, provenance, overwrite=args.overwrite)
    context.events.artifact("model", str(path), "model")
    return [path]
