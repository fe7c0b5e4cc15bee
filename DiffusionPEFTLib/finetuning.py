"""Fine-tuning as one function: inject a method into a base model, train it with the shared trainer.

Used by the ``finetune`` command and by the ``demo``; the adapter package is written by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .adapters import AdapterSet, get_method, inject, plan_adapter
from .adapters.plan import AdapterPlan
from .context import RunContext
from .errors import AdapterError, InputError
from .models.diffusion_model import DiffusionModel
from .models.latent_model import LatentDiffusionModel
from .training import Trainer, TrainConfig, TrainingVolumes, TrainResult, split_validation
from .training.data import VolumeSet
from .training.streaming import DataLoading, training_data


@dataclass
class FineTuneSettings:
    """method: registry name; targets: preset or regex (None = method default); options: rank, alpha, …;
    steps, batch, accum, lr: optimisation (lr None = the method's own default; either way it is
    multiplied by the method's recipe factor);
    val_fraction / val_every: validation (a recipe with early stopping gets 20 % and every steps/10);
    conditions: for a model conditioned on numbers (a latent model), the values of every training volume;
    loading: in memory or streamed (training/streaming.py; a latent model streams the volumes it encodes and keeps
    their latents in memory);
    precision, checkpointing: see TrainConfig."""

    method: str = "tenvoo-l"
    targets: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    steps: int = 200
    batch: int = 1
    accum: int = 1
    lr: float | None = None
    val_fraction: float = 0.0
    val_every: int = 0
    checkpoint_every: int = 100
    augment: bool = True
    class_label: int | None = None
    class_name: str | None = None
    resume: bool = False
    conditions: dict[str, float] | None = None
    loading: DataLoading = field(default_factory=DataLoading)
    precision: str = "auto"
    checkpointing: bool = False


@dataclass
class FineTuneOutcome:
    adapters: AdapterSet
    result: TrainResult
    provenance: dict


def fine_tune(model: DiffusionModel, files: list[Path], settings: FineTuneSettings, workdir: str | Path,
              context: RunContext, sources: list[Path] | None = None) -> FineTuneOutcome:
    """Wrap ``model.unet`` with the method, train on ``files`` (model grid + normalisation), return the result.

    ``sources``: for a translation model, the source volume paired with each file (the files are targets).
    A latent model trains its UNet on the volumes' latents, encoded once before training (its autoencoder is frozen)."""
    check_adapter_size(plan_adapter(model.config.unet, settings.method, settings.targets, **settings.options))
    adapters = inject(model.unet, settings.method, settings.targets, **settings.options)
    recipe = adapters.recipe
    context.events.log(str(adapters.counts()))
    label = recipe.new_class_label if recipe.new_class_label is not None else settings.class_label
    if recipe.new_class_label is None:
        check_labelled(model, label, settings.method)
        model.check_class_label(settings.class_label)
    labels = [label] * len(files) if label is not None else None
    latent = isinstance(model, LatentDiffusionModel)
    conditions = model.condition_values(settings.conditions) if latent else None
    if settings.conditions and not latent:
        raise InputError("This model takes no --condition values.", hint="Leave --condition out.")
    data = training_data(files, model.config.input, settings.loading, context, Path(workdir), labels, sources)
    if warning := data.resampling_warning():
        context.events.log(warning, level="warning")
    if latent:
        data = encoded(model, data, conditions, context)
    val_fraction = settings.val_fraction or (0.2 if recipe.needs_validation else 0.0)
    train, val = split_validation(data, val_fraction, context.seed)
    steps = settings.steps
    if recipe.max_epochs:  # an epoch takes len(train) / (volumes per optimizer step over all processes) steps
        per_step = settings.batch * settings.accum * distributed.world().size
        steps = min(steps, max(1, recipe.max_epochs * len(train) // per_step))
    config = TrainConfig(steps=steps, batch_size=settings.batch, grad_accum=settings.accum,
                         lr=(get_method(settings.method).lr if settings.lr is None else settings.lr) * recipe.lr_factor,
                         val_every=settings.val_every or (max(1, steps // 10) if val is not None else 0),
                         checkpoint_every=settings.checkpoint_every,
                         early_stop_patience=recipe.early_stopping_patience or 0,
                         augment=settings.augment and not latent,  # latents are cached: no flips or contrast jitter
                         precision=settings.precision, checkpointing=settings.checkpointing, seed=context.seed)
    context.events.log(f"Fine-tuning {settings.method} on {len(train)} volumes ({len(val) if val else 0} for "
                       f"validation), {steps} steps, lr {config.lr:g}{distributed.processes_note()}.")
    trainer = Trainer(model, list(adapters.trainable_parameters()), train, config, workdir, context.device,
                      context.events, context.cancel, val=val, callbacks=adapters.make_callbacks(steps),
                      stage="finetune", identity={
                          "method": settings.method, "targets": settings.targets, "options": settings.options,
                          "class_label": label, "conditions": settings.conditions, "data": [str(p) for p in files],
                          "sources": [str(p) for p in sources or []]})
    if settings.resume and not trainer.load_checkpoint():
        context.events.log(f"No checkpoint in {workdir}; starting from scratch.", level="warning")
    result = trainer.run()
    provenance = {
        "data": [str(p) for p in files], **({"sources": [str(p) for p in sources]} if sources else {}),
        "training_volumes": len(train), "validation_volumes": len(val) if val else 0,
        "steps": result.steps, "stopped_early": result.stopped_early, "batch": settings.batch,
        "accum": settings.accum, "lr": config.lr, "seed": context.seed, "device": str(context.device),
        "processes": distributed.world().size, "data_loading": settings.loading.mode,
        "wall_s": round(result.wall_s, 1), "final_loss": sum(result.losses[-20:]) / max(1, len(result.losses[-20:])),
        "best_val_loss": result.best_val_loss, "class_label": label,
        **({"conditions": conditions} if conditions else {}),
        **({"new_class_name": settings.class_name or f"class {label}"} if recipe.new_class_label is not None else {}),
    }
    return FineTuneOutcome(adapters, result, provenance)


def encoded(model: LatentDiffusionModel, data: VolumeSet, conditions: dict[str, float],
            context: RunContext) -> TrainingVolumes:
    """The training volumes as latents (N, C, x, y, z) held in memory, encoded once (the volumes themselves may
    be streamed), each with the vector (N, n) of the ``conditions`` (as ``sources``: what the trainer hands to
    the model with each volume)."""
    vector = model.condition_vector(conditions)
    latents = []
    for index, (image, _) in enumerate(data.items(list(range(len(data))))):
        context.cancel.raise_if_requested("Encoding")
        latents.append(model.encode(image[None]).cpu())
        context.events.progress("encode", index + 1, len(data))
    vectors = vector.expand(len(data), -1).clone() if vector is not None else None
    context.events.log(f"Encoded {len(data)} volumes to {'×'.join(map(str, model.grid_shape))} latents"
                       f"{f' with conditions {conditions}' if conditions else ''}.")
    return TrainingVolumes(torch.cat(latents), data.labels, data.files, vectors)


def check_labelled(model: DiffusionModel, label: int | None, method: str) -> None:
    """A class-conditioned model trains on labelled volumes: InputError when no class was named."""
    names = list(model.config.input.condition_classes)
    if label is None and (model.config.unet.get("num_class_embeds") or 0) > 0:
        raise InputError(f"This model is class-conditioned ({', '.join(names) or 'unnamed classes'}); the training "
                         "volumes need a class.",
                         hint=f"Give --contrast with one of {', '.join(names)} (or --class-label N), or add a class for a "
                         f"new contrast with --method controlled --option new_class=true (not {method}).")


def check_adapter_size(plan: AdapterPlan) -> None:
    """Refuse an adapter with more parameters than the model it adapts (e.g. ``--rank 1000``)."""
    counts = plan.counts
    if counts.base and counts.adapter > counts.base:
        raise AdapterError(
            f"{plan.method} with these options would train {counts.adapter / 1e6:,.1f} M adapter parameters, "
            f"more than the {counts.base / 1e6:,.2f} M of the whole model.",
            hint="Use a smaller --rank (e.g. 4–32), or --method full to train every weight.")

