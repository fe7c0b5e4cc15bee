"""DyLoRA (Valipour et al., EACL 2023): LoRA trained so that every truncation rank b ≤ r_max works.

Each training step samples b ~ U{min_rank, …, max_rank} (one b for all layers, ``DyLoRARankSampler``) and
uses ΔW = (α/b) · B[:, :b] · A[:b] ("frozen" mode of the paper): rows/columns before b enter detached,
so only the b-th row of A and the b-th column of B receive a gradient. Rows and columns are separate
parameters (``down_rows.i`` (1, fan_in), ``up_columns.i`` (out, 1)), so the untouched ones have
``grad is None`` and the optimizer skips them entirely (no momentum drift, no weight decay).
Outside training (or with no rank sampled) ΔW uses ``inference_rank`` (default max_rank), settable to any
b in 1…max_rank without retraining. Init as LoRA: A kaiming(a=√5), B = 0.
Parameters: max_rank·(fan_in + out), as LoRA at r = max_rank.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import AdapterError
from .base import LORA_DOWN_GAIN, AdapterLayer, check_rank, kaiming_uniform_
from ..training.callbacks import TrainingCallback


class DyLoRALayer(AdapterLayer):
    """Nested low-rank adapter; ``rank`` is r_max."""

    def __init__(self, base: nn.Conv3d | nn.Linear, rank: int, alpha: float | None = None):
        super().__init__(base, rank)
        self.alpha = float(rank if alpha is None else alpha)
        self.down_rows = nn.ParameterList(
            nn.Parameter(kaiming_uniform_(self.new_tensor(1, self.fan_in), self.fan_in, LORA_DOWN_GAIN))
            for _ in range(rank))
        self.up_columns = nn.ParameterList(
            nn.Parameter(self.new_tensor(self.out_features, 1).zero_()) for _ in range(rank))
        self.inference_rank = rank
        self.sampled_rank: int | None = None

    def set_inference_rank(self, rank: int) -> None:
        if check_rank(rank) > self.rank:
            raise AdapterError(f"DyLoRA inference rank {rank} exceeds the trained maximum {self.rank}.",
                               hint=f"Choose a rank between 1 and {self.rank}.")
        self.inference_rank = rank

    def rank_in_use(self) -> int:
        return self.sampled_rank if self.training and self.sampled_rank is not None else self.inference_rank

    def delta_weight(self) -> torch.Tensor:
        b = self.rank_in_use()
        rows, columns = list(self.down_rows[:b]), list(self.up_columns[:b])
        if self.training and self.sampled_rank is not None:
            rows[:-1] = [row.detach() for row in rows[:-1]]
            columns[:-1] = [column.detach() for column in columns[:-1]]
        product = torch.cat(columns, dim=1) @ torch.cat(rows, dim=0)
        return (self.alpha / b * product).view_as(self.base.weight)

    def merge(self) -> None:
        """Merges at ``inference_rank`` (a sampled training rank is dropped)."""
        self.sampled_rank = None
        super().merge()

    def effective_rank(self) -> int:
        return self.inference_rank

    def metadata(self) -> dict[str, Any]:
        return {"inference_rank": self.inference_rank}

    def load_metadata(self, metadata: dict[str, Any]) -> None:
        self.set_inference_rank(metadata.get("inference_rank", self.rank))

    def extra_repr(self) -> str:
        return f"max_rank={self.rank}, inference_rank={self.inference_rank}, alpha={self.alpha:g}, merged={self.merged}"


def validate_dylora_options(options: dict) -> None:
    check_rank(options["min_rank"], "min_rank")
    if options["min_rank"] > options["rank"]:
        raise AdapterError(f"DyLoRA min_rank ({options['min_rank']}) exceeds rank ({options['rank']}).",
                           hint="rank is the maximum rank r_max; use min_rank ≤ rank.")


class DyLoRARankSampler(TrainingCallback):
    """Draws this step's truncation rank b ~ U{min_rank…max_rank} before every forward (seeded)."""

    def __init__(self, layers: Mapping[str, DyLoRALayer], min_rank: int, max_rank: int, seed: int = 0):
        self.layers = dict(layers)
        self.min_rank, self.max_rank = min_rank, max_rank
        self.generator = torch.Generator().manual_seed(seed)
        self.last_rank: int | None = None

    def before_forward(self, trainer: Any, step: int) -> None:
        self.last_rank = int(torch.randint(self.min_rank, self.max_rank + 1, (1,), generator=self.generator))
        for layer in self.layers.values():
            layer.sampled_rank = self.last_rank

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
