"""``pretrain``: train a 3D DDPM on a folder/list of volumes and save a model package.

With a simulator manifest and several contrasts (``--contrast t1,t2,pd``) the model is class-conditioned,
one class per contrast (MONAI ``num_class_embeds``). ``--init-from`` starts from another synthesis
package's weights (same U-Net; class-embedding rows it lacks start at zero, so the warm-started model
first behaves exactly like the one it came from)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import distributed
from ..distributed import shared_work_folder
from ..errors import InputError, ModelError
from ..files import write_text_atomic
from ..models import DiffusionModel, InputSpec, ModelConfig, ScheduleConfig, load_model, save_model
from ..models.config import SCHEDULES
from ..training import CHECKPOINT_NAME, Trainer, TrainConfig, find_volume_files, split_validation
from ..training.ema import weight_average
from ..training.streaming import training_data
from .common import data_inputs
from .import_checkpoint import package_output
from .memory_options import check_memory_arguments, check_training_memory, report_plan, training_setup
from .option_types import non_negative_int, positive_int
from .training_options import (add_architecture_arguments, add_data_arguments, add_training_arguments,
                               add_weight_average_argument, check_work_folder, data_loading, grid_spacing,
                               unet_arguments, work_folder_of)

NAME = "pretrain"
HELP = "Pretrain a 3D diffusion model on volumes and write a model package."
PREDICTIONS = {"v": "v_prediction", "v_prediction": "v_prediction", "epsilon": "epsilon", "eps": "epsilon",
               "sample": "sample", "x0": "sample"}


def add_arguments(parser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--init-from", default=None, metavar="MODEL",
                        help="start from this synthesis model's weights (same architecture options) instead of "
                        "random ones")
    parser.add_argument("--out", required=True, help="model package folder (or .zip) to write")
    add_architecture_arguments(parser, shape=[32, 40, 32], spacing=6.0)
    parser.add_argument("--prediction", choices=sorted(PREDICTIONS), default="v")
    parser.add_argument("--schedule", choices=SCHEDULES, default="scaled_linear_beta")
    parser.add_argument("--timesteps", type=positive_int, default=1000)
    parser.add_argument("--warmup", type=non_negative_int, default=0, help="linear learning-rate warm-up steps")
    add_weight_average_argument(parser)
    add_training_arguments(parser, steps=1000, lr=2e-4)


def build_config(args) -> ModelConfig:
    spacing = grid_spacing(args)
    factor = 2 ** (len(args.channels) - 1)
    if any(s % factor for s in args.shape):
        raise InputError(f"Every side of --shape must be divisible by {factor} for a {len(args.channels)}-level UNet.",
                         hint=f"e.g. --shape {' '.join(str(max(factor, s // factor * factor)) for s in args.shape)}")
    unet = unet_arguments(args, in_channels=1, out_channels=1)
    classes = contrast_classes(args.contrast)
    if classes:
        unet["num_class_embeds"] = len(classes)
    schedule = ScheduleConfig(args.timesteps, args.schedule, 0.0005, 0.0195, PREDICTIONS[args.prediction])
    return ModelConfig(unet, schedule, InputSpec(tuple(args.shape), spacing, condition_classes=classes))


def contrast_classes(contrast: str | None) -> tuple[str, ...]:
    """'t1,t2,pd' → ('t1', 't2', 'pd'): the class names of a class-conditioned model; () for one contrast."""
    names = tuple(name.strip() for name in (contrast or "").split(",") if name.strip())
    if len(set(names)) != len(names):
        raise InputError(f"--contrast {contrast} names a contrast twice.", hint="List each contrast once: t1,t2,pd.")
    return names if len(names) > 1 else ()


def training_files(args) -> tuple[list, list[int] | None]:
    """The training volumes and, for several contrasts, each one's class label (its contrast's index)."""
    classes = contrast_classes(args.contrast)
    if not classes:
        return find_volume_files(args.data, args.pattern, args.contrast), None
    files, labels = [], []
    for label, name in enumerate(classes):
        sources = [source for source in args.data if name in simulator_contrasts(source, name)]
        if not sources:
            raise InputError(f"None of the data has '{name}' volumes.",
                             hint="With several contrasts the data are simulator manifests (manifest.json); each "
                             "contrast must be in at least one of them.")
        found = find_volume_files(sources, args.pattern, name)
        files += found
        labels += [label] * len(found)
    return files, labels


def simulator_contrasts(source, default: str) -> set[str]:
    """The contrasts every subject of a simulator manifest has; {default} for any other source (so a
    manifest of the pretraining contrasts and one of a new contrast can be combined, e.g. joint training)."""
    path = Path(source)
    if path.suffix.lower() != ".json" or not path.is_file():
        return {default}
    try:
        subjects = json.loads(path.read_text(encoding="utf-8")).get("subjects")
        return set.intersection(*(set(subject["files"]) for subject in subjects))
    except (ValueError, AttributeError, TypeError, KeyError):
        return {default}  # not a simulator manifest: find_volume_files reports what is wrong with it


def paths(args):
    """Inputs: every training volume (and the --init-from model); outputs: the model package and its work folder
    (--plan: nothing is read or written)."""
    check_memory_arguments(args)
    if args.plan:
        return [], []
    inputs = [Path(args.init_from)] if args.init_from else []
    for contrast in contrast_classes(args.contrast) or [args.contrast]:
        inputs += data_inputs([d for d in args.data if contrast in simulator_contrasts(d, contrast)], args.pattern,
                              contrast)
    data_loading(args)
    check_work_folder(work_folder_of(args), [*inputs, args.out], args.resume, args.overwrite)
    return inputs, [package_output(args.out)]


def warm_start(model: DiffusionModel, path: str, device) -> dict:
    """Copy the weights of the synthesis package at ``path`` into ``model``; ModelError if another U-Net.
    Class-embedding rows the package lacks stay zero (added to the time embedding, zero changes nothing).
    Returns the donor's lineage for the new package's provenance: its name, weights' sha256 and whole provenance
    (with its own ``started_from``: a model trained in stages keeps every stage's record)."""
    donor = load_model(path, "cpu")
    own_arguments = {k: v for k, v in model.config.unet.items() if k != "num_class_embeds"}
    donor_arguments = {k: v for k, v in donor.config.unet.items() if k != "num_class_embeds"}
    if own_arguments != donor_arguments or donor.config.schedule != model.config.schedule:
        changed = sorted(k for k in {**own_arguments, **donor_arguments}
                         if own_arguments.get(k) != donor_arguments.get(k))
        raise ModelError(f"--init-from {Path(path).name} has another architecture or noise schedule "
                         f"({', '.join(changed) or 'scheduler'} differ).",
                         hint="Give the architecture options (--channels, --attention-levels, --head-channels, "
                         "--norm-groups, --prediction, --schedule) that model was made with.")
    state = donor.unet.state_dict()
    with torch.no_grad():
        if hasattr(model.unet, "class_embedding") and model.unet.class_embedding is not None:
            rows = model.unet.class_embedding.weight
            rows.zero_()
            if "class_embedding.weight" in state:
                old = state.pop("class_embedding.weight")
                rows[: min(len(old), len(rows))] = old[: len(rows)]
        model.unet.load_state_dict(state, strict=False)
    return {"model": Path(path).name, "weights_sha256": donor.config.weights_sha256,
            "provenance": donor.config.provenance}


def run(args, context):
    config = build_config(args)
    setup = training_setup(args, context.device, ema=args.ema is not None)
    if args.plan:
        return report_plan(args, context, config, setup)
    check_training_memory(context, config, args.batch, setup)
    files, labels = training_files(args)
    model = DiffusionModel(config)
    lineage = warm_start(model, args.init_from, context.device) if args.init_from else None
    if lineage:
        context.events.log(f"Starting from the weights of {Path(args.init_from).name}.")
    train_config = TrainConfig(steps=args.steps, batch_size=args.batch, grad_accum=args.accum, lr=args.lr,
                               warmup_steps=args.warmup, val_every=args.val_every,
                               checkpoint_every=args.checkpoint_every, augment=not args.no_augment,
                               precision=args.precision, checkpointing=args.checkpointing, seed=context.seed)
    average = weight_average(model.unet, args.ema)
    with shared_work_folder(work_folder_of(args), keep_if=CHECKPOINT_NAME) as workdir:
        context.events.log(f"Loading {len(files)} training volumes onto the model grid.")
        data = training_data(files, config.input, data_loading(args), context, workdir, labels=labels)
        train, val = split_validation(data, args.val_fraction, context.seed)
        context.events.log(f"Model: {model.parameter_count():,} parameters; {len(train)} training, "
                           f"{len(val) if val else 0} validation volumes; device {context.device}"
                           f"{distributed.processes_note()}.")
        trainer = Trainer(model, list(model.parameters()), train, train_config, workdir, context.device,
                          context.events, context.cancel, val=val, callbacks=[average] if average else (),
                          stage="pretrain",
                          identity={"architecture": config.unet, "data": [str(p) for p in files],
                                    "classes": list(config.input.condition_classes), "init_from": args.init_from,
                                    "ema": args.ema})
        if args.resume and not trainer.load_checkpoint():
            context.events.log(f"No checkpoint in {workdir}; starting from scratch.", level="warning")
        result = trainer.run()
        if not distributed.world().is_main:  # the main process writes the package
            return []
        history = {"losses": result.losses, "val_losses": result.val_losses}
        write_text_atomic(workdir / "history.json", json.dumps(history), overwrite=True)
        provenance = {
            "command": NAME,
            "arguments": {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))},
            "training": {"volumes": len(train), "validation_volumes": len(val) if val else 0, "steps": result.steps,
                         "batch": args.batch, "accum": args.accum, "lr": args.lr, "seed": context.seed,
                         "wall_s": round(result.wall_s, 1), "device": str(context.device),
                         "final_loss_mean_last_50": sum(result.losses[-50:]) / len(result.losses[-50:]),
                         "best_val_loss": result.best_val_loss, "ema_decay": args.ema,
                         "processes": distributed.world().size, "data_loading": args.data_loading},
            "started_from": lineage,
        }
        if average:
            average.copy_to(model.unet)
        path = save_model(model, args.out, provenance, overwrite=args.overwrite)
    context.events.artifact("model", str(path), "model")
    return [path]
