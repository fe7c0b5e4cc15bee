"""The trainer used for pretraining and every fine-tuning method.

AdamW on the parameters it is given; gradient accumulation; AMP (``precision``: see precision.py — by default
bf16 on a CUDA GPU that has it, else fp16 with GradScaler, fp32 on the CPU); optional activation checkpointing per
U-Net block (checkpointing.py); validation every N steps; atomic checkpoints; exact resume; cancel
(signal or stop file → checkpoint → JobCancelled); progress events. All randomness (batch order,
augmentation, noise, timesteps) comes from one generator whose state is checkpointed, so a resumed
run continues exactly like an uninterrupted one. The volumes come from memory or are streamed
(training/streaming.py) in that same order, so both give the same batches. Under torchrun every process
draws the whole global batch (batch_size × processes) and trains on its share; gradients are averaged over
the processes, only the main process writes checkpoints (see DiffusionPEFTLib/distributed.py).
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .. import distributed
from ..cancel import CancelToken
from ..errors import InputError, JobCancelled
from ..events import EventSink, ListSink
from ..models.diffusion_model import DiffusionModel
from .callbacks import TrainingCallback
from .checkpointing import set_activation_checkpointing
from .data import VolumeSet
from .precision import autocast_dtype, resolve_precision

CHECKPOINT_NAME = "checkpoint.pt"
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "val_every", "checkpointing")  # the only settings --resume may change


@dataclass
class TrainConfig:
    """steps: optimizer steps; batch_size × grad_accum volumes per step; lr: AdamW learning rate;
    precision: auto, fp32, bf16 or fp16 (precision.py; the trainer stores the resolved one); checkpointing:
    recompute each U-Net block's activations in the backward pass (same numbers, less memory, one more forward
    pass of the blocks per step)."""

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
    precision: str = "auto"
    checkpointing: bool = False
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

    def __init__(self, model: DiffusionModel, params: list[torch.nn.Parameter], train: VolumeSet,
                 config: TrainConfig, workdir: str | Path, device: torch.device | str = "cpu",
                 events: EventSink | None = None, cancel: CancelToken | None = None,
                 val: VolumeSet | None = None, callbacks: list[TrainingCallback] | tuple = (),
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
        self.workdir, self.device = Path(workdir), torch.device(device)
        self.config = replace(config, precision=resolve_precision(config.precision, self.device))
        self.events, self.cancel = events or ListSink(), cancel or CancelToken()
        self.callbacks, self.stage = list(callbacks), stage
        self.identity = dict(identity or {})
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.amp_dtype = autocast_dtype(self.config.precision)
        set_activation_checkpointing(model.unet, self.config.checkpointing)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.result = TrainResult(steps=0)
        self._order: list[int] = []
        self.world = distributed.world()
        self._items = None  # this process's volumes of the current epoch, in the order they are drawn
        distributed.broadcast_(list(self.model.state_dict().values()))  # all processes start from rank 0's state
        self._best_state: dict | None = None
        self._bad_validations = 0

    # --- data -----------------------------------------------------------------------------
    def next_batch(self) -> Batch:
        """Draw the next micro-batch (epoch-wise shuffled order, augmentation, noise, timesteps).

        Every process draws the whole global micro-batch (batch_size × processes) from the shared generator
        and keeps its share (process r: positions r·B … r·B + B − 1), so the run is the same for any number of
        processes with the same global batch, and for volumes in memory or streamed."""
        size, own = self._global_batch()
        indices, drawn = [], []
        for position in range(size):
            if not self._order:
                self._order = torch.randperm(len(self.train_data), generator=self.generator).tolist()
                self._items = None
            if self._items is None:  # a new epoch (or a resumed one): read this process's volumes ahead
                self._items = self.train_data.items(self._own_indices(position))
            indices.append(self._order.pop())
            if own.start <= position < own.stop:
                drawn.append(next(self._items))
        x0 = torch.stack([image for image, _ in drawn])
        condition = torch.stack([source for _, source in drawn]) if self.train_data.has_sources else None
        if self.config.augment:
            x0, condition = self._augment(x0, condition, size, own)
        noise = torch.randn((size, *x0.shape[1:]), generator=self.generator)[own]
        timesteps = self.model.training_timesteps(size, self.generator)[own]
        labels = self.train_data.labels[indices[own]] if self.train_data.labels is not None else None
        return self._to_device(Batch(x0, noise, timesteps, labels, condition))

    def _global_batch(self) -> tuple[int, slice]:
        """(micro-batch size over all processes, this process's positions in it)."""
        size = self.config.batch_size
        return size * self.world.size, slice(self.world.rank * size, (self.world.rank + 1) * size)

    def _own_indices(self, position: int) -> list[int]:
        """The volumes of the rest of this epoch's order that this process will train on, in drawing order,
        when the next one drawn takes ``position`` in its global micro-batch."""
        size, own = self._global_batch()
        remaining = self._order[::-1]  # drawn by pop(): last first
        return [index for k, index in enumerate(remaining) if own.start <= (position + k) % size < own.stop]

    def _augment(self, x0: torch.Tensor, condition: torch.Tensor | None, size: int, own: slice
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Left–right flip (p = 0.5, the same for a volume and its paired source) and ±5 % contrast around
        the background level, per volume (drawn independently for the source); drawn for all ``size`` volumes
        of the global micro-batch, applied to this process's ``own``."""
        flips = (torch.rand(size, generator=self.generator) < 0.5)[own]
        x0 = _jitter_contrast(x0, torch.rand(size, generator=self.generator)[own])
        x0[flips] = torch.flip(x0[flips], dims=[2])
        if condition is not None:
            condition = _jitter_contrast(condition, torch.rand(size, generator=self.generator)[own])
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
        """Mean loss over the validation volumes at 4 fixed timesteps with fixed noise (the chunks of
        batch_size volumes are shared out over the processes; every process draws every chunk's noise)."""
        data = self.val_data
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        steps = self.model.num_train_timesteps
        timesteps = (steps // 8, 3 * steps // 8, 5 * steps // 8, 7 * steps // 8)
        chunks = [list(range(start, min(start + self.config.batch_size, len(data))))
                  for start in range(0, len(data), self.config.batch_size)]
        mine = [number % self.world.size == self.world.rank for number in range(len(chunks))]
        items = data.items([index for _ in timesteps for chunk, own in zip(chunks, mine) if own for index in chunk])
        for t in timesteps:
            for chunk, own in zip(chunks, mine):
                noise = torch.randn((len(chunk), *data.item_shape), generator=generator)
                if not own:
                    continue
                drawn = [next(items) for _ in chunk]
                x0 = torch.stack([image for image, _ in drawn])
                labels = data.labels[chunk] if data.labels is not None else None
                condition = torch.stack([source for _, source in drawn]) if data.has_sources else None
                batch = self._to_device(Batch(x0, noise, torch.full((x0.shape[0],), max(t, 1)), labels, condition))
                total += float(self.loss_on(batch)) * x0.shape[0]
                count += x0.shape[0]
        self.model.train(was_training)
        total, count = distributed.sums([total, count])
        return total / count

    # --- loop -------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train until ``config.steps`` (or early stop); checkpoint on the way and at the end."""
        started = time.monotonic() - self.result.wall_s
        self.model.train()
        total = self.config.steps
        self.events.progress(self.stage, self.step, total)
        while self.step < total:
            if distributed.any_process(self.cancel.requested):  # a cancel on any process stops all
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
        distributed.average_gradients(self.params)  # before unscale_: an inf on any process skips the step on all
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
        loss = distributed.sums([loss_sum / self.config.grad_accum])[0] / self.world.size
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
        """Write ``workdir/checkpoint.pt`` atomically (the main process only; the others wait for it)."""
        path = self.workdir / CHECKPOINT_NAME
        if self.world.is_main:
            self._write_checkpoint(path)
        distributed.barrier()
        return path

    def _write_checkpoint(self, path: Path) -> None:
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
            "identity": {**self.identity, "processes": self.world.size},
        }
        tmp = path.with_name(f".{CHECKPOINT_NAME}.partial-{os.getpid()}")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self) -> bool:
        """Resume from ``workdir/checkpoint.pt`` if present; return whether one was loaded."""
        path = self.workdir / CHECKPOINT_NAME
        seen = distributed.count_processes(path.exists())
        if seen == 0:
            return False
        if seen < self.world.size:
            raise InputError(f"The checkpoint {path} is seen by {seen} of the {self.world.size} processes.",
                             hint="With several nodes, put --workdir on a file system every node shares.")
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
        self._items = None
        self.step = int(state["step"])
        result = state["result"]
        self.result = TrainResult(**{**result, "val_losses": [tuple(v) for v in result["val_losses"]]})
        self.events.log(f"Resumed from step {self.step} ({path}).")
        return True


    def _check_same_run(self, state: dict) -> None:
        """Refuse to resume a checkpoint made with other settings (the random stream and the provenance
        would disagree); only :data:`RESUMABLE_CHANGES` may differ."""
        saved = {"processes": 1, **state.get("config", {}), **state.get("identity", {})}
        if "precision" not in saved:  # made before --precision: AMP by the device's default, or none
            saved["precision"] = resolve_precision("auto" if saved.get("amp", True) else "fp32", self.device)
        current = {**asdict(self.config), **self.identity, "processes": self.world.size}
        changed = [name for name, value in current.items()
                   if name not in RESUMABLE_CHANGES and saved.get(name) != value]
        if changed:
            shown = "; ".join(f"{name} {_short(saved.get(name))} (now {_short(current[name])})" for name in changed[:4])
            raise InputError(f"The checkpoint in {self.workdir} was made with other settings: {shown}.",
                             hint="Resume with the same options (only --steps may grow), or start over with "
                             "--overwrite or another --workdir.")


def _jitter_contrast(volumes: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Scale each volume (B, 1, X, Y, Z) by a gain in [0.95, 1.05] around its background level
    (``uniforms`` (B,) in [0, 1) pick the gains)."""
    gains = 1 + 0.1 * (uniforms - 0.5)
    low = volumes.amin(dim=(1, 2, 3, 4), keepdim=True)
    return (volumes - low) * gains.view(-1, 1, 1, 1, 1) + low


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

