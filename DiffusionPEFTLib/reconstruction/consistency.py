"""Data consistency for a diffusion prior, in the model's intensity units.

The prior works on real volumes x in the model range; the scanner measured y = A(a·x + b) (``a``, ``b``:
the linear map from the model range to scanner units, see :class:`Measurement`). Since A is linear,
y_model = (y − b·A1) / a = A x, so every rule below works on model-unit tensors:

- ``project`` (DDNM / hard projection): x̂0 ← x̂0 + A†(y − A x̂0), the closest image that agrees with every
  acquired sample. One coil: A† = Aᴴ, exact in one step. Coils: A† by conjugate gradients on AᴴA (from 0,
  CG stays in range(Aᴴ), so it converges to the minimum-norm correction).
- ``refine`` (DDS): a few CG steps on (AᴴA + λI) x = Aᴴy + λ x̂0 started at x̂0 — pulled towards the data,
  kept near the prior's estimate.
- DPS (in :mod:`.posterior`) instead differentiates ‖y − A x̂0(x_t)‖ through the network.

CG is written here (not scipy/sigpy's) because it runs on batched complex torch tensors inside the sampling
loop, on the sampling device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .kspace import MRIOperator


@dataclass
class Measurement:
    """Acquired k-space ``kspace`` (C, X, Y, Z) complex64 (zeros where not sampled), its ``operator``, and
    the model-range → scanner-unit map: scanner = scale · model + offset."""

    kspace: torch.Tensor
    operator: MRIOperator
    scale: float
    offset: float

    def model_units(self) -> torch.Tensor:
        """y_model = (y − offset · A1) / scale, (1, C, X, Y, Z)."""
        ones = torch.ones((1, *self.kspace.shape[1:]), dtype=torch.complex64, device=self.kspace.device)
        return (self.kspace[None] - self.offset * self.operator.forward(ones)) / self.scale

    def scanner_units(self, image: torch.Tensor) -> torch.Tensor:
        """A model-unit image (B, X, Y, Z) (complex or real) in scanner units."""
        return self.scale * image + self.offset


def conjugate_gradient(apply, rhs: torch.Tensor, start: torch.Tensor, iterations: int) -> torch.Tensor:
    """Solve apply(x) = rhs for a Hermitian positive (semi-)definite ``apply`` by ``iterations`` CG steps
    from ``start``; batched over the first axis (each item has its own step sizes)."""
    x = start.clone()
    residual = rhs - apply(x)
    direction = residual.clone()
    power = _dot(residual, residual)
    for _ in range(iterations):
        product = apply(direction)
        step = power / _dot(direction, product).clamp(min=1e-30)
        x = x + _expand(step, x) * direction
        residual = residual - _expand(step, x) * product
        new_power = _dot(residual, residual)
        direction = residual + _expand(new_power / power.clamp(min=1e-30), x) * direction
        power = new_power
    return x


def project(image: torch.Tensor, y: torch.Tensor, operator: MRIOperator, iterations: int = 20) -> torch.Tensor:
    """The image closest to ``image`` (B, X, Y, Z) that reproduces ``y`` on the acquired samples (complex)."""
    image = image.to(torch.complex64)
    correction = operator.adjoint(y - operator.forward(image))
    if operator.coils == 1:
        return image + correction
    delta = conjugate_gradient(operator.normal, correction, torch.zeros_like(image), iterations)
    return image + delta


def refine(image: torch.Tensor, y: torch.Tensor, operator: MRIOperator, iterations: int = 5,
           weight: float = 0.01) -> torch.Tensor:
    """DDS: ``iterations`` CG steps on (AᴴA + λI) x = Aᴴy + λ·image from ``image``; λ = ``weight``."""
    image = image.to(torch.complex64)
    return conjugate_gradient(lambda x: operator.normal(x) + weight * x, operator.adjoint(y) + weight * image,
                              image, iterations)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Re⟨a, b⟩ per batch item, (B,)."""
    return (a.conj() * b).real.flatten(1).sum(dim=1)


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.ndim - 1)))
