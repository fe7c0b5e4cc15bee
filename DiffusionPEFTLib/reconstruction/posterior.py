"""Posterior sampling with a diffusion prior: K reconstructions → mean and per-voxel standard deviation.

One DDIM loop (the prior's own schedule) with a data-consistency rule per method, all in model units
(see :mod:`.consistency`):

- ``ddnm``: x̂0 ← project(x̂0) at every step, then the DDIM step from the rectified x̂0 (no backprop).
- ``dds``: x̂0 ← a few CG steps towards the data (``dds_iterations``, λ = ``dds_weight``), then DDIM.
- ``dps``: DDIM step from the plain x̂0, then x_{t−1} −= ζ′ ∇_{x_t} ‖y − A x̂0(x_t)‖ (the normalised step
  ζ′/‖r‖ · ∇‖r‖² of Chung et al., up to its factor 2, as their code does), the gradient through the network.

The last x̂0 of ddnm is exactly consistent with the acquired k-space; the returned samples are complex
(the network is real-valued; consistency puts the acquired phase back), their magnitude is the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..cancel import CancelToken
from ..errors import InputError
from ..events import EventSink, ListSink
from ..models.diffusion_model import DiffusionModel
from .consistency import Measurement, project, refine

DIFFUSION_METHODS = ("ddnm", "dds", "dps")


@dataclass
class PosteriorSettings:
    """steps: DDIM steps; eta: DDIM noise in [0, 1]; dps_scale: ζ′; dds_iterations / dds_weight: CG steps
    and λ of DDS; project_iterations: CG steps of the multi-coil projection."""

    steps: int = 50
    eta: float = 0.85
    dps_scale: float = 1.0
    dds_iterations: int = 5
    dds_weight: float = 0.01
    project_iterations: int = 20


def posterior_samples(model: DiffusionModel, measurement: Measurement, method: str, samples: int,
                      settings: PosteriorSettings, generator: torch.Generator, class_label: int | None = None, events: EventSink | None = None,
                      cancel: CancelToken | None = None) -> torch.Tensor:
    """``samples`` reconstructions with ``method`` (one of DIFFUSION_METHODS) as complex (K, X, Y, Z) in scanner
    units, drawn together as one batch."""
    if method not in DIFFUSION_METHODS:
        raise InputError(f"Unknown diffusion reconstruction method '{method}'.",
                         hint=f"Use one of {', '.join(DIFFUSION_METHODS)}.")
    events, cancel = events or ListSink(), cancel or CancelToken()
    model.check_class_label(class_label)
    device = model.device
    y = measurement.model_units().to(device)
    operator = measurement.operator
    shape = (samples, 1, *model.grid_shape)
    labels = torch.full((samples,), class_label, device=device, dtype=torch.long) if class_label is not None else None
    grid = model.schedule.timesteps(settings.steps)
    x = torch.randn(shape, generator=generator).to(device)
    consistent = None
    for index, t in enumerate(grid):
        cancel.raise_if_requested("Reconstruction")
        t_prev = grid[index + 1] if index + 1 < len(grid) else -1
        noise = torch.randn(shape, generator=generator).to(device) if settings.eta > 0 else None
        if method == "dps":
            x, consistent = _dps_step(model, x, t, t_prev, labels, y, measurement, settings, noise)
        else:
            with torch.no_grad():
                x0, eps = model.denoise(x, t, labels)
                if method == "ddnm":
                    consistent = project(x0[:, 0], y, operator, settings.project_iterations)
                else:
                    consistent = refine(x0[:, 0], y, operator, settings.dds_iterations, settings.dds_weight)
                x = model.schedule.ddim_step(x, consistent.real[:, None], eps, t, t_prev, settings.eta, noise)
        events.progress("reconstruct", index + 1, len(grid))
    return measurement.scanner_units(consistent.detach()).cpu()


def _dps_step(model, x, t, t_prev, labels, y, measurement: Measurement, settings: PosteriorSettings, noise):
    """One DPS step → (x_{t_prev}, x̂0 as complex (B, X, Y, Z)); the network's graph lives only inside."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        x0, eps = model.denoise(x, t, labels)
        residual = (y - measurement.operator.forward(x0[:, 0].to(torch.complex64))).flatten(1)
        distance = torch.linalg.vector_norm(residual, dim=1)
        gradient, = torch.autograd.grad(distance.sum(), x)
    with torch.no_grad():
        x_prev = model.schedule.ddim_step(x.detach(), x0.detach(), eps.detach(), t, t_prev, settings.eta, noise)
        return x_prev - settings.dps_scale * gradient, x0.detach()[:, 0].to(torch.complex64)
