"""PPDM's puzzle-gradient loss: finite-difference gradients of the unpuzzled x̂0 against the target's.

Errors of the denoiser are partly independent across the p³ sub-volumes of a puzzled tensor, so after
unpuzzling they show as a seam pattern of period p. Comparing forward differences along each axis in the
unpuzzled grid penalises exactly those seams (our reading; PPDM's exact form is not public):

    L_pg = Σ_axis mean |∇_axis U(x̂0) − ∇_axis U(x0)|,   U = unpuzzle
"""

from __future__ import annotations

import torch

from .puzzle import Puzzle


def puzzle_gradient_loss(x0_hat: torch.Tensor, x0: torch.Tensor, puzzle: Puzzle,
                         shape: tuple[int, int, int]) -> torch.Tensor:
    """Scalar loss for puzzled tensors (B, C·p³, …) of an input grid ``shape``; differentiable in ``x0_hat``."""
    estimate, target = puzzle.unpuzzle(x0_hat, shape), puzzle.unpuzzle(x0, shape)
    total = x0_hat.new_zeros(())
    for axis in (2, 3, 4):
        total = total + (torch.diff(estimate, dim=axis) - torch.diff(target, dim=axis)).abs().mean()
    return total
