"""Zero-start tensor-network adapters (TenVOO, QuanTA): ΔW = T(θ) − T(θ0), no α/r scale.

All cores θ start random; a frozen copy θ0 is kept as persistent buffers (saved with the adapter) and
T(θ0) is contracted once into the non-persistent buffer ``frozen_weight`` (recomputed whenever θ0 is
loaded). At step 0 θ = θ0, so ΔW is exactly 0 and every core gets a gradient from the first step
(reference §2.3 "sum_opposite_freeze_one", taken from QuanTA). The frozen contraction costs one extra
weight-sized buffer per wrapped layer.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import AdapterLayer, kaiming_uniform_
from .contraction import contract


class TensorNetworkAdapter(AdapterLayer):
    """Cores θ_i (``cores.i``) contracted by ``equation`` into a tensor that ``to_weight_layout`` reshapes."""

    equation: str

    def __init__(self, base: nn.Conv3d | nn.Linear, rank: int, core_shapes: Sequence[tuple[int, ...]],
                 core_fan_ins: Sequence[int], gain: float):
        super().__init__(base, rank)
        self.cores = nn.ParameterList(nn.Parameter(self.new_tensor(*shape)) for shape in core_shapes)
        for core, fan_in in zip(self.cores, core_fan_ins):
            kaiming_uniform_(core, fan_in, gain)
        for i, core in enumerate(self.cores):
            self.register_buffer(f"frozen_core_{i}", core.detach().clone())
        self.register_buffer("frozen_weight", self.network_weight(self.frozen_cores()), persistent=False)
        self.register_load_state_dict_post_hook(_refresh_after_load)

    def frozen_cores(self) -> list[torch.Tensor]:
        return [getattr(self, f"frozen_core_{i}") for i in range(len(self.cores))]

    def network_weight(self, cores: Sequence[torch.Tensor]) -> torch.Tensor:
        """T(cores) in the base weight's layout."""
        return self.to_weight_layout(contract(self.equation, *cores))

    def to_weight_layout(self, network: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def refresh_frozen_weight(self) -> None:
        """Recontract T(θ0) after θ0 changed (loading an adapter or a checkpoint)."""
        self.frozen_weight = self.network_weight(self.frozen_cores())

    def delta_weight(self) -> torch.Tensor:
        return self.network_weight(list(self.cores)) - self.frozen_weight


def _refresh_after_load(module: TensorNetworkAdapter, _incompatible_keys) -> None:
    """Post-load hook (a module-level function, so wrapped models stay picklable)."""
    module.refresh_frozen_weight()
