"""The one adapter base: a frozen ``nn.Conv3d`` / ``nn.Linear`` plus trainable θ; y = op(x, W0 + ΔW(θ)) + b.

Every method has the same verbs: ``adapter_parameters()``, ``delta_weight()``, ``forward``,
``merge()`` / ``unmerge()``, ``adapter_state()`` / ``load_adapter_state()``. ΔW is materialised once per
forward (kernels are small next to 3D activations) and a single convolution runs on W0 + ΔW, so there is
no side branch over the activations. ΔW is always built with autocast off (so TenVOO's T(θ) − T(θ0) is
exactly 0 at step 0 under AMP too); the convolution itself still runs in the autocast dtype. Merged, the
layer simply calls the base layer: inference costs exactly the base's time.

Weights keep their layout: Conv3d (C_out, C_in, k_d, k_h, k_w), Linear (out, in). Low-rank methods
work on the flattened matrix (out, fan_in) with fan_in = C_in·k_d·k_h·k_w (Linear: in).
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import AdapterError

SUPPORTED_LAYERS = (nn.Conv3d, nn.Linear)


class AdapterLayer(nn.Module):
    """Wrap ``base`` (kept as child ``base``, frozen); subclasses define ΔW and register θ."""

    def __init__(self, base: nn.Conv3d | nn.Linear, rank: int):
        super().__init__()
        if not isinstance(base, SUPPORTED_LAYERS):
            raise AdapterError(
                f"Adapters wrap nn.Conv3d and nn.Linear layers, not {type(base).__name__}.",
                hint="Target the inner convolution (MONAI: 'conv1.conv', not 'conv1').",
            )
        check_rank(rank)
        self.base = base
        self.rank = int(rank)
        self.merged = False
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)

    # -- shapes ---------------------------------------------------------------------------------
    @property
    def is_conv(self) -> bool:
        return isinstance(self.base, nn.Conv3d)

    @property
    def out_features(self) -> int:
        return self.base.weight.shape[0]

    @property
    def fan_in(self) -> int:
        """Inputs per output unit: C_in/groups·k_d·k_h·k_w (Conv3d) or in_features (Linear)."""
        return math.prod(self.base.weight.shape[1:])

    def new_tensor(self, *shape: int) -> torch.Tensor:
        """Empty tensor on the base weight's device and dtype (meta stays meta)."""
        return self.base.weight.new_empty(shape)

    # -- the verbs --------------------------------------------------------------------------------
    def delta_weight(self) -> torch.Tensor:
        """ΔW(θ), same shape as the base weight."""
        raise NotImplementedError

    def adapted_weight(self) -> torch.Tensor:
        """The weight the forward uses: W0 + ΔW (DoRA rescales it)."""
        return self.base.weight + self.delta_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base(x)
        with torch.autocast(self.base.weight.device.type, enabled=False):  # ΔW in full precision under AMP
            weight = self.adapted_weight()
        if self.is_conv:
            return self.base._conv_forward(x, weight, self.base.bias)
        return F.linear(x, weight, self.base.bias)

    @torch.no_grad()
    def merge(self) -> None:
        """Write W0 + ΔW into the base weight (forward then runs the plain base layer)."""
        if not self.merged:
            self.base.weight.copy_(self.adapted_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore W0 in the base weight."""
        if self.merged:
            self.base.weight.copy_(self.unmerged_weight())
            self.merged = False

    def unmerged_weight(self) -> torch.Tensor:
        """W0 recovered from the merged base weight (additive methods: W − ΔW)."""
        return self.base.weight - self.delta_weight()

    def adapter_parameters(self) -> Iterator[nn.Parameter]:
        """θ: every parameter of this layer except the base layer's own."""
        return (p for name, p in self.named_parameters() if not name.startswith("base."))

    def num_adapter_parameters(self) -> int:
        return sum(p.numel() for p in self.adapter_parameters())

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """θ plus the persistent buffers needed to rebuild ΔW (e.g. TenVOO's θ0), keyed by local name."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("base.")}

    def load_adapter_state(self, state: dict[str, torch.Tensor], where: str = "") -> None:
        """Copy ``adapter_state()``-style tensors in; shapes must match (resize variable-rank layers first)."""
        own = self.adapter_state()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
        if missing or unexpected or wrong:
            raise AdapterError(
                f"Adapter tensors for layer {where or type(self).__name__} do not fit: "
                f"missing {missing}, unexpected {unexpected}, wrong shape {wrong}.",
                hint="The adapter was saved with other options or ranks; load it with the options in its adapter.json.",
            )
        self.load_state_dict(state, strict=False)

    def resize(self, rank: int) -> None:
        """Change the rank before loading a saved state; only growing methods (SeLoRA) allow it."""
        if rank != self.rank:
            raise AdapterError(f"{type(self).__name__} has a fixed rank {self.rank}; cannot set {rank}.",
                               hint="Load the adapter with the rank it was saved with.")

    def effective_rank(self) -> int:
        """The rank in use now (AdaLoRA: unmasked triplets, DyLoRA: inference rank)."""
        return self.rank

    def metadata(self) -> dict[str, Any]:
        """Per-layer facts for adapter.json beyond the rank (SeLoRA: rank history)."""
        return {}

    def load_metadata(self, metadata: dict[str, Any]) -> None:
        """Restore what ``metadata()`` wrote."""

    def extra_repr(self) -> str:
        return f"rank={self.rank}, merged={self.merged}"


def check_rank(rank: Any, name: str = "rank") -> int:
    """A positive integer, or AdapterError."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise AdapterError(f"The adapter {name} must be a positive integer, got {rank!r}.",
                           hint=f"Use {name} ≥ 1 (e.g. 4).")
    return rank


def kaiming_uniform_(tensor: torch.Tensor, fan_in: int, gain: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """U(−b, b) with b = gain·√(3 / fan_in), torch's kaiming_uniform_ with an explicit fan-in."""
    bound = gain * math.sqrt(3.0 / fan_in)
    with torch.no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


LORA_DOWN_GAIN = math.sqrt(2.0 / (1 + 5))
"""kaiming_uniform_(a=√5) gain as in peft/LyCORIS for the down (A) matrix: b = 1/√fan_in."""
