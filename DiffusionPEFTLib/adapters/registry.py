"""Method name -> how to build it: layer classes, options with defaults, callbacks, recipe.

Wrapper methods name a layer class for Conv3d and for Linear; trainable-selection methods (norm-bias,
full, controlled) name a ``select`` function instead. ``alpha=None`` means α = rank (scale 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Mapping

from torch import nn

from ..errors import AdapterError
from .adalora import AdaLoRABudget, AdaLoRALayer, adalora_target_rank, validate_adalora_options
from .base import AdapterLayer, check_rank
from ..training.callbacks import TrainingCallback
from .dora import DoRALayer
from .dylora import DyLoRALayer, DyLoRARankSampler, validate_dylora_options
from .loha import LoHaLayer
from .lokr import LoKrLayer
from .lora import LoRALayer
from .quanta import QuanTALinear
from .recipe import Recipe
from .selection import (controlled_recipe, select_all, select_controlled, select_norm_bias,
                        validate_controlled_options)
from .selora import SeLoRAGrowth, SeLoRALayer, validate_selora_options
from .tenvoo import TenVOOConv3d

CallbackFactory = Callable[[Mapping[str, AdapterLayer], dict, "int | None"], list[TrainingCallback]]


@dataclass(frozen=True)
class Method:
    """One registry entry.

    defaults: every option the method takes, with its default (``rank`` for wrapper methods).
    layer_options: the options passed on to the layer constructors (besides ``rank``).
    conv3d / linear: layer factories (base, rank, **layer_options) for nn.Conv3d / nn.Linear targets.
    select: for trainable-selection methods, (model, options) -> {name: parameter} to train.
    callbacks: (layers, options, total_steps) -> training callbacks.
    recipe: (options, model) -> training hints.
    lr: the AdamW learning rate used when none is given (before the recipe's factor), chosen per
        method by the held-out denoising-loss sweep in docs/adapters.md ("Learning rates").
    """

    name: str
    summary: str
    defaults: Mapping[str, Any]
    layer_options: tuple[str, ...] = ()
    conv3d: Callable[..., AdapterLayer] | None = None
    linear: Callable[..., AdapterLayer] | None = None
    select: Callable[[nn.Module, dict], dict[str, nn.Parameter]] | None = None
    validate: Callable[[dict], None] | None = None
    callbacks: CallbackFactory | None = None
    recipe: Callable[[dict, nn.Module], Recipe] = field(default=lambda options, model: Recipe())
    lr: float = 1e-3

    @property
    def wraps_layers(self) -> bool:
        return self.select is None

    def resolve_options(self, options: Mapping[str, Any]) -> dict:
        """Defaults overlaid with ``options``; AdapterError for unknown names or invalid values."""
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise AdapterError(f"Method {self.name!r} has no option {', '.join(map(repr, unknown))}.",
                               hint=f"Options of {self.name}: {valid}.")
        resolved = {**self.defaults, **options}
        if "rank" in resolved:
            check_rank(resolved["rank"])
        if self.validate:
            self.validate(resolved)
        return resolved

    def layer_factory(self, layer: nn.Module) -> Callable[..., AdapterLayer] | None:
        if isinstance(layer, nn.Conv3d):
            return self.conv3d
        if isinstance(layer, nn.Linear):
            return self.linear
        return None


def _selora_callbacks(layers, options, total_steps):
    return [SeLoRAGrowth(layers, options["threshold"], options["expand_every"], options["max_rank"], options["seed"])]


def _dylora_callbacks(layers, options, total_steps):
    return [DyLoRARankSampler(layers, options["min_rank"], options["rank"], options["seed"])]


def _adalora_callbacks(layers, options, total_steps):
    keys = ("tinit", "tfinal", "delta_t", "beta1", "beta2", "orth_reg_weight")
    return [AdaLoRABudget(layers, total_steps, adalora_target_rank(options), **{k: options[k] for k in keys})]


_LOW_RANK = {"rank": 4, "alpha": None}

METHODS: dict[str, Method] = {m.name: m for m in (
    Method("tenvoo-l", "TenVOO-L tensor network on Conv3d, QuanTA gates on Linear (zero start, no scale)",
           {"rank": 4, "factors": None}, ("factors",), partial(TenVOOConv3d, variant="l"), QuanTALinear, lr=1e-5),
    Method("tenvoo-q", "TenVOO-Q tensor network on Conv3d, QuanTA gates on Linear (zero start, no scale)",
           {"rank": 4, "factors": None}, ("factors",), partial(TenVOOConv3d, variant="q"), QuanTALinear, lr=1e-5),
    Method("lora", "LoRA / LoCon: ΔW = (α/r)·B·A; on Conv3d A is k³, B is 1×1×1", _LOW_RANK, ("alpha",),
           LoRALayer, LoRALayer),
    Method("dora", "DoRA: LoRA direction with a trained per-channel magnitude", _LOW_RANK, ("alpha",),
           DoRALayer, DoRALayer),
    Method("loha", "LoHa: Hadamard product of two rank-r updates", _LOW_RANK, ("alpha",), LoHaLayer, LoHaLayer),
    Method("lokr", "LoKr: Kronecker product of a small full and a low-rank factor", {**_LOW_RANK, "factor": -1},
           ("alpha", "factor"), LoKrLayer, LoKrLayer),
    Method("selora", "SeLoRA: rank grows from 1 by a Fisher-information ratio test",
           {"rank": 1, "alpha": None, "max_rank": 16, "threshold": 1.3, "expand_every": 40, "seed": 0}, ("alpha",),
           SeLoRALayer, SeLoRALayer, validate=validate_selora_options, callbacks=_selora_callbacks),
    Method("dylora", "DyLoRA: trains every truncation rank min_rank…rank; pick any at inference",
           {"rank": 8, "alpha": None, "min_rank": 1, "seed": 0}, ("alpha",), DyLoRALayer, DyLoRALayer,
           validate=validate_dylora_options, callbacks=_dylora_callbacks),
    Method("adalora", "AdaLoRA: SVD-form update, importance-driven rank budget",
           {"rank": 12, "alpha": None, "target_rank": None, "tinit": 0, "tfinal": 0, "delta_t": 1, "beta1": 0.85,
            "beta2": 0.85, "orth_reg_weight": 0.5}, ("alpha",), AdaLoRALayer, AdaLoRALayer,
           validate=validate_adalora_options, callbacks=_adalora_callbacks),
    Method("norm-bias", "Train every normalisation parameter and every bias", {}, select=select_norm_bias,
           lr=3e-3),
    Method("full", "Full fine-tuning: every parameter", {}, select=select_all, lr=3e-5),
    Method("controlled", "Controlled full fine-tuning: lr/10, epoch budget, early stop, optional new class",
           {"lr_factor": 0.1, "max_epochs": 10, "early_stopping_patience": 3, "new_class": False,
            "new_class_init": "mean"}, select=select_controlled, validate=validate_controlled_options,
           recipe=controlled_recipe, lr=3e-4),
)}
ALIASES = {"locon": "lora", "tenvoo": "tenvoo-l", "norm": "norm-bias", "bitfit": "norm-bias"}


def get_method(name: str) -> Method:
    """The registry entry for ``name`` (case-insensitive, aliases allowed); AdapterError if unknown."""
    key = ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name
    if key not in METHODS:
        raise AdapterError(f"Unknown adapter method {name!r}.",
                           hint=f"Choose one of: {', '.join(METHODS)} (aliases: {', '.join(ALIASES)}).")
    return METHODS[key]

