"""``AdapterSet``: what ``inject`` returns — the wrapped layers, the extra trainables and every verb on them.

Tensor names are the ORIGINAL module names of the base model (``down_blocks.0.resnets.0.conv1.conv.lora_down``,
``…conv1.conv.bias``, ``…norm1.weight``), so saved adapters do not depend on the wrapper's internal layout.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import nn

from ..errors import AdapterError
from .base import AdapterLayer
from ..training.callbacks import TrainingCallback
from .recipe import Recipe
from .registry import Method


@dataclass(frozen=True)
class ParameterCounts:
    """adapter: θ of the wrapper layers; extra: base parameters made trainable (norms, biases; all for full
    fine-tuning); base: parameters of the base model before injection."""

    adapter: int
    extra: int
    base: int

    @property
    def total(self) -> int:
        return self.adapter + self.extra

    @property
    def share(self) -> float:
        """Trainable fraction of the base (0.0036 = 0.36 %)."""
        return self.total / self.base if self.base else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total, "share": self.share}

    def __str__(self) -> str:
        return (f"trainable {self.total / 1e6:.3f} M = adapter {self.adapter / 1e6:.3f} M + norms/biases "
                f"{self.extra / 1e6:.3f} M ({100 * self.share:.2f} % of {self.base / 1e6:.2f} M)")


@dataclass(frozen=True)
class LayerSummary:
    name: str
    kind: str  # "Conv3d" | "Linear"
    shape: tuple[int, ...]  # base weight shape
    rank: int  # rank the parameters are shaped for (SeLoRA: current; DyLoRA: r_max; AdaLoRA: initial)
    effective_rank: int  # rank in use (AdaLoRA: unmasked; DyLoRA: inference rank)
    parameters: int  # adapter parameters of this layer


class AdapterSet:
    """Adapters injected into ``model`` by one method (see ``inject``)."""

    def __init__(self, model: nn.Module, method: Method, options: dict, targets: tuple[str, ...],
                 train_norms: bool | str, train_bias: bool, layers: dict[str, AdapterLayer],
                 extra: dict[str, nn.Parameter], base_parameters: int):
        self.model = model
        self.method = method
        self.options = options
        self.targets = targets
        self.train_norms = train_norms
        self.train_bias = train_bias
        self.layers = layers
        self.extra = extra
        self.base_parameters = base_parameters
        self.recipe: Recipe = method.recipe(options, model)
        self.unloaded = False

    # -- what is trained ---------------------------------------------------------------------
    def named_trainable_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Adapter θ (layer order) then extra trainables, by original name; stable order for optimizers."""
        for name, layer in self.layers.items():
            for local, param in layer.named_parameters():
                if not local.startswith("base."):
                    yield f"{name}.{local}", param
        yield from self.extra.items()

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (param for _, param in self.named_trainable_parameters())

    def counts(self) -> ParameterCounts:
        adapter = sum(layer.num_adapter_parameters() for layer in self.layers.values())
        return ParameterCounts(adapter, sum(p.numel() for p in self.extra.values()), self.base_parameters)

    def ranks(self) -> dict[str, int]:
        """Effective rank per wrapped layer."""
        return {name: layer.effective_rank() for name, layer in self.layers.items()}

    def layer_summaries(self) -> list[LayerSummary]:
        return [LayerSummary(name, type(layer.base).__name__, tuple(layer.base.weight.shape), layer.rank,
                             layer.effective_rank(), layer.num_adapter_parameters())
                for name, layer in self.layers.items()]

    def make_callbacks(self, total_steps: int | None = None) -> list[TrainingCallback]:
        """Training callbacks of this method (SeLoRA growth, DyLoRA sampling, AdaLoRA budget), else []."""
        return self.method.callbacks(self.layers, self.options, total_steps) if self.method.callbacks else []

    # -- merging ------------------------------------------------------------------------------
    def merge(self) -> None:
        for layer in self.layers.values():
            layer.merge()

    def unmerge(self) -> None:
        for layer in self.layers.values():
            layer.unmerge()

    def merge_and_unload(self) -> nn.Module:
        """Merge in place and put the plain base layers back; returns ``model`` (this set is then spent)."""
        self._check_live()
        self.unloaded = True
        return unload_adapters(self.model)

    def merged_copy(self) -> nn.Module:
        """A plain deep copy with ΔW merged, for inference; this set and ``model`` stay as they are."""
        self._check_live()
        return unload_adapters(copy.deepcopy(self.model))

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Adapter θ, needed buffers (TenVOO θ0, AdaLoRA mask) and extra trainables, detached."""
        state = {f"{name}.{k}": v.detach() for name, layer in self.layers.items()
                 for k, v in layer.adapter_state().items()}
        state.update({name: param.detach() for name, param in self.extra.items()})
        return state

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load ``state_dict()`` output; AdapterError when names or shapes differ."""
        self._check_live()
        remaining = dict(state)
        for name, param in self.extra.items():
            if name not in remaining or remaining[name].shape != param.shape:
                raise AdapterError(f"The adapter has no matching tensor for {name}.",
                                   hint="It was saved for another model or with other options.")
            param.copy_(remaining.pop(name))
        for name, layer in self.layers.items():
            prefix = f"{name}."
            own = {k[len(prefix):]: remaining.pop(k) for k in list(remaining) if k.startswith(prefix)}
            layer.load_adapter_state(own, where=name)
        if remaining:
            raise AdapterError(f"The adapter holds tensors for layers that are not wrapped: {sorted(remaining)[:5]}.",
                               hint="Load it with the targets and options it was saved with.")

    def _check_live(self) -> None:
        if self.unloaded:
            raise AdapterError("These adapters were already merged into the model and unloaded.",
                               hint="Inject again (or load the adapter package) to get adapters back.")


def unload_adapters(model: nn.Module) -> nn.Module:
    """Merge every AdapterLayer in ``model`` and replace it by its base layer; all parameters trainable again,
    as in a freshly built model."""
    wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, AdapterLayer)]
    for name, layer in wrapped:
        layer.merge()
        model.set_submodule(name, layer.base)
    for param in model.parameters():
        param.requires_grad_(True)
    return model
