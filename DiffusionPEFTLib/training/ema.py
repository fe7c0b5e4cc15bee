"""An exponential moving average (EMA) of the trained weights, kept beside the training run.

Diffusion models are sampled from the average, not the last iterate (Ho et al. 2020, Nichol & Dhariwal
2021): on a short CPU run the last weights still carry the optimizer's step-to-step noise, which shows
as blotchy inner structure in the samples. After every optimizer step

    w̄ ← decay · w̄ + (1 − decay) · w        (w̄ = w after the first step)

by PyTorch's ``AveragedModel`` with ``get_ema_multi_avg_fn``. The average is part of the checkpoint, so
``--resume`` continues it exactly; at the end the command writes the average as the model's weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .callbacks import TrainingCallback


class WeightAverage(TrainingCallback):
    """EMA of ``module``'s parameters with ``decay`` in (0, 1); buffers are not averaged (the UNet has none that
    train)."""

    def __init__(self, module: nn.Module, decay: float):
        self.module = module
        self.decay = decay
        self.average = AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)

    @property
    def averaged(self) -> nn.Module:
        """A copy of ``module`` that holds the averaged weights (read it, e.g. to snapshot or sample from it)."""
        return self.average.module

    def after_step(self, trainer: Any, step: int, batch: Any) -> None:
        self.average.update_parameters(self.module)

    def state_dict(self) -> dict:
        return {name: tensor.detach().clone() for name, tensor in self.average.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Write the averaged parameters into ``module`` (the same architecture as the averaged one)."""
        for target, averaged in zip(module.parameters(), self.averaged.parameters()):
            target.copy_(averaged)


def weight_average(module: nn.Module, decay: float | None) -> WeightAverage | None:
    """A :class:`WeightAverage` of ``module`` with ``decay``, or None when no average is asked for (``decay`` None)."""
    return WeightAverage(module, decay) if decay is not None else None
