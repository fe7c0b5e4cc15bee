"""SeLoRA (Mao et al., arXiv 2408.07196): LoRA that starts at rank 1 and grows where the Fisher ratio says so.

Every ``expand_every`` optimizer steps the growth test re-runs ``trainer.loss_on(batch)`` on the step's
batch with a +1-rank candidate in every layer below ``max_rank``: a new row a' of A (kaiming) and a new
column b' of B (zero), so the output is unchanged. With empirical-Fisher traces
  F_r = ‖∇A‖² + ‖∇B‖²   and   F_{r+1} = F_r + ‖∇a'‖² + ‖∇b'‖²
(both from that one re-run, at the same parameters), a layer grows when F_{r+1} / F_r ≥ λ (``threshold``,
1.3): A gets the tested row a', B a zero column, so ΔW is unchanged at the moment of growth.

Differences from the released code (reference §3): the candidate row is kaiming-initialised (the release
leaves it 0, making the ratio ≈ 1); both traces come from the same re-run, so AMP loss scaling, gradient
accumulation and the optimizer step in between cannot bias the ratio; ranks are capped at ``max_rank``;
the release resets the layer's whole Adam state at growth, we keep the old slots' moments and give each new
slot its own step count (``correct_young_slots``): zero moments alone, bias-corrected with the parameter's
old step count T, would make a slot born at T ≫ 1 take steps up to ~6× too large for hundreds of steps.
On Conv3d the layer is LoCon (A: k×k×k conv C_in → r, B: 1×1×1 conv r → C_out). The scale α/r_initial
stays fixed while r grows, as in the paper.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn

from ..errors import AdapterError
from .base import LORA_DOWN_GAIN, check_rank, kaiming_uniform_
from ..training.callbacks import TrainingCallback
from .lora import LoRALayer


class SeLoRALayer(LoRALayer):
    """LoRA whose rank grows one row/column at a time; ``rank_history`` = [[step, rank], …]."""

    def __init__(self, base: nn.Conv3d | nn.Linear, rank: int = 1, alpha: float | None = None):
        super().__init__(base, rank, alpha)
        self.rank_history: list[list[int]] = [[0, rank]]
        self.candidate: tuple[torch.Tensor, torch.Tensor] | None = None

    def low_rank_product(self) -> torch.Tensor:
        product = super().low_rank_product()
        if self.candidate is not None:
            down_row, up_column = self.candidate
            product = product + up_column @ down_row
        return product

    def open_candidate(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Attach a +1-rank candidate (kaiming row from ``generator``, zero column) that requires grad."""
        row = kaiming_uniform_(torch.empty(1, self.fan_in), self.fan_in, LORA_DOWN_GAIN, generator)
        down_row = row.to(self.lora_down).requires_grad_()
        up_column = self.new_tensor(self.out_features, 1).zero_().requires_grad_()
        self.candidate = (down_row, up_column)
        return self.candidate

    def close_candidate(self) -> None:
        self.candidate = None

    @torch.no_grad()
    def grow(self, down_row: torch.Tensor, step: int) -> None:
        """Append ``down_row`` to A and a zero column to B (in place: the Parameter objects stay the same)."""
        self.lora_down.data = torch.cat([self.lora_down.data, down_row.detach().to(self.lora_down)], dim=0)
        self.lora_up.data = torch.cat([self.lora_up.data, self.lora_up.new_zeros(self.out_features, 1)], dim=1)
        self.rank += 1
        self.rank_history.append([step, self.rank])

    @torch.no_grad()
    def resize(self, rank: int) -> None:
        """Set the shapes for ``rank`` (zero values) before loading a saved state of that rank."""
        if check_rank(rank) == self.rank:
            return
        self.lora_down.data = self.lora_down.new_zeros(rank, self.fan_in)
        self.lora_up.data = self.lora_up.new_zeros(self.out_features, rank)
        self.rank = rank

    def metadata(self) -> dict[str, Any]:
        return {"rank_history": [list(entry) for entry in self.rank_history]}

    def load_metadata(self, metadata: dict[str, Any]) -> None:
        self.rank_history = [list(entry) for entry in metadata.get("rank_history", [[0, self.rank]])]


def validate_selora_options(options: dict) -> None:
    check_rank(options["max_rank"], "max_rank")
    check_rank(options["expand_every"], "expand_every")
    if options["max_rank"] < options["rank"]:
        raise AdapterError(f"SeLoRA max_rank ({options['max_rank']}) is below the start rank ({options['rank']}).",
                           hint="Use max_rank ≥ rank.")
    if not options["threshold"] > 0:
        raise AdapterError(f"SeLoRA threshold must be > 0, got {options['threshold']}.",
                           hint="The paper uses 1.3; values near 1 grow eagerly.")


class SeLoRAGrowth(TrainingCallback):
    """Runs the growth test after every ``expand_every``-th optimizer step (steps counted from 0).

    Candidate rows come from a generator seeded with (seed, step), so runs are reproducible and every
    process of a distributed run tests the same rows; the Fisher traces are summed over processes.
    ``last_grown`` names the layers that grew at the last test: their parameter shapes changed, so a
    DistributedDataParallel wrapper must be rebuilt after such a step. ``births[name][i]`` is the optimizer
    step count of layer ``name`` (its ``lora_down`` state) when rank slot i was added; 0 for the initial slots.
    """

    def __init__(self, layers: Mapping[str, SeLoRALayer], threshold: float = 1.3, expand_every: int = 40,
                 max_rank: int = 16, seed: int = 0):
        self.layers = dict(layers)
        self.threshold = threshold
        self.expand_every = expand_every
        self.max_rank = max_rank
        self.seed = seed
        self.last_ratios: dict[str, float] = {}
        self.last_grown: list[str] = []
        self.births: dict[str, list[int]] = {name: [0] * layer.rank for name, layer in self.layers.items()}
        self._undo: list[tuple] = []

    def after_backward(self, trainer: Any, step: int) -> None:
        self._undo = []
        for name, layer in self.layers.items():
            young = [(slot, birth) for slot, birth in enumerate(self.births[name]) if birth]
            if young:
                for param, dim in ((layer.lora_down, 0), (layer.lora_up, 1)):
                    self._undo += correct_young_slots(trainer.optimizer, param, dim, young)

    def after_step(self, trainer: Any, step: int, batch: Any) -> None:
        for state, moments, dim, slot, before, steps in self._undo:
            if int(state["step"]) != steps:  # the optimizer skipped this step (AMP overflow)
                moments.select(dim, slot).copy_(before)
        self._undo = []
        if (step + 1) % self.expand_every:
            return
        open_layers = {name: layer for name, layer in self.layers.items() if layer.rank < self.max_rank}
        if not open_layers:
            return
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        self.last_ratios, candidates = self.fisher_ratios(trainer, batch, open_layers, generator)
        self.last_grown = [name for name, ratio in self.last_ratios.items() if ratio >= self.threshold]
        for name in self.last_grown:
            layer = open_layers[name]
            layer.grow(candidates[name], step + 1)
            state = trainer.optimizer.state.get(layer.lora_down, {})
            self.births[name].append(int(state["step"]) if "step" in state else 0)
            fit_optimizer_state(trainer.optimizer, layer.lora_down, dim=0)
            fit_optimizer_state(trainer.optimizer, layer.lora_up, dim=1)

    @staticmethod
    def fisher_ratios(trainer: Any, batch: Any, layers: Mapping[str, SeLoRALayer], generator: torch.Generator
                      ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """F_{r+1}/F_r per layer from one re-run with candidates attached; also the tested A rows."""
        inputs: list[torch.Tensor] = []
        candidates: dict[str, torch.Tensor] = {}
        for name, layer in layers.items():
            down_row, up_column = layer.open_candidate(generator)
            candidates[name] = down_row
            inputs += [layer.lora_down, layer.lora_up, down_row, up_column]
        try:
            with torch.enable_grad():
                loss = trainer.loss_on(batch)
                grads = torch.autograd.grad(loss, inputs, allow_unused=True)
        finally:
            for layer in layers.values():
                layer.close_candidate()
        traces = torch.tensor([0.0 if g is None else float(g.detach().float().pow(2).sum()) for g in grads],
                              dtype=torch.float64).view(len(layers), 4)
        if dist.is_available() and dist.is_initialized():
            traces = traces.to(inputs[0].device)
            dist.all_reduce(traces)
        ratios = {}
        for (name, layer), (a, b, a_new, b_new) in zip(layers.items(), traces.tolist()):
            current, grown = a + b, a + b + a_new + b_new
            ratios[name] = grown / current if current > 0 else (float("inf") if grown > 0 else 1.0)
        return ratios, candidates

    def state_dict(self) -> dict:
        return {"ranks": {name: layer.rank for name, layer in self.layers.items()},
                "rank_history": {name: layer.metadata()["rank_history"] for name, layer in self.layers.items()},
                "births": {name: list(births) for name, births in self.births.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Resize every layer to its saved rank (call before loading model weights and building the optimizer)."""
        for name, rank in state["ranks"].items():
            self.layers[name].resize(rank)
            self.layers[name].load_metadata({"rank_history": state["rank_history"][name]})
            self.births[name] = list(state.get("births", {}).get(name, [0] * rank))  # older checkpoints: none

    def restore(self, trainer: Any, state: dict) -> None:
        """Back to an earlier (possibly smaller) rank; the kept slots' Adam moments stay, the rest are dropped."""
        self.load_state_dict(state)
        for layer in self.layers.values():
            fit_optimizer_state(trainer.optimizer, layer.lora_down, dim=0)
            fit_optimizer_state(trainer.optimizer, layer.lora_up, dim=1)


def fit_optimizer_state(optimizer: torch.optim.Optimizer, param: nn.Parameter, dim: int) -> None:
    """Zero-pad (grown) or truncate (shrunk) the per-element optimizer tensors of ``param`` (Adam moments)
    along ``dim`` to the parameter's shape; the step count is left alone."""
    state = optimizer.state.get(param, {})
    size = param.shape[dim]
    for key, value in state.items():
        if torch.is_tensor(value) and value.dim() == param.dim() and value.shape != param.shape:
            if value.shape[dim] > size:
                state[key] = value.narrow(dim, 0, size).clone()
            else:
                pad_shape = list(value.shape)
                pad_shape[dim] = size - value.shape[dim]
                state[key] = torch.cat([value, value.new_zeros(pad_shape)], dim=dim)


def bias_ratio(beta: float, steps: int, age: int) -> float:
    """(1 − β^T) / (1 − β^k): Adam's bias correction at the parameter's step T over a slot's own at age k."""
    return (1 - beta**steps) / (1 - beta**age)


@torch.no_grad()
def correct_young_slots(optimizer: torch.optim.Optimizer, param: nn.Parameter, dim: int,
                        births: list[tuple[int, int]]) -> list[tuple]:
    """Give the slots ``births`` = [(index along ``dim``, birth step b > 0)] of ``param`` their own Adam step.

    Call after backward, before ``optimizer.step()`` (Adam/AdamW without amsgrad, as the trainer's). The
    coming step bias-corrects with the parameter's count T; a slot of age k = T − b must be corrected with k.
    Keeping stored = ρ(T, k)·fresh with ρ = ``bias_ratio`` makes the two equal for m and v alike: with g the
    slot's gradient, stored ← ρ(T, k)·fresh_{k−1} + (ρ(T, k) − 1)·(1 − β)/β·g (g² for v) lets Adam's own
    update β·stored + (1 − β)·g land on ρ(T, k)·fresh_k. Returns what ``after_step`` needs to undo this
    if the optimizer skips the step: (state, moments, dim, index, previous values, expected step count).
    """
    state = optimizer.state.get(param)
    if not state or param.grad is None or not torch.isfinite(param.grad).all():
        return []  # no moments yet (they start fresh), or an overflow step the optimizer will skip
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    steps = int(state["step"]) + 1
    undo = []
    for slot, birth in births:
        age = steps - birth
        grad = param.grad.select(dim, slot)
        for key, beta, signal in (("exp_avg", group["betas"][0], grad), ("exp_avg_sq", group["betas"][1], grad * grad)):
            stored = state[key].select(dim, slot)
            undo.append((state, state[key], dim, slot, stored.clone(), steps))
            fresh = stored / bias_ratio(beta, steps - 1, age - 1) if age > 1 else torch.zeros_like(stored)
            ratio = bias_ratio(beta, steps, age)
            stored.copy_(ratio * fresh + (ratio - 1) * (1 - beta) / beta * signal)
    return undo
