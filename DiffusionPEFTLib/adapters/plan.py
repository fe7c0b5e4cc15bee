"""Plan an adapter without weights: build the UNet on the meta device, inject, report (``finetune --dry-run``).

The meta device allocates no memory, so planning TenVOO's 166.67 M-parameter UNet takes about a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from ..models.diffusion_model import build_unet
from .adapter_set import AdapterSet, LayerSummary, ParameterCounts
from .inject import inject


@dataclass(frozen=True)
class AdapterPlan:
    """Wrapped layers, their ranks and parameter counts, and the totals."""

    method: str
    options: dict
    targets: tuple[str, ...]
    layers: tuple[LayerSummary, ...]
    counts: ParameterCounts

    def as_dict(self) -> dict:
        return {"method": self.method, "options": self.options, "targets": list(self.targets),
                "layers": [vars(layer) for layer in self.layers], "counts": self.counts.as_dict()}

    def format(self) -> str:
        """Human-readable table: one line per wrapped layer, then the totals."""
        lines = [f"{self.method} on {len(self.layers)} layers ({', '.join(self.targets) or 'selection'})"]
        width = max((len(layer.name) for layer in self.layers), default=0)
        for layer in self.layers:
            lines.append(f"  {layer.name:<{width}}  {layer.kind:<6} {str(layer.shape):<22} "
                         f"r={layer.effective_rank:<3} {layer.parameters:>10,}")
        lines.append(str(self.counts))
        return "\n".join(lines)


def plan_of(adapter_set: AdapterSet) -> AdapterPlan:
    return AdapterPlan(adapter_set.method.name, dict(adapter_set.options), adapter_set.targets,
                       tuple(adapter_set.layer_summaries()), adapter_set.counts())


def build_unet_on_meta(architecture: Mapping[str, Any]) -> nn.Module:
    """MONAI ``DiffusionModelUNet(**architecture)`` with every tensor on the meta device (shapes only)."""
    with torch.device("meta"):
        return build_unet(dict(architecture))


def plan_adapter(architecture: Mapping[str, Any], method: str = "tenvoo-l",
                 targets: str | Sequence[str] | None = None, **inject_options: Any) -> AdapterPlan:
    """The plan ``inject(model, method, targets, **inject_options)`` would give on that architecture."""
    return plan_of(inject(build_unet_on_meta(architecture), method, targets, **inject_options))
