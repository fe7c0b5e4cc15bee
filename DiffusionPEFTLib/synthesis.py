"""Synthesis: sample new volumes from a (fine-tuned) 3D DDPM with DDIM or (respaced) DDPM — in pixel space, or on
a latent model's latent grid followed by its decoder (whole or in windows: models/tiled_decode.py)."""

from __future__ import annotations

import torch

from .cancel import CancelToken
from .errors import InputError
from .events import EventSink, ListSink
from .models.diffusion_model import DiffusionModel
from .models.tiled_decode import Decoding

SAMPLERS = ("ddim", "ddpm")


@torch.no_grad()
def sample(model: DiffusionModel, count: int, steps: int = 50, sampler: str = "ddim", eta: float = 0.0,
           generator: torch.Generator | None = None, class_label: int | None = None, batch_size: int = 1,
           events: EventSink | None = None, cancel: CancelToken | None = None,
           conditions: dict[str, float] | None = None, decoding: Decoding | None = None,
           start: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
    """Draw ``count`` volumes → (count, C, X, Y, Z) in the model's intensity range (on the CPU).

    steps: denoising steps on an evenly spaced grid from T−1 to 0. sampler: "ddim" (``eta`` = 0:
    deterministic given the start noise) or "ddpm" (ancestral). Noise comes from ``generator``
    (CPU) so a seed gives the same volumes on every run of the same device. conditions: named numbers for a
    model conditioned on them (e.g. {"age": 0.6}; the others take their defaults). decoding: how a latent model
    decodes (None: whole; resolve ``auto`` against a budget with memory.resolve_decoding first); InputError for a
    tiled decoding of a pixel model, which has nothing to decode. start: (volumes (count, C, X, Y, Z) in the
    model's range, step t) to begin from those volumes noised to the grid's largest step ≤ t instead of pure
    noise (SDEdit; pixel models): t = T−1 is almost plain sampling, a small t returns close to the volumes.
    """
    if sampler not in SAMPLERS:
        raise InputError(f"Unknown sampler '{sampler}'.", hint=f"Use one of {', '.join(SAMPLERS)}.")
    if count < 1 or steps < 1:
        raise InputError("The number of samples and of steps must be at least 1.", hint="Use --n ≥ 1 and --steps ≥ 1.")
    events, cancel = events or ListSink(), cancel or CancelToken()
    generator = generator or torch.Generator().manual_seed(0)
    model.check_class_label(class_label)
    model.sampling_condition(conditions, 1)  # unknown names or values are refused before any work
    latent = model.config.task == "latent"
    if decoding is not None and (decoding.tiled or decoding.window is not None) and not latent:
        raise InputError("Tiled decoding is for latent models; this model samples volumes directly.",
                         hint="Leave --decode and --decode-window out.")
    device = model.device
    grid = model.schedule.timesteps(steps)
    if start is not None:
        grid = starting_grid(model, count, grid, *start)
    outputs = []
    total = len(grid) * ((count + batch_size - 1) // batch_size)
    done = 0
    for begin in range(0, count, batch_size):
        size = min(batch_size, count - begin)
        shape = (size, model.out_channels, *model.grid_shape)
        x = torch.randn(shape, generator=generator).to(device)
        if start is not None:
            first = torch.full((size,), grid[0], device=device, dtype=torch.long)
            x = model.schedule.add_noise(start[0][begin:begin + size].to(device, x.dtype), x, first)
        labels = torch.full((size,), class_label, device=device, dtype=torch.long) if class_label is not None else None
        condition = model.sampling_condition(conditions, size)
        for index, t in enumerate(grid):
            cancel.raise_if_requested("Sampling")
            t_prev = grid[index + 1] if index + 1 < len(grid) else -1
            x0, eps = model.denoise(x, t, labels, condition)
            noise = torch.randn(shape, generator=generator).to(device) if (sampler == "ddpm" or eta > 0) else None
            if sampler == "ddim":
                x = model.schedule.ddim_step(x, x0, eps, t, t_prev, eta, noise)
            else:
                x = model.schedule.ddpm_step(x, x0, t, t_prev, noise)
            done += 1
            events.progress("sample", done, total)
        outputs.append((model.decode(x, decoding) if latent else model.decode(x)).float().cpu())
    return torch.cat(outputs)


def starting_grid(model: DiffusionModel, count: int, grid: list[int], volumes: torch.Tensor, step: int) -> list[int]:
    """The part of the step grid at or below ``step`` for sampling from ``volumes``; InputError when the volumes are
    not ``count`` volumes on the model's grid, the model is latent, or no grid step is ≤ ``step``."""
    expected = (count, model.out_channels, *model.grid_shape)
    if model.config.task == "latent":
        raise InputError("Starting from volumes needs a pixel-space model.", hint="Sample this model from noise.")
    if tuple(volumes.shape) != expected:
        raise InputError(f"The start volumes have shape {tuple(volumes.shape)}; sampling {count} needs {expected}.",
                         hint="Give one volume per sample on the model's grid, in its intensity range.")
    kept = [t for t in grid if t <= step]
    if not kept:
        raise InputError(f"No sampling step is at or below {step}.", hint=f"Use a start step ≥ {grid[-1]}.")
    return kept
