"""Translate with a trained bridge: start at the source, run the bridge sampler, unpuzzle; K samples → mean, std."""

from __future__ import annotations

import torch

from ..cancel import CancelToken
from ..events import EventSink, ListSink
from .model import TranslationModel


@torch.no_grad()
def translate(model: TranslationModel, sources: torch.Tensor, steps: int = 25, samples: int = 1, eta: float = 0.0,
              generator: torch.Generator | None = None, events: EventSink | None = None,
              cancel: CancelToken | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Translate ``sources`` (B, 1, X, Y, Z) in the model range → (mean, std) of ``samples`` draws, each
    (B, 1, X, Y, Z) on the CPU; std is None for one sample. ``eta`` > 0 is needed for samples to differ
    (the chain starts at the source itself); with ``eta`` = 0 the result is deterministic."""
    events, cancel = events or ListSink(), cancel or CancelToken()
    generator = generator or torch.Generator().manual_seed(0)
    shape = tuple(sources.shape[2:])
    source = model.puzzle.puzzle(sources.to(model.device))
    grid = model.bridge.sampling_grid(steps)
    draws = []
    for draw in range(samples):
        x = source.clone()
        for index, (t, t_next) in enumerate(zip(grid, grid[1:])):
            cancel.raise_if_requested("Translation")
            x0_hat = model.predict_x0(x, source, t)
            noise = torch.randn(x.shape, generator=generator).to(x.device) if eta > 0 and t_next > 0 else None
            x = model.bridge.step(x, x0_hat, source, t, t_next, eta, noise)
            events.progress("translate", draw * (len(grid) - 1) + index + 1, samples * (len(grid) - 1))
        draws.append(model.puzzle.unpuzzle(x, shape).float().cpu())
    stacked = torch.stack(draws)
    return stacked.mean(dim=0), (stacked.std(dim=0) if samples > 1 else None)
