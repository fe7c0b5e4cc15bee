"""Direct bridge diffusion between a target x0 and its source y: the chain starts at the source, not at noise.

Forward marginal at step t ∈ {0, …, T} (both published parameterisations are of this form):

    x_t = a_t·x0 + b_t·y + s_t·ε,   a_0 = 1, b_0 = s_0 = 0,   a_T = 0, b_T = 1

- ``bbdm`` — Brownian bridge (Li et al., CVPR 2023): m_t = linspace(0.001, 0.999, T) for t = 1…T,
  a = 1 − m, b = m, s² = 2κ(m − m²) (κ = ``max_var``; variance κ/2 at the middle). We set m_T = 1 so that
  x_T = y exactly; BBDM's 0.999 would leave 0.1 % of the unknown target in a state that sampling starts
  from y anyway.
- ``i2sb`` — image-to-image Schrödinger bridge (Liu et al., ICML 2023): β_t with √β linear from √β_min to
  √β_max over the first half and mirrored; σ_t² = Σ_{τ≤t} β_τ, σ̄_t² = Σ_{τ>t} β_τ;
  a = σ̄²/(σ² + σ̄²), b = σ²/(σ² + σ̄²), s² = σ²σ̄²/(σ² + σ̄²); s_T = 0, so x_T = y exactly.

The network predicts either ``x0`` or the ``residual`` x_t − x0 (BBDM's objective). Sampling uses the bridge
analogue of DDIM: from x̂0 the noise estimate ε̂ = (x_t − a_t x̂0 − b_t y)/s_t, then
x_t' = a_t' x̂0 + b_t' y + √(s_t'² − σ²)·ε̂ + σ·z with σ = η·s_t' (η = 0: deterministic, η = 1: fresh noise);
with the true x0 in place of x̂0 it keeps the forward marginals at every step (tested), and any grid of
10–50 steps from T to 0 may be used. Both chains start at the source: x_T = y.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KINDS = ("bbdm", "i2sb")
PREDICTIONS = ("x0", "residual")


@dataclass(frozen=True)
class BridgeConfig:
    """kind: ``bbdm`` or ``i2sb``; timesteps T; max_var κ (BBDM); beta_min/beta_max (I2SB, per step);
    prediction: what the network outputs (``x0`` or ``residual``)."""

    kind: str = "bbdm"
    timesteps: int = 1000
    max_var: float = 1.0
    beta_min: float = 1e-4
    beta_max: float = 3e-4
    prediction: str = "x0"

    def __post_init__(self):
        if self.kind not in KINDS or self.prediction not in PREDICTIONS or self.timesteps < 2:
            raise ValueError(f"bridge kind ∈ {KINDS}, prediction ∈ {PREDICTIONS}, timesteps ≥ 2; got {self}")


class BridgeSchedule:
    """Coefficient tables a, b, s of shape (T + 1,) (float64) for one :class:`BridgeConfig`."""

    def __init__(self, config: BridgeConfig):
        self.config = config
        self.a, self.b, self.s = _coefficients(config)

    @property
    def num_timesteps(self) -> int:
        return self.config.timesteps

    def q_sample(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t for a batch: x0, y, noise (B, C, …), t (B,) integer steps in [0, T]."""
        a, b, s = (self._at(table, t, x0) for table in (self.a, self.b, self.s))
        return a * x0 + b * y + s * noise

    def training_target(self, x0: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """What the network should output for this x_t."""
        return x0 if self.config.prediction == "x0" else x_t - x0

    def predicted_x0(self, output: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """x̂0 from the network output."""
        return output if self.config.prediction == "x0" else x_t - output

    def sampling_grid(self, steps: int) -> list[int]:
        """``steps + 1`` integer steps from T down to 0 (evenly spaced, distinct)."""
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"steps must be in [1, {self.num_timesteps}], got {steps}")
        grid = torch.linspace(self.num_timesteps, 0, steps + 1).round().long().tolist()
        return list(dict.fromkeys(grid))

    def step(self, x_t: torch.Tensor, x0_hat: torch.Tensor, y: torch.Tensor, t: int, t_next: int,
             eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One sampler step from integer step ``t`` to ``t_next`` < t given the estimate x̂0 (see module doc)."""
        a, b, s = (float(table[t]) for table in (self.a, self.b, self.s))
        a_next, b_next, s_next = (float(table[t_next]) for table in (self.a, self.b, self.s))
        eps = (x_t - a * x0_hat - b * y) / s if s > 0 else torch.zeros_like(x_t)
        sigma = eta * s_next
        x_next = a_next * x0_hat + b_next * y + (s_next**2 - sigma**2) ** 0.5 * eps
        if sigma > 0:
            if noise is None:
                raise ValueError("a stochastic step (eta > 0) needs noise")
            x_next = x_next + sigma * noise
        return x_next

    @staticmethod
    def _at(table: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        values = table.to(like.device)[t.long()].to(like.dtype)
        return values.view(-1, *([1] * (like.dim() - 1)))


def _coefficients(config: BridgeConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    steps = config.timesteps
    if config.kind == "bbdm":
        m = torch.cat([torch.zeros(1, dtype=torch.float64), torch.linspace(0.001, 0.999, steps, dtype=torch.float64)])
        m[-1] = 1.0  # the chain ends on the source itself
        variance = 2 * config.max_var * (m - m**2)
        return 1 - m, m, variance.clamp(min=0).sqrt()
    half = torch.linspace(config.beta_min**0.5, config.beta_max**0.5, steps // 2, dtype=torch.float64) ** 2
    betas = torch.cat([half, half.flip(0)] if steps % 2 == 0 else [half, half[-1:], half.flip(0)])
    sigma2 = torch.cat([torch.zeros(1, dtype=torch.float64), betas.cumsum(0)])  # Σ_{τ≤t} β, t = 0…T
    total = sigma2[-1]
    sigma_bar2 = total - sigma2
    return sigma_bar2 / total, sigma2 / total, (sigma2 * sigma_bar2 / total).clamp(min=0).sqrt()
