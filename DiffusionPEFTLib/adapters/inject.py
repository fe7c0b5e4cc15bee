"""``inject``: put a method's adapters into any nn.Module (in place) and freeze everything else."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn

from ..errors import AdapterError
from .adapter_set import AdapterSet
from .base import AdapterLayer
from .registry import Method, get_method
from .selection import norm_parameters
from .targets import match_layers, resolve_targets


def inject(model: nn.Module, method: str = "tenvoo-l", targets: str | Sequence[str] | None = None, *,
           ranks: Mapping[str, int] | None = None, train_norms: bool | str | None = None,
           train_bias: bool | None = None, **options: Any) -> AdapterSet:
    """Wrap the target layers of ``model`` with ``method`` adapters; return the ``AdapterSet``.

    targets: preset name ('tenvoo' default, 'all-conv', 'attention'), regex (full match on module
        names) or a list of both; ignored by the selection methods (norm-bias, full, controlled).
    ranks: per-layer rank overrides {module name: rank} (loading grown SeLoRA layers).
    train_norms: also train normalisation parameters — True (every norm layer), a regex over
        parameter names, or False; None = the preset's choice ('tenvoo': "norm", others: False).
    train_bias: also train the biases of the wrapped layers; None = the preset's choice.
    options: method options (rank, alpha, …; see ``METHODS[method].defaults``).
    Every base parameter not selected is frozen (requires_grad False).
    """
    spec = get_method(method)
    resolved = spec.resolve_options(options)
    if any(isinstance(module, AdapterLayer) for module in model.modules()):
        raise AdapterError("This model already carries adapters.",
                           hint="Call merge_and_unload() on the existing AdapterSet, or start from the base model.")
    base_parameters = sum(p.numel() for p in model.parameters())

    if not spec.wraps_layers:
        if targets is not None or ranks or train_norms is not None or train_bias is not None:
            raise AdapterError(f"Method {spec.name!r} trains a fixed selection of the base parameters; "
                               "it takes no targets, ranks, train_norms or train_bias.",
                               hint="Drop those arguments, or choose an adapter method such as 'lora'.")
        extra = spec.select(model, resolved)
        model.requires_grad_(False)
        for param in extra.values():
            param.requires_grad_(True)
        return AdapterSet(model, spec, resolved, (), False, False, {}, extra, base_parameters)

    resolved_targets = resolve_targets(targets)
    train_norms = resolved_targets.train_norms if train_norms is None else train_norms
    train_bias = resolved_targets.train_bias if train_bias is None else train_bias
    found = match_layers(model, resolved_targets)
    extra = norm_parameters(model, train_norms)
    layer_options = {key: resolved[key] for key in spec.layer_options}
    requires_grad = [(param, param.requires_grad) for param in model.parameters()]
    try:
        layers = {name: build_layer(spec, name, module, resolved["rank"], layer_options, ranks)
                  for name, module in found.items()}
    except AdapterError:
        for param, flag in requires_grad:  # leave the model as it was
            param.requires_grad_(flag)
        raise
    model.requires_grad_(False)
    for name, module in found.items():
        if train_bias and module.bias is not None:
            extra[f"{name}.bias"] = module.bias
    for name, layer in layers.items():
        model.set_submodule(name, layer)
    for param in extra.values():
        param.requires_grad_(True)
    return AdapterSet(model, spec, resolved, resolved_targets.spec, train_norms, train_bias, layers, extra,
                      base_parameters)


def build_layer(spec: Method, name: str, module: nn.Module, rank: int, layer_options: dict,
                ranks: Mapping[str, int] | None) -> AdapterLayer:
    """The method's adapter around ``module``, resized to a per-layer rank override if one is given."""
    factory = spec.layer_factory(module)
    if factory is None:
        raise AdapterError(f"Method {spec.name!r} cannot wrap {name} ({type(module).__name__}).",
                           hint="Narrow the targets to layer types this method supports.")
    layer = factory(module, rank, **layer_options)
    layer.resize((ranks or {}).get(name, layer.rank))
    return layer
