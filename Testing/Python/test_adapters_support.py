"""Shared helpers for the adapter tests: a tiny 3D UNet that behaves like a pretrained one, and a real
minimal trainer that drives ``TrainingCallback`` hooks in the documented order. (No tests here.)"""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from DiffusionPEFTLib.models import preset_config


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One torch thread while an adapter test module runs: on the shared 2-core test machine two threads per
    process oversubscribe the cores and the adapter tests run ~10× slower. Restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


TINY_ARCHITECTURE = dict(spatial_dims=3, in_channels=1, out_channels=1, num_res_blocks=1, channels=(8, 16, 16),
                         attention_levels=(False, False, True), norm_num_groups=8, num_head_channels=(0, 0, 16))

TENVOO_ARCHITECTURE = preset_config("tenvoo").unet  # TenVOO's pretrained UNet (166,669,313 parameters)


def tiny_unet(seed: int = 0, **overrides) -> DiffusionModelUNet:
    """Tiny UNet whose zero-initialised layers (resnet conv2, out conv) got small random weights, as a
    pretrained base would have them — otherwise adapters behind them see no gradient."""
    torch.manual_seed(seed)
    model = DiffusionModelUNet(**{**TINY_ARCHITECTURE, **overrides})
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1 and not param.any():
                param.normal_(0.0, 0.05)
    return model


def fingerprint(model: nn.Module) -> str:
    """sha256 over the base weights (what the model package would give)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def unet_batch(seed: int = 1, batch: int = 1, size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x, timesteps, target) for an ε-MSE loss."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 1, size, size, size, generator=generator)
    timesteps = torch.randint(0, 1000, (batch,), generator=generator)
    target = torch.randn(batch, 1, size, size, size, generator=generator)
    return x, timesteps, target


class MiniTrainer:
    """The trainer protocol the callbacks rely on: ``model``, ``optimizer`` (AdamW), ``loss_on(batch)``."""

    def __init__(self, model: nn.Module, parameters, callbacks=(), lr: float = 1e-2):
        self.model = model
        self.optimizer = torch.optim.AdamW(list(parameters), lr=lr)
        self.callbacks = list(callbacks)

    def loss_on(self, batch) -> torch.Tensor:
        *inputs, target = batch
        return F.mse_loss(self.model(*inputs), target)

    def train_step(self, step: int, batch) -> float:
        self.model.train()
        for callback in self.callbacks:
            callback.before_forward(self, step)
        loss = self.loss_on(batch)
        for callback in self.callbacks:
            extra = callback.extra_loss(self)
            if extra is not None:
                loss = loss + extra
        loss.backward()
        for callback in self.callbacks:
            callback.after_backward(self, step)
        self.optimizer.step()
        self.optimizer.zero_grad()
        for callback in self.callbacks:
            callback.after_step(self, step, batch)
        return loss.item()
