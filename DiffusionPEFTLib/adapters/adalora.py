"""AdaLoRA (Zhang et al., ICLR 2023): ΔW = s · P·diag(λ)·Q with a rank budget that shrinks during training.

P = ``lora_up`` (out, r), λ = ``lora_singular`` (r), Q = ``lora_down`` (r, fan_in); on a Conv3d Q is
(r, C_in·k³) and ΔW is reshaped to the kernel. s = α/r (α defaults to r). Init as peft: λ = 0,
P, Q ~ N(0, 0.02). Parameters: r·(fan_in + out + 1). The buffer ``active`` (r,) marks unmasked triplets.

``AdaLoRABudget`` (the trainer callback, peft's RankAllocator):
  importance per entry w of P, λ, Q: I = |w·∂L/∂w|, Ī ← β1·Ī + (1−β1)·I, Ū ← β2·Ū + (1−β2)·|I − Ī|, s = Ī·Ū;
  triplet score S_i = s(λ_i) + mean_j s(Q_ij) + mean_j s(P_ji);
  budget b(t): b(0) = r·#layers for t ≤ t_init; b(T) = target_rank·#layers for t > T − t_final; between,
  b(T) + (b(0) − b(T))·(1 − (t − t_init)/(T − t_init − t_final))³ (truncated to int);
  every ``delta_t`` steps the b(0) − b(t) lowest-scoring λ are set to 0 (P, Q keep training, so a masked
  triplet can come back); at t = T − t_final the mask is fixed and re-applied after every later step.
  Orthogonality penalty (``extra_loss``): γ·mean over all P, Q of ‖PᵀP − I‖_F, ‖QQᵀ − I‖_F (peft form).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..errors import AdapterError
from .base import AdapterLayer, check_rank
from ..training.callbacks import TrainingCallback


class AdaLoRALayer(AdapterLayer):
    """SVD-form adapter whose triplets (P[:, i], λ_i, Q[i]) can be masked."""

    def __init__(self, base: nn.Conv3d | nn.Linear, rank: int, alpha: float | None = None):
        super().__init__(base, rank)
        self.alpha = float(rank if alpha is None else alpha)
        self.scale = self.alpha / rank
        self.lora_down = nn.Parameter(self.new_tensor(rank, self.fan_in).normal_(0.0, 0.02))
        self.lora_singular = nn.Parameter(self.new_tensor(rank).zero_())
        self.lora_up = nn.Parameter(self.new_tensor(self.out_features, rank).normal_(0.0, 0.02))
        self.register_buffer("active", torch.ones(rank, dtype=torch.bool, device=base.weight.device))

    def delta_weight(self) -> torch.Tensor:
        product = self.lora_up @ (self.lora_singular[:, None] * self.lora_down)
        return (self.scale * product).view_as(self.base.weight)

    @torch.no_grad()
    def apply_mask(self, keep: torch.Tensor) -> None:
        """Keep triplets where ``keep`` (bool, r) is True; zero λ elsewhere."""
        self.active.copy_(keep)
        self.lora_singular.masked_fill_(~keep, 0.0)

    def orthogonality_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """‖PᵀP − I‖_F and ‖QQᵀ − I‖_F."""
        eye = torch.eye(self.rank, device=self.lora_up.device, dtype=self.lora_up.dtype)
        return (torch.linalg.matrix_norm(self.lora_up.T @ self.lora_up - eye),
                torch.linalg.matrix_norm(self.lora_down @ self.lora_down.T - eye))

    def effective_rank(self) -> int:
        return self.rank if self.active.is_meta else int(self.active.sum())

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"


def adalora_target_rank(options: dict) -> int:
    """The final average rank: ``target_rank`` if given, else two thirds of ``rank`` (peft's 8 of 12), ≥ 1."""
    if options["target_rank"] is not None:
        return options["target_rank"]
    return max(1, round(2 * options["rank"] / 3))


def validate_adalora_options(options: dict) -> None:
    target_rank = adalora_target_rank(options)
    check_rank(target_rank, "target_rank")
    check_rank(options["delta_t"], "delta_t")
    if target_rank > options["rank"]:
        raise AdapterError(f"AdaLoRA target_rank ({target_rank}) exceeds the initial rank ({options['rank']}).",
                           hint="rank is the initial rank (peft init_r, 12); target_rank the final average (8).")
    if options["tinit"] < 0 or options["tfinal"] < 0:
        raise AdapterError("AdaLoRA tinit and tfinal must be ≥ 0.", hint="Use step counts, e.g. tinit=200, tfinal=200.")
    for beta in ("beta1", "beta2"):
        if not 0 <= options[beta] < 1:
            raise AdapterError(f"AdaLoRA {beta} must be in [0, 1), got {options[beta]}.", hint="peft uses 0.85.")


class AdaLoRABudget(TrainingCallback):
    """Importance EMA after backward, budget masking after the step, orthogonality penalty in the loss."""

    def __init__(self, layers: Mapping[str, AdaLoRALayer], total_steps: int, target_rank: int, tinit: int = 0,
                 tfinal: int = 0, delta_t: int = 1, beta1: float = 0.85, beta2: float = 0.85,
                 orth_reg_weight: float = 0.5):
        if total_steps is None or total_steps <= tinit + tfinal:
            raise AdapterError(
                f"AdaLoRA needs the total number of optimizer steps (> tinit + tfinal = {tinit + tfinal}), "
                f"got {total_steps}.",
                hint="Pass total_steps = epochs × steps per epoch, or lower tinit/tfinal.")
        self.layers = dict(layers)
        self.total_steps, self.tinit, self.tfinal, self.delta_t = total_steps, tinit, tfinal, delta_t
        self.beta1, self.beta2, self.orth_reg_weight = beta1, beta2, orth_reg_weight
        self.initial_budget = sum(layer.rank for layer in self.layers.values())
        self.target_budget = target_rank * len(self.layers)
        self.sensitivity: dict[str, torch.Tensor] = {}
        self.uncertainty: dict[str, torch.Tensor] = {}

    def budget(self, step: int) -> tuple[int, bool]:
        """(b(step), whether to mask at this step) — peft's ``budget_schedule``."""
        if step <= self.tinit:
            return self.initial_budget, False
        if step > self.total_steps - self.tfinal:
            return self.target_budget, True
        progress = 1 - (step - self.tinit) / (self.total_steps - self.tfinal - self.tinit)
        budget = int((self.initial_budget - self.target_budget) * progress**3 + self.target_budget)
        return budget, step % self.delta_t == 0

    def extra_loss(self, trainer: Any) -> torch.Tensor | None:
        if self.orth_reg_weight == 0:
            return None
        terms = [t for layer in self.layers.values() for t in layer.orthogonality_terms()]
        return self.orth_reg_weight * torch.stack(terms).mean()

    def after_backward(self, trainer: Any, step: int) -> None:
        if step < self.total_steps - self.tfinal:
            self.update_importance()

    def after_step(self, trainer: Any, step: int, batch: Any) -> None:
        final_start = self.total_steps - self.tfinal
        if step < final_start:
            budget, mask_now = self.budget(step)
            if mask_now:
                self.mask_to_budget(budget)
        elif step == final_start:
            self.mask_to_budget(self.target_budget)
        else:
            for layer in self.layers.values():
                layer.apply_mask(layer.active)

    @torch.no_grad()
    def update_importance(self) -> None:
        for name, param in self.named_factors():
            if param.grad is None:
                continue
            importance = (param * param.grad).abs()
            mean = self.sensitivity.get(name, torch.zeros_like(importance))
            self.sensitivity[name] = self.beta1 * mean + (1 - self.beta1) * importance
            spread = self.uncertainty.get(name, torch.zeros_like(importance))
            self.uncertainty[name] = self.beta2 * spread + (1 - self.beta2) * (importance - self.sensitivity[name]).abs()

    def named_factors(self):
        for name, layer in self.layers.items():
            for part in ("lora_up", "lora_singular", "lora_down"):
                yield f"{name}.{part}", getattr(layer, part)

    def triplet_scores(self) -> dict[str, torch.Tensor]:
        """S_i per layer, shape (r,); zero where no importance has been recorded yet."""
        def score(name: str, like: torch.Tensor) -> torch.Tensor:
            if name not in self.sensitivity:
                return torch.zeros_like(like)
            return self.sensitivity[name] * self.uncertainty[name]

        scores = {}
        for name, layer in self.layers.items():
            up = score(f"{name}.lora_up", layer.lora_up).mean(dim=0)
            down = score(f"{name}.lora_down", layer.lora_down).mean(dim=1)
            scores[name] = score(f"{name}.lora_singular", layer.lora_singular) + up + down
        return scores

    def mask_to_budget(self, budget: int) -> None:
        """Zero the λ of the (initial budget − budget) lowest-scoring triplets across all layers."""
        to_mask = self.initial_budget - budget
        scores = self.triplet_scores()
        if to_mask <= 0:
            for layer in self.layers.values():
                layer.apply_mask(torch.ones_like(layer.active))
            return
        threshold = torch.kthvalue(torch.cat([s.view(-1) for s in scores.values()]), to_mask).values
        for name, layer in self.layers.items():
            layer.apply_mask(scores[name] > threshold)

    def state_dict(self) -> dict:
        return {"sensitivity": dict(self.sensitivity), "uncertainty": dict(self.uncertainty)}

    def load_state_dict(self, state: dict) -> None:
        self.sensitivity = dict(state["sensitivity"])
        self.uncertainty = dict(state["uncertainty"])
