"""Trainable-selection strategies (no wrapper layers): norm/bias tuning, full and controlled fine-tuning.

Each ``select_*`` function returns {parameter name: parameter} of the parameters to train; ``inject``
freezes everything else. "Controlled" full fine-tuning is the stroke-MRI recipe (arXiv 2603.13007):
all weights, learning rate one tenth of pretraining, an epoch budget and early stopping on validation,
optionally a new class embedding row for a new contrast; its training side is the ``Recipe`` hints.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ..errors import AdapterError
from .recipe import Recipe

NORM_TYPES = (nn.GroupNorm, nn.LayerNorm, _BatchNorm, _InstanceNorm)


def norm_parameters(model: nn.Module, rule: bool | str) -> dict[str, nn.Parameter]:
    """Normalisation parameters: ``True`` = of every normalisation layer; a string = names matching that regex.

    The official TenVOO recipe uses the string ``"norm"`` (every parameter whose name contains "norm"),
    which in MONAI's UNet leaves out the final ``out.0`` GroupNorm.
    """
    if rule is False:
        return {}
    if isinstance(rule, str):
        pattern = compile_pattern(rule)
        return {n: p for n, p in model.named_parameters() if pattern.search(n)}
    return {f"{mn}.{pn}" if mn else pn: p for mn, m in model.named_modules() if isinstance(m, NORM_TYPES)
            for pn, p in m.named_parameters(recurse=False)}


def bias_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if n == "bias" or n.endswith(".bias")}


def select_norm_bias(model: nn.Module, options: dict) -> dict[str, nn.Parameter]:
    """BitFit + norms: every normalisation parameter and every bias."""
    return {**norm_parameters(model, True), **bias_parameters(model)}


def select_all(model: nn.Module, options: dict) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters())


def select_controlled(model: nn.Module, options: dict) -> dict[str, nn.Parameter]:
    """All parameters, after adding a class-embedding row when ``new_class`` is set."""
    if options["new_class"]:
        add_class_embedding(model, options["new_class_init"])
    return select_all(model, options)


def validate_controlled_options(options: dict) -> None:
    if not (isinstance(options["lr_factor"], (int, float)) and options["lr_factor"] > 0):
        raise AdapterError(f"lr_factor must be a positive number, got {options['lr_factor']!r}.",
                           hint="The stroke-MRI recipe uses 0.1 (one tenth of the pretraining learning rate).")
    for name in ("max_epochs", "early_stopping_patience"):
        value = options[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise AdapterError(f"{name} must be a positive integer or None, got {value!r}.",
                               hint="None leaves the choice to the finetune command.")


def controlled_recipe(options: dict, model: nn.Module) -> Recipe:
    new_label = model.class_embedding.num_embeddings - 1 if options["new_class"] else None
    return Recipe(lr_factor=options["lr_factor"], max_epochs=options["max_epochs"],
                  early_stopping_patience=options["early_stopping_patience"], new_class_label=new_label)


@torch.no_grad()
def add_class_embedding(model: nn.Module, init: str | int = "mean") -> int:
    """Append one row to ``model.class_embedding`` (MONAI ``num_class_embeds``); return its label.

    ``init``: "mean" of the existing rows, or an existing label to copy (e.g. the closest contrast).
    """
    old = getattr(model, "class_embedding", None)
    if not isinstance(old, nn.Embedding):
        raise AdapterError("This model has no class embedding to extend.",
                           hint="A new class needs a class-conditioned model (MONAI num_class_embeds); "
                                "drop new_class or pick such a model.")
    count = old.num_embeddings
    if init == "mean":
        row = old.weight.mean(dim=0, keepdim=True)
    elif isinstance(init, int) and 0 <= init < count:
        row = old.weight[init:init + 1]
    else:
        raise AdapterError(f"new_class_init must be 'mean' or a label in 0…{count - 1}, got {init!r}.",
                           hint="Copy the label of the most similar contrast, or use 'mean'.")
    grown = nn.Embedding(count + 1, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
    grown.weight.copy_(torch.cat([old.weight, row], dim=0))
    model.class_embedding = grown
    if hasattr(model, "num_class_embeds"):
        model.num_class_embeds = count + 1
    return count


def compile_pattern(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise AdapterError(f"{pattern!r} is not a valid regular expression: {exc}.",
                           hint="Escape dots in module names ('conv1\\.conv') and check brackets.") from None
