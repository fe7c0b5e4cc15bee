"""Held-out denoising loss: how well a model predicts its training target on volumes it never saw.

The same fixed noise and timesteps for every model, so two models (base vs fine-tuned, two learning
rates) are compared on identical inputs — a cheap, low-variance check that needs no sampling.
"""

from __future__ import annotations

from typing import Sequence

import torch

TIMESTEPS = (50, 200, 400, 600, 800)


@torch.no_grad()
def denoising_loss(model, x0: torch.Tensor, timesteps: Sequence[int] = TIMESTEPS, seed: int = 3,
                   class_label: int | None = None) -> float:
    """Mean of ``model.loss`` over ``timesteps`` for x0 (B, C, X, Y, Z) in the model's intensity range, as class
    ``class_label`` for a class-conditioned model.

    Noise is drawn on the CPU from ``seed`` (one draw per timestep), so the value is reproducible.
    """
    generator = torch.Generator().manual_seed(seed)
    device = model.device
    x0 = x0.to(device, torch.float32)
    labels = None if class_label is None else torch.full((x0.shape[0],), class_label, device=device)
    losses = []
    for t in timesteps:
        noise = torch.randn(x0.shape, generator=generator).to(device)
        losses.append(model.loss(x0, noise, torch.full((x0.shape[0],), int(t), device=device), labels).item())
    return sum(losses) / len(losses)
