"""Training hooks: how a fine-tuning method (AdaLoRA, SeLoRA, DyLoRA, …) takes part in the loop.

The :class:`~DiffusionPEFTLib.training.Trainer` calls them around every optimizer step.

Order within one optimizer step ``step`` (0-based):

    before_forward(trainer, step)          # DyLoRA samples this step's rank
    loss = diffusion loss (+ Σ extra_loss(trainer))   # AdaLoRA orthogonality penalty
    loss.backward()
    after_backward(trainer, step)          # grads present, unscaled (AMP: after scaler.unscale_), before optimizer.step()
    optimizer.step(); optimizer.zero_grad()
    after_step(trainer, step, batch)       # SeLoRA growth test on the same batch; AdaLoRA masking

``trainer`` needs ``model`` (nn.Module), ``optimizer`` (torch.optim.Optimizer holding the adapter
parameters) and ``loss_on(batch) -> scalar tensor`` (same x0, noise and timesteps for the same batch).
For ``--resume``: call every callback's ``load_state_dict`` right after injecting and BEFORE loading the
model weights and building the optimizer (SeLoRA resizes its layers there). Early stopping returns to its
best state through ``restore`` (callbacks first, then the weights).
"""

from __future__ import annotations

from typing import Any

import torch


class TrainingCallback:
    """No-op base; a method overrides the hooks it needs."""

    def before_forward(self, trainer: Any, step: int) -> None:
        """Before the loss of optimizer step ``step`` is computed."""

    def extra_loss(self, trainer: Any) -> torch.Tensor | None:
        """A term added to the diffusion loss, or None."""
        return None

    def after_backward(self, trainer: Any, step: int) -> None:
        """Gradients are present and unscaled; the optimizer has not stepped yet."""

    def after_step(self, trainer: Any, step: int, batch: Any) -> None:
        """After ``optimizer.step()`` and ``zero_grad()``; ``batch`` is the step's last micro-batch."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``; see the module docstring for when it is called."""

    def restore(self, trainer: Any, state: dict) -> None:
        """Go back to a ``state_dict()`` taken earlier in this run (early stopping's best state), just before
        the trainer loads that state's weights; the optimizer keeps its state. SeLoRA shrinks its ranks here."""
        self.load_state_dict(state)
