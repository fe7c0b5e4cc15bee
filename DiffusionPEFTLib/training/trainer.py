"""The trainer used for pretraining and every fine-tuning method.

AdamW on the parameters it is given; gradient accumulation; AMP on CUDA (bf16 where supported,
else fp16 with GradScaler); validation every N steps; atomic checkpoints; exact resume; cancel
(signal or stop file → checkpoint → JobCancelled); progress events. All randomness (batch order,
augmentation, noise, timesteps) comes from one generator whose state is checkpointed, so a resumed
run continues exactly like an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..cancel import CancelToken
from ..errors import InputError, JobCancelled
from ..events import EventSink, ListSink
from ..models.diffusion_model import DiffusionModel
from .callbacks import TrainingCallback
from .data import TrainingVolumes

CHECKPOINT_NAME = "checkpoint.pt"
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "val_every")  # the only settings --resume may change


@dataclass
class TrainConfig:
    """steps: optimizer steps; batch_size × grad_accum volumes per step; lr: AdamW learning rate."""

    steps: int
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    val_every: int = 0
    checkpoint_every: int = 100
    early_stop_patience: int = 0
    augment: bool = True
    amp: bool = True
    seed: int = 0

    def check(self) -> None:
        for name in ("steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be at least 1 (got {getattr(self, name)}).", hint=f"Set --{name.replace('_', '-')} ≥ 1.")
        if not self.lr > 0:
            raise InputError(f"The learning rate must be positive (got {self.lr}).", hint="Use e.g. --lr 1e-4.")


@dataclass
class Batch:
    """One micro-batch: clean volumes x0 (B, 1, X, Y, Z), noise like x0, timesteps (B,), labels (B,) or None,
    condition (B, 1, X, Y, Z) or None (the paired source volumes of a translation model; a latent model's x0 are
    latents (B, C, x, y, z) and its condition the condition vectors (B, n))."""

    x0: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    labels: torch.Tensor | None
    condition: torch.Tensor | None = None


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    val_losses: list[tuple[int, float]] = field(default_factory=list)
    best_val_loss: float | None = None
    wall_s: float = 0.0
    stopped_early: bool = False


class Trainer:
    """Train ``params`` of ``model`` on ``train``; checkpoints live in ``workdir``."""

    def __init__(self, model: DiffusionModel, params: list[torch.nn.Parameter], train: TrainingVolumes,
                 config: TrainConfig, workdir: str | Path, device: torch.device | str = "cpu",
                 events: EventSink | None = None, cancel: CancelToken | None = None,
                 val: TrainingVolumes | None = None, callbacks: list[TrainingCallback] | tuple = (),
                 stage: str = "train", identity: dict | None = None):
        """``identity``: what else makes this run this run (method, options, data …); a checkpoint is
        resumed only by a run with the same identity and settings (see :data:`RESUMABLE_CHANGES`)."""
        config.check()
        self.model = model.to(device)
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise InputError("There is nothing to train: no parameter requires gradients.",
                             hint="Choose an adapter method or targets that match layers of this model.")
        self.train_data, self.val_data = train, val
        self.config, self.workdir, self.device = config, Path(workdir), torch.device(device)
        self.events, self.cancel = events or ListSink(), cancel or CancelToken()
        self.callbacks, self.stage = list(callbacks), stage
        self.identity = dict(identity or {})
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.amp_dtype = _amp_dtype(self.device) if config.amp else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.result = TrainResult(steps=0)
        self._order: list[int] = []
        self._best_state: dict | None = None
        self._bad_validations = 0

    # --- data -----------------------------------------------------------------------------
    def next_batch(self) -> Batch:
        """Draw the next micro-batch (epoch-wise shuffled order, augmentation, noise, timesteps)."""
        indices = []
        for _ in range(self.config.batch_size):
            if not self._order:
                self._order = torch.randperm(len(self.train_data), generator=self.generator).tolist()
            indices.append(self._order.pop())
        x0 = self.train_data.images[indices].clone()
        sources = self.train_data.sources
        condition = sources[indices].clone() if sources is not None else None
        if self.config.augment:
            x0, condition = self._augment(x0, condition)
        noise = torch.randn(x0.shape, generator=self.generator)
        timesteps = self.model.training_timesteps(len(indices), self.generator)
        labels = self.train_data.labels[indices] if self.train_data.labels is not None else None
        return self._to_device(Batch(x0, noise, timesteps, labels, condition))

    def _augment(self, x0: torch.Tensor, condition: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Left–right flip (p = 0.5, the same for a volume and its paired source) and ±5 % contrast around
        the background level, per volume (drawn independently for the source)."""
        flips = torch.rand(x0.shape[0], generator=self.generator) < 0.5
        x0 = _jitter_contrast(x0, self.generator)
        x0[flips] = torch.flip(x0[flips], dims=[2])
        if condition is not None:
            condition = _jitter_contrast(condition, self.generator)
            condition[flips] = torch.flip(condition[flips], dims=[2])
        return x0, condition

    def _to_device(self, batch: Batch) -> Batch:
        move = lambda t: None if t is None else t.to(self.device, non_blocking=True)  # noqa: E731
        return Batch(move(batch.x0), move(batch.noise), move(batch.timesteps), move(batch.labels),
                     move(batch.condition))

    # --- loss -------------------------------------------------------------------------------
    def loss_on(self, batch: Batch) -> torch.Tensor:
        """Diffusion loss on one batch (deterministic given the batch), under AMP when enabled."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            return self.model.loss(batch.x0, batch.noise, batch.timesteps, batch.labels, batch.condition)

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean loss over the validation volumes at 4 fixed timesteps with fixed noise."""
        data = self.val_data
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        steps = self.model.num_train_timesteps
        for t in (steps // 8, 3 * steps // 8, 5 * steps // 8, 7 * steps // 8):
            for start in range(0, len(data), self.config.batch_size):
                chunk = slice(start, start + self.config.batch_size)
                x0 = data.images[chunk]
                noise = torch.randn(x0.shape, generator=generator)
                labels = data.labels[chunk] if data.labels is not None else None
                condition = data.sources[chunk] if data.sources is not None else None
                batch = self._to_device(Batch(x0, noise, torch.full((x0.shape[0],), max(t, 1)), labels, condition))
                total += float(self.loss_on(batch)) * x0.shape[0]
                count += x0.shape[0]
        self.model.train(was_training)
        return total / count

    # --- loop -------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train until ``config.steps`` (or early stop); checkpoint on the way and at the end."""
        started = time.monotonic() - self.result.wall_s
        self.model.train()
        total = self.config.steps
        self.events.progress(self.stage, self.step, total)
        while self.step < total:
            if self.cancel.requested:
                self.save_checkpoint()
                raise JobCancelled(f"{self.stage} was cancelled at step {self.step} of {total}; a checkpoint was saved.",
                                   hint="Run the same command with --resume to continue.")
            loss = self._optimizer_step()
            self.step += 1
            self.result.losses.append(loss)
            self.result.wall_s = time.monotonic() - started
            self.events.progress(self.stage, self.step, total, loss=loss)
            if self.val_data is not None and self.config.val_every and self.step % self.config.val_every == 0:
                if self._validate():
                    self.result.stopped_early = True
                    break
            if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                self.save_checkpoint()
        if self._best_state is not None:
            self._restore_best_state()
        self.result.steps = self.step
        self.result.wall_s = time.monotonic() - started
        self.save_checkpoint()
        return self.result

    def _optimizer_step(self) -> float:
        for callback in self.callbacks:
            callback.before_forward(self, self.step)
        self._set_learning_rate()
        loss_sum = 0.0
        for _ in range(self.config.grad_accum):
            batch = self.next_batch()
            loss = self.loss_on(batch)
            for callback in self.callbacks:
                extra = callback.extra_loss(self)
                if extra is not None:
                    loss = loss + extra
            self.scaler.scale(loss / self.config.grad_accum).backward()
            loss_sum += float(loss.detach())
        self.scaler.unscale_(self.optimizer)
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm)
        for callback in self.callbacks:
            callback.after_backward(self, self.step)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        for callback in self.callbacks:
            callback.after_step(self, self.step, batch)
        loss = loss_sum / self.config.grad_accum
        if not math.isfinite(loss) or not self._parameters_finite():
            what = f"loss became {loss}" if not math.isfinite(loss) else "trained parameters became NaN or infinite"
            raise InputError(f"Training diverged at step {self.step + 1}: the {what} (learning rate {self.config.lr:g}). "
                             "Nothing was saved from this step.",
                             hint="Lower the learning rate (--lr), e.g. by 10×, or check the training volumes.")
        return loss

    def _parameters_finite(self) -> bool:
        """One reduction per parameter: NaN or ±inf anywhere makes its sum non-finite."""
        sums = torch.stack([p.detach().float().sum() for p in self.params])
        return bool(torch.isfinite(sums).all())

    def _set_learning_rate(self) -> None:
        warm = self.config.warmup_steps
        factor = min(1.0, (self.step + 1) / warm) if warm else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = self.config.lr * factor

    def _validate(self) -> bool:
        """Record a validation loss; return True when early stopping says stop."""
        value = self.validation_loss()
        self.result.val_losses.append((self.step, value))
        self.events.metric("val_loss", value, step=self.step)
        best = self.result.best_val_loss
        if best is None or value < best:
            self.result.best_val_loss = value
            self._bad_validations = 0
            if self.config.early_stop_patience:
                self._best_state = copy.deepcopy({"model": self.trainable_state(),
                                                  "callbacks": [cb.state_dict() for cb in self.callbacks]})
            return False
        self._bad_validations += 1
        return bool(self.config.early_stop_patience) and self._bad_validations >= self.config.early_stop_patience

    def _restore_best_state(self) -> None:
        """Back to the best validated state: callbacks first (SeLoRA shrinks to that state's ranks), then weights."""
        for callback, state in zip(self.callbacks, self._best_state["callbacks"]):
            callback.restore(self, state)
        self.model.load_state_dict(self._best_state["model"], strict=False)

    # --- checkpoints -----------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Trainable parameters and persistent buffers by name (what a resume must restore).

        Non-persistent buffers (e.g. TenVOO's frozen T(θ0)) are rebuilt by their modules."""
        trainable = {id(p) for p in self.params}
        parameters = {n for n, p in self.model.named_parameters() if id(p) in trainable}
        all_parameters = {n for n, _ in self.model.named_parameters()}
        return {n: t.detach() for n, t in self.model.state_dict(keep_vars=True).items()
                if n in parameters or n not in all_parameters}

    def save_checkpoint(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "model": {k: v.cpu() for k, v in self.trainable_state().items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.generator.get_state(),
            "order": list(self._order),
            "result": asdict(self.result),
            "callbacks": [c.state_dict() for c in self.callbacks],
            "config": asdict(self.config),
            "identity": self.identity,
        }
        path = self.workdir / CHECKPOINT_NAME
        tmp = path.with_name(f".{CHECKPOINT_NAME}.partial-{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self) -> bool:
        """Resume from ``workdir/checkpoint.pt`` if present; return whether one was loaded."""
        path = self.workdir / CHECKPOINT_NAME
        if not path.exists():
            return False
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # truncated or foreign file: torch raises many types
            raise InputError(f"The checkpoint {path} is damaged.",
                             hint="Start over with --overwrite, or use another --workdir.") from None
        self._check_same_run(state)
        for callback, callback_state in zip(self.callbacks, state["callbacks"]):
            callback.load_state_dict(callback_state)
        own = self.model.state_dict()
        if any(name not in own or own[name].shape != tensor.shape for name, tensor in state["model"].items()):
            raise InputError(f"The checkpoint in {self.workdir} belongs to a different model or adapter.",
                             hint="Resume with the same options, or start over with --overwrite.")
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.generator.set_state(state["generator"])
        self._order = list(state["order"])
        self.step = int(state["step"])
        result = state["result"]
        self.result = TrainResult(**{**result, "val_losses": [tuple(v) for v in result["val_losses"]]})
        self.events.log(f"Resumed from step {self.step} ({path}).")
        return True


    def _check_same_run(self, state: dict) -> None:
        """Refuse to resume a checkpoint made with other settings (the random stream and the provenance
        would disagree); only :data:`RESUMABLE_CHANGES` may differ."""
        saved = {**state.get("config", {}), **state.get("identity", {})}
        current = {**asdict(self.config), **self.identity}
        changed = [name for name, value in current.items()
                   if name not in RESUMABLE_CHANGES and saved.get(name) != value]
        if changed:
            shown = "; ".join(f"{name} {_short(saved.get(name))} (now {_short(current[name])})" for name in changed[:4])
            raise InputError(f"The checkpoint in {self.workdir} was made with other settings: {shown}.",
                             hint="Resume with the same options (only --steps may grow), or start over with "
                             "--overwrite or another --workdir.")


def _jitter_contrast(volumes: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Scale each volume (B, 1, X, Y, Z) by a gain in [0.95, 1.05] around its background level."""
    gains = 1 + 0.1 * (torch.rand(volumes.shape[0], generator=generator) - 0.5)
    low = volumes.amin(dim=(1, 2, 3, 4), keepdim=True)
    return (volumes - low) * gains.view(-1, 1, 1, 1, 1) + low


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _amp_dtype(device: torch.device) -> torch.dtype | None:
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
