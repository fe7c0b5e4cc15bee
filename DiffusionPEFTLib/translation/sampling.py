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
    (the chain starts at the source itself); with ``eta`` = 0 the result is deterministic. The draws run as
    one batch of B·K volumes (memory grows with K)."""
    events, cancel = events or ListSink(), cancel or CancelToken()
    generator = generator or torch.Generator().manual_seed(0)
    shape, count = tuple(sources.shape[2:]), sources.shape[0]
    # all draws run as one batch: K chains cost less than K one-by-one (CPU conv3d is slow at batch 1)
    source = model.puzzle.puzzle(sources.to(model.device)).repeat(samples, 1, 1, 1, 1)
    grid = model.bridge.sampling_grid(steps)
    x = source.clone()
    for index, (t, t_next) in enumerate(zip(grid, grid[1:])):
        cancel.raise_if_requested("Translation")
        x0_hat = model.predict_x0(x, source, t)
        noise = torch.randn(x.shape, generator=generator).to(x.device) if eta > 0 and t_next > 0 else None
        x = model.bridge.step(x, x0_hat, source, t, t_next, eta, noise)
        events.progress("translate", index + 1, len(grid) - 1)
    unpuzzled = model.puzzle.unpuzzle(x, shape).float().cpu()
    draws = unpuzzled.reshape(samples, count, *unpuzzled.shape[1:])
    return draws.mean(dim=0), (draws.std(dim=0) if samples > 1 else None)
