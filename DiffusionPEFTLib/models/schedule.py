"""The DDPM noise schedule and the update rules our samplers use.

Betas come from MONAI's ``DDPMScheduler`` (same named schedules); the timestep grid and the
DDIM / respaced-DDPM updates are computed here from ᾱ_t, because MONAI's ``step`` methods assume
its own grids (which changed in 1.6) and its ``sample`` is wrapped in ``no_grad``.
All tensors are (B, C, X, Y, Z); timesteps are int64 of shape (B,).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ScheduleConfig


class NoiseSchedule(nn.Module):
    """ᾱ_t for t = 0 … T−1 (buffer ``alphas_cumprod``) plus forward noising and reverse steps."""

    def __init__(self, config: ScheduleConfig):
        super().__init__()
        from monai.networks.schedulers import DDPMScheduler

        monai_scheduler = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps, schedule=config.schedule,
            beta_start=config.beta_start, beta_end=config.beta_end, clip_sample=False,
            prediction_type=config.prediction_type,
        )
        self.config = config
        self.register_buffer("alphas_cumprod", monai_scheduler.alphas_cumprod.to(torch.float32), persistent=False)

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    def _abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """ᾱ_t broadcast to ``like``; t = −1 means "clean" (ᾱ = 1)."""
        abar = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], torch.ones_like(t, dtype=torch.float32))
        return abar.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε."""
        abar = self._abar(t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network should output: ε, v = √ᾱ ε − √(1−ᾱ) x0, or x0."""
        kind = self.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "sample":
            return x0
        abar = self._abar(t, x0)
        return abar.sqrt() * noise - (1 - abar).sqrt() * x0

    def split(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output → (x̂0, ε̂) for any prediction type."""
        abar = self._abar(t, x_t)
        kind = self.config.prediction_type
        if kind == "epsilon":
            eps = output
            x0 = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
        elif kind == "sample":
            x0 = output
            eps = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
        else:
            x0 = abar.sqrt() * x_t - (1 - abar).sqrt() * output
            eps = abar.sqrt() * output + (1 - abar).sqrt() * x_t
        return x0, eps

    def timesteps(self, num_steps: int) -> list[int]:
        """Descending grid of ``num_steps`` timesteps from T−1 to 0 (evenly spaced, rounded, unique)."""
        total = self.num_train_timesteps
        num_steps = max(1, min(int(num_steps), total))
        grid = torch.linspace(total - 1, 0, num_steps).round().long().tolist()
        return list(dict.fromkeys(grid))

    def ddim_step(self, x_t, x0, eps, t: int, t_prev: int, eta: float = 0.0, noise=None) -> torch.Tensor:
        """DDIM update from t to t_prev (t_prev = −1: the clean image). ``eta`` 0 = deterministic."""
        abar_t = self._scalar_abar(t)
        abar_prev = self._scalar_abar(t_prev)
        sigma = eta * ((1 - abar_prev) / (1 - abar_t)) ** 0.5 * (1 - abar_t / abar_prev) ** 0.5
        x_prev = abar_prev**0.5 * x0 + max(1 - abar_prev - sigma**2, 0.0) ** 0.5 * eps
        if sigma > 0 and noise is not None:
            x_prev = x_prev + sigma * noise
        return x_prev

    def ddpm_step(self, x_t, x0, t: int, t_prev: int, noise=None) -> torch.Tensor:
        """Ancestral DDPM update on a (possibly respaced) grid: sample q(x_{t_prev} | x_t, x̂0)."""
        abar_t = self._scalar_abar(t)
        abar_prev = self._scalar_abar(t_prev)
        beta = 1 - abar_t / abar_prev
        mean = (abar_prev**0.5 * beta / (1 - abar_t)) * x0 + ((1 - beta) ** 0.5 * (1 - abar_prev) / (1 - abar_t)) * x_t
        if t_prev < 0 or noise is None:
            return mean
        variance = beta * (1 - abar_prev) / (1 - abar_t)
        return mean + variance**0.5 * noise

    def _scalar_abar(self, t: int) -> float:
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])
