"""Activation checkpointing per U-Net block: keep only each block's inputs during the forward pass and
recompute its activations in the backward pass (``torch.utils.checkpoint``, non-reentrant).

The blocks are MONAI ``DiffusionModelUNet``'s down blocks, middle block and up blocks. Each block's
``forward`` is replaced on the instance (the module tree, its names and its state dict stay as they are),
so adapters injected before or after — they wrap Conv3d/Linear layers inside the blocks — are part of the
recomputation, and AMP applies to it as to the first pass (non-reentrant checkpointing restores the autocast
state). Random state is restored for the recomputation, so the loss and every gradient equal those without
checkpointing. Under ``torch.no_grad`` (validation, sampling) a block runs as usual.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ModelError


def unet_blocks(unet: nn.Module) -> list[nn.Module]:
    """The down blocks, the middle block and the up blocks of a ``DiffusionModelUNet``."""
    if not all(hasattr(unet, name) for name in ("down_blocks", "middle_block", "up_blocks")):
        raise ModelError(f"Activation checkpointing needs a MONAI DiffusionModelUNet, not a {type(unet).__name__}.",
                         hint="Train without --checkpointing.")
    return [*unet.down_blocks, unet.middle_block, *unet.up_blocks]


def set_activation_checkpointing(unet: nn.Module, enabled: bool) -> None:
    """Turn checkpointing of every block of ``unet`` on or off (idempotent; off is a no-op for another network)."""
    if not enabled and not hasattr(unet, "down_blocks"):
        return
    for block in unet_blocks(unet):
        if enabled:
            block.forward = _checkpointed_forward(block)
        else:
            block.__dict__.pop("forward", None)


def uses_activation_checkpointing(unet: nn.Module) -> bool:
    return any("forward" in block.__dict__ for block in unet_blocks(unet))


def _checkpointed_forward(block: nn.Module):
    plain = type(block).forward

    def forward(*args, **kwargs):
        if not torch.is_grad_enabled():
            return plain(block, *args, **kwargs)
        return checkpoint(plain, block, *args, use_reentrant=False, **kwargs)

    return forward
