"""``pretrain``: train a 3D DDPM from scratch on a folder/list of volumes and save a model package."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from ..files import ensure_writable, write_text_atomic
from ..models import DiffusionModel, InputSpec, ModelConfig, ScheduleConfig, save_model
from ..models.footprint import estimate_job_bytes
from ..training import Trainer, TrainConfig, TrainingVolumes, find_volume_files, split_validation

NAME = "pretrain"
HELP = "Pretrain a 3D diffusion model on volumes and write a model package."
PREDICTIONS = {"v": "v_prediction", "v_prediction": "v_prediction", "epsilon": "epsilon", "eps": "epsilon",
               "sample": "sample", "x0": "sample"}


def add_data_arguments(parser, required: bool = True) -> None:
    """Training-data options shared with ``finetune``."""
    parser.add_argument("data", nargs="+" if required else "*", help="folders, volume files, or manifests (.json/.csv/.txt)")
    parser.add_argument("--pattern", default=None, help="in folders, only files matching this glob (e.g. '*/t1.nii.gz')")
    parser.add_argument("--contrast", default=None, help="with a simulator manifest: which contrast to use")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of volumes held out for validation")
    parser.add_argument("--val-every", type=int, default=0, help="validate every N steps (0: never)")


def add_training_arguments(parser, steps: int, lr: float | None,
                           lr_help: str = "AdamW learning rate") -> None:
    """Optimisation options shared with ``finetune``."""
    parser.add_argument("--steps", type=int, default=steps, help="optimizer steps")
    parser.add_argument("--batch", type=int, default=1, help="volumes per micro-batch")
    parser.add_argument("--accum", type=int, default=1, help="gradient accumulation: micro-batches per step")
    parser.add_argument("--lr", type=float, default=lr, help=lr_help)
    parser.add_argument("--checkpoint-every", type=int, default=100, help="write a checkpoint every N steps")
    parser.add_argument("--no-augment", action="store_true", help="no flips / contrast jitter")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in the work folder")
    parser.add_argument("--workdir", default=None, help="checkpoints and logs (default: OUT.work next to OUT)")


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--out", required=True, help="model package folder (or .zip) to write")
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 40, 32], metavar=("X", "Y", "Z"))
    parser.add_argument("--spacing", type=float, nargs="+", default=[6.0], help="mm; one value or three")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 64])
    parser.add_argument("--attention-levels", type=int, nargs="+", default=[0, 0, 1])
    parser.add_argument("--num-res-blocks", type=int, default=1)
    parser.add_argument("--head-channels", type=int, default=64, help="channels per attention head")
    parser.add_argument("--norm-groups", type=int, default=32)
    parser.add_argument("--prediction", choices=sorted(PREDICTIONS), default="v")
    parser.add_argument("--schedule", default="scaled_linear_beta")
    parser.add_argument("--timesteps", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    add_training_arguments(parser, steps=1000, lr=2e-4)


def build_config(args) -> ModelConfig:
    spacing = args.spacing * 3 if len(args.spacing) == 1 else args.spacing
    levels = len(args.channels)
    if len(spacing) != 3 or len(args.attention_levels) != levels:
        raise InputError("--spacing needs 1 or 3 values and --attention-levels one value per channel level.",
                         hint=f"With {levels} levels: e.g. --attention-levels {' '.join(['0'] * (levels - 1))} 1.")
    factor = 2 ** (levels - 1)
    if any(s % factor for s in args.shape):
        raise InputError(f"Every side of --shape must be divisible by {factor} for a {levels}-level UNet.",
                         hint=f"e.g. --shape {' '.join(str(max(factor, s // factor * factor)) for s in args.shape)}")
    unet = {
        "spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": list(args.channels),
        "attention_levels": [bool(a) for a in args.attention_levels], "num_res_blocks": args.num_res_blocks,
        "num_head_channels": [args.head_channels if a else 0 for a in args.attention_levels],
        "norm_num_groups": args.norm_groups, "use_flash_attention": True,
    }
    schedule = ScheduleConfig(args.timesteps, args.schedule, 0.0005, 0.0195, PREDICTIONS[args.prediction])
    return ModelConfig(unet, schedule, InputSpec(tuple(args.shape), tuple(float(s) for s in spacing)))


def run(args, context):
    out = ensure_writable(args.out)
    workdir = Path(args.workdir or f"{out}.work")
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
    trainer = Trainer(model, list(model.parameters()), train, train_config, workdir, context.device,
                      context.events, context.cancel, val=val, stage="pretrain")
    if args.resume and not trainer.load_checkpoint():
        context.events.log(f"No checkpoint in {workdir}; starting from scratch.", level="warning")
    result = trainer.run()
    write_text_atomic(workdir / "history.json", json.dumps({"losses": result.losses, "val_losses": result.val_losses}))
    provenance = {
        "command": NAME,
        "arguments": {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))},
        "training": {"volumes": len(train), "validation_volumes": len(val) if val else 0, "steps": result.steps,
                     "batch": args.batch, "accum": args.accum, "lr": args.lr, "seed": context.seed,
                     "wall_s": round(result.wall_s, 1), "device": str(context.device),
                     "final_loss_mean_last_50": sum(result.losses[-50:]) / len(result.losses[-50:]),
                     "best_val_loss": result.best_val_loss},
    }
    path = save_model(model, out, provenance)
    context.events.artifact("model", str(path), "model")
    return [path]
