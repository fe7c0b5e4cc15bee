"""Hooks that let a fine-tuning method take part in the training loop (AdaLoRA, SeLoRA, DyLoRA, …)."""

from __future__ import annotations

import torch


class TrainingCallback:
    """Override what you need. Called by :class:`~DiffusionPEFTLib.training.Trainer` in this order
    each optimizer step: before_forward → (forward, extra_loss, backward) × accumulation →
    after_backward → optimizer step → after_step."""

    def before_forward(self, trainer, step: int) -> None:
        """Before the step's first forward pass (e.g. sample a truncation rank)."""

    def extra_loss(self, trainer) -> torch.Tensor | None:
        """A term added to the diffusion loss (e.g. an orthogonality penalty)."""
        return None

    def after_backward(self, trainer, step: int) -> None:
        """Gradients are present and unscaled; the optimizer has not stepped yet."""

    def after_step(self, trainer, step: int, batch) -> None:
        """After optimizer.step() and zero_grad(); ``batch`` is the step's last micro-batch."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; runs before model parameters are restored on resume."""
