"""Pieces several commands share: numbered output names, the inputs a data option names, loading a model
within the memory budget."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..context import RunContext
from ..footprint import Job, TrainingSetup
from ..memory import check_job
from ..models import load_model
from ..models.tiled_decode import Decoding
from ..volumes.io import volume_suffix


def numbered_outputs(out: str | Path, count: int) -> list[Path]:
    """``out`` itself for one output; ``name_001.nii.gz``, ``name_002.nii.gz`` … for several."""
    out = Path(out)
    suffix = volume_suffix(out)
    if count == 1:
        return [out]
    stem = out.name[: -len(suffix)]
    return [out.with_name(f"{stem}_{i:03d}{suffix}") for i in range(1, count + 1)]


def suffixed(out: str | Path, tag: str) -> Path:
    """``result.nii.gz`` + "std" → ``result_std.nii.gz`` (a companion output beside ``out``)."""
    out = Path(out)
    suffix = volume_suffix(out)
    return out.with_name(f"{out.name[: -len(suffix)]}_{tag}{suffix}")


def contrast_label(model, contrast: str | None, class_label: int | None = None) -> int | None:
    """The class label of ``contrast`` (a name in the model's ``condition_classes``), else ``class_label``;
    InputError for a name the model does not know or both given."""
    from ..errors import InputError

    if contrast is None:
        return class_label
    names = list(model.config.input.condition_classes)
    if class_label is not None:
        raise InputError("Give --contrast or --class-label, not both.", hint="--contrast takes the class's name.")
    if contrast not in names:
        raise InputError(f"This model has no contrast '{contrast}'.",
                         hint=f"It knows: {', '.join(names)}." if names else
                         "It is not class-conditioned: leave --contrast out.")
    return names.index(contrast)


def class_of_contrast(model, contrast: str | None, class_label: int | None) -> int | None:
    """``class_label``, or the class a class-conditioned model has for the data's ``contrast`` (e.g. t2 data of a
    t1/t2/pd model → 1); None otherwise (the model then says whether it needs one)."""
    names = list(model.config.input.condition_classes)
    if class_label is None and contrast in names:
        return names.index(contrast)
    return class_label


def data_inputs(sources, pattern: str | None = None, contrast: str | None = None) -> list[Path]:
    """The sources as given plus every volume they expand to (manifests list files elsewhere)."""
    from ..training import find_volume_files

    sources = [Path(s) for s in sources or []]
    return sources + find_volume_files(sources, pattern, contrast) if sources else []


def load_model_for_job(path: str | Path, context: RunContext, batch: int, training: bool,
                       task: str | tuple[str, ...] | None = "synthesis", setup: TrainingSetup | None = None,
                       decoding: Decoding | None = None) -> nn.Module:
    """Load a model package of ``task`` (several: any of them; None: any kind) onto the job's device after
    checking the job fits the memory budget (memory.py's planner); a package of another task is a ModelError that
    says what it is. ``training``: gradients flow through the network — with ``setup`` its weights train
    (fine-tuning), without one only its input's gradient is taken (posterior sampling). ``decoding``: how a
    latent model's samples will be decoded (default ``auto``: the planner picks whole or the largest window that
    fits)."""
    from ..models import read_model_config
    from ..models.latent_model import load_latent_model
    from ..translation.model import load_translation_model

    config = read_model_config(path)
    mode = ("train" if setup is not None else "guide") if training else "sample"
    check_job(context.budget, Job(config, batch, mode, setup or TrainingSetup(), context.device.type,
                                  decoding or Decoding()),
              f"{'Training' if training else 'Sampling'} this model at {'×'.join(map(str, config.input.shape))} "
              f"with batch {batch}{f' and {decoding.describe()}' if decoding and config.task == 'latent' else ''}",
              hint="Use batch 1, a smaller grid, or a GPU with more memory.",
              events=context.events)
    loaders = {"synthesis": load_model, "translation": load_translation_model, "latent": load_latent_model}
    accepted = (task,) if isinstance(task, str) else task
    model = loaders[config.task if accepted is None or config.task in accepted else accepted[0]](path, context.device)
    context.events.log(f"Loaded {model.config.task} model {Path(path).name} ({model.parameter_count():,} parameters) "
                       f"on {context.device}.")
    return model
