"""Parameter-efficient adapters for 3D diffusion UNets: one base layer, one file per method, a registry.

Typical use::

    adapters = inject(unet, "tenvoo-l", "tenvoo", rank=4)        # wraps layers in place, freezes the rest
    optimizer = torch.optim.AdamW(adapters.trainable_parameters(), lr=lr * adapters.recipe.lr_factor)
    callbacks = adapters.make_callbacks(total_steps)              # SeLoRA / DyLoRA / AdaLoRA hooks
    ...train...
    save_adapter(adapters, "my_adapter", base_fingerprint=sha, base_architecture=arch, provenance=...)
    plain = adapters.merged_copy()                                # inference at the base's cost

    plan_adapter(arch, "tenvoo-l", "tenvoo", rank=4).counts       # dry run on the meta device
"""

from .adapter_set import AdapterSet, LayerSummary, ParameterCounts, unload_adapters
from .base import AdapterLayer
from ..training.callbacks import TrainingCallback
from .inject import inject
from .package import describe, format_card, load_adapter, read_manifest, save_adapter
from .plan import AdapterPlan, build_unet_on_meta, plan_adapter, plan_of
from .rank_plot import plot_rank_history, rank_histories
from .recipe import Recipe
from .registry import METHODS, Method, get_method
from .targets import PRESETS

__all__ = [
    "AdapterLayer", "AdapterPlan", "AdapterSet", "LayerSummary", "METHODS", "Method", "PRESETS",
    "ParameterCounts", "Recipe", "TrainingCallback", "build_unet_on_meta", "describe", "format_card",
    "get_method", "inject", "load_adapter", "plan_adapter", "plan_of", "plot_rank_history", "rank_histories",
    "read_manifest", "save_adapter", "unload_adapters",
]
