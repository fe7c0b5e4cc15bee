"""``pretrain``: train a 3D DDPM from scratch on a folder/list of volumes and save a model package."""

from __future__ import annotations

import json

from ..errors import InputError
from ..files import work_folder, write_text_atomic
from ..models import DiffusionModel, InputSpec, ModelConfig, ScheduleConfig, save_model
from ..models.config import SCHEDULES
from ..models.footprint import estimate_job_bytes
from ..training import CHECKPOINT_NAME, Trainer, TrainConfig, TrainingVolumes, find_volume_files, split_validation
from .common import data_inputs
from .import_checkpoint import package_output
from .option_types import non_negative_int, positive_int
from .training_options import (add_architecture_arguments, add_data_arguments, add_training_arguments,
                               check_work_folder, grid_spacing, unet_arguments, work_folder_of)

NAME = "pretrain"
HELP = "Pretrain a 3D diffusion model on volumes and write a model package."
PREDICTIONS = {"v": "v_prediction", "v_prediction": "v_prediction", "epsilon": "epsilon", "eps": "epsilon",
               "sample": "sample", "x0": "sample"}


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--out", required=True, help="model package folder (or .zip) to write")
    add_architecture_arguments(parser, shape=[32, 40, 32], spacing=6.0)
    parser.add_argument("--prediction", choices=sorted(PREDICTIONS), default="v")
    parser.add_argument("--schedule", choices=SCHEDULES, default="scaled_linear_beta")
    parser.add_argument("--timesteps", type=positive_int, default=1000)
    parser.add_argument("--warmup", type=non_negative_int, default=0, help="linear learning-rate warm-up steps")
    add_training_arguments(parser, steps=1000, lr=2e-4)


def build_config(args) -> ModelConfig:
    spacing = grid_spacing(args)
    factor = 2 ** (len(args.channels) - 1)
    if any(s % factor for s in args.shape):
        raise InputError(f"Every side of --shape must be divisible by {factor} for a {len(args.channels)}-level UNet.",
                         hint=f"e.g. --shape {' '.join(str(max(factor, s // factor * factor)) for s in args.shape)}")
    unet = unet_arguments(args, in_channels=1, out_channels=1)
    schedule = ScheduleConfig(args.timesteps, args.schedule, 0.0005, 0.0195, PREDICTIONS[args.prediction])
    return ModelConfig(unet, schedule, InputSpec(tuple(args.shape), spacing))


def paths(args):
    """Inputs: every training volume; outputs: the model package and its work folder."""
    inputs = data_inputs(args.data, args.pattern, args.contrast)
    check_work_folder(work_folder_of(args), [*inputs, args.out], args.resume, args.overwrite)
    return inputs, [package_output(args.out)]


def run(args, context):
    config = build_config(args)
    context.budget.check(estimate_job_bytes(config.unet, config.input.shape, args.batch, True),
                         f"Training at {'×'.join(map(str, config.input.shape))} with batch {args.batch}",
                         hint="Use a smaller --batch or --shape.")
    files = find_volume_files(args.data, args.pattern, args.contrast)
    context.events.log(f"Loading {len(files)} training volumes onto the model grid.")
    data = TrainingVolumes.load(files, config.input, budget=context.budget)
    train, val = split_validation(data, args.val_fraction, context.seed)
    model = DiffusionModel(config)
    context.events.log(f"Model: {model.parameter_count():,} parameters; {len(train)} training, "
                       f"{len(val) if val else 0} validation volumes; device {context.device}.")
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch, grad_accum=args.accum, lr=args.lr,
                               warmup_steps=args.warmup, val_every=args.val_every,
                               checkpoint_every=args.checkpoint_every, augment=not args.no_augment, seed=context.seed)
    with work_folder(work_folder_of(args), keep_if=CHECKPOINT_NAME) as workdir:
        trainer = Trainer(model, list(model.parameters()), train, train_config, workdir, context.device,
                          context.events, context.cancel, val=val, stage="pretrain",
                          identity={"architecture": config.unet, "data": [str(p) for p in files]})
        if args.resume and not trainer.load_checkpoint():
            context.events.log(f"No checkpoint in {workdir}; starting from scratch.", level="warning")
        result = trainer.run()
        history = {"losses": result.losses, "val_losses": result.val_losses}
        write_text_atomic(workdir / "history.json", json.dumps(history), overwrite=True)
        provenance = {
            "command": NAME,
            "arguments": {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))},
            "training": {"volumes": len(train), "validation_volumes": len(val) if val else 0, "steps": result.steps,
                         "batch": args.batch, "accum": args.accum, "lr": args.lr, "seed": context.seed,
                         "wall_s": round(result.wall_s, 1), "device": str(context.device),
                         "final_loss_mean_last_50": sum(result.losses[-50:]) / len(result.losses[-50:]),
                         "best_val_loss": result.best_val_loss},
        }
        path = save_model(model, args.out, provenance, overwrite=args.overwrite)
    context.events.artifact("model", str(path), "model")
    return [path]
