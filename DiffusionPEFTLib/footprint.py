"""The memory one job step needs, traced on fake tensors: weights, gradients, optimizer state, activations.

The model of the job's task (pixel, translation or latent) is built on the meta device (no memory), the adapter
method injected and activation checkpointing switched on as the trainer would do it. Then, under
``FakeTensorMode`` (tensors with shapes, dtypes and devices but no data), the real code runs one step — the
trainer's loss, backward pass and AdamW update, or one denoising step and the decoding of a sampler (a latent
model's decoder whole or in windows, as the job's ``decoding`` says) — while a
dispatch mode adds up the bytes of every tensor storage that is alive: parameters and buffers, the batch, what
autograd saves, temporaries, gradients. The peak of that sum is the prediction; nothing is calibrated and nothing
depends on the method or the architecture beyond what the code itself allocates. A 166.7 M-parameter UNet at
160×224×160 traces in a few seconds.

Not in the trace: allocations outside torch's dispatcher (oneDNN scratch buffers on the CPU, cuDNN workspaces,
the CUDA context, the caching allocator's fragmentation) and the training volumes held in RAM. On a GPU the
prediction is what ``torch.cuda.max_memory_allocated`` measures; the default budget keeps 20 % of the card for the
rest (memory.py). CUDA's autocast keeps normalisation, softmax and upsampling in float32 where the CPU's runs them
in bf16: a trace for a GPU reproduces that (``device="cuda"``).
"""

from __future__ import annotations

import json
import weakref
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .models.config import ModelConfig
from .models.tiled_decode import Decoding

GIB = 1024**3
MODES = ("train", "sample", "guide")


@dataclass(frozen=True)
class TrainingSetup:
    """How a job trains. method None: every weight of the network (pretraining); else an adapter method with its
    targets and options (as ``inject`` takes them). precision: fp32, bf16 or fp16 (resolved). accumulation: more
    than one micro-batch per step (gradients then live through the forward pass). ema: a weight average is kept."""

    method: str | None = None
    targets: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    precision: str = "fp32"
    checkpointing: bool = False
    accumulation: bool = False
    ema: bool = False

    @classmethod
    def of(cls, method: str | None = None, targets: str | None = None, options: dict | None = None,
           **settings: Any) -> "TrainingSetup":
        return cls(method, targets, tuple(sorted((options or {}).items())), **settings)

    def describe(self) -> str:
        parts = [self.method or "every weight", self.precision]
        if self.checkpointing:
            parts.append("checkpointing")
        return ", ".join(parts)


@dataclass(frozen=True)
class Job:
    """One step of a job. mode: ``train`` (loss, backward, AdamW step of the trainable weights), ``sample`` (one
    denoising step and the decoding, no gradients) or ``guide`` (one denoising step with the gradient with respect
    to its input, nothing trained: posterior sampling). device: ``cpu`` or ``cuda`` (autocast policy, optimizer).
    decoding: how a latent model's sampling job decodes (``auto`` is traced whole, its upper bound; the planner in
    memory.py resolves it against a budget)."""

    config: ModelConfig
    batch: int = 1
    mode: str = "train"
    setup: TrainingSetup = field(default_factory=TrainingSetup)
    device: str = "cpu"
    decoding: Decoding = field(default_factory=Decoding)

    def key(self) -> str:
        return json.dumps({"config": self.config.to_dict(), "batch": self.batch, "mode": self.mode,
                           "setup": asdict(self.setup), "device": self.device, "decoding": asdict(self.decoding)},
                          sort_keys=True, default=str)


def with_changes(job: Job, batch: int | None = None, decoding: Decoding | None = None, **setup: Any) -> Job:
    """``job`` with another batch, decoding and/or other training settings."""
    return replace(job, batch=batch or job.batch, decoding=decoding or job.decoding,
                   setup=replace(job.setup, **setup))


@dataclass(frozen=True)
class Footprint:
    """Bytes at the step's peak: ``weights`` (parameters and buffers of everything on the device), ``gradients``
    and ``optimizer`` (AdamW's two moments) of the trainable weights, ``activations`` (the rest: the batch, what
    autograd saves, temporaries, the optimizer's scratch)."""

    weights: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}

    def format(self) -> str:
        parts = ", ".join(f"{name} {value / GIB:.2f}" for name, value in
                          (("weights", self.weights), ("gradients", self.gradients), ("optimizer", self.optimizer),
                           ("activations", self.activations)) if value)
        return f"{self.total / GIB:.2f} GiB ({parts})"


def footprint(job: Job) -> Footprint:
    """The traced peak of one step of ``job`` (cached per job within the process)."""
    if job.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    key = job.key()
    if key not in _TRACED:
        _TRACED[key] = _traced(job)
    return _TRACED[key]


_TRACED: dict[str, Footprint] = {}


def _traced(job: Job) -> Footprint:
    from torch._subclasses.fake_tensor import FakeTensorMode

    model = _model_on_meta(job)
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    counter = LiveBytes()
    with fake:
        model.to_empty(device="cpu")
        trainable = [p for p in model.parameters() if p.requires_grad] if job.mode == "train" else []
        weights = counter.add_all([*model.parameters(), *model.buffers()])
        trainable_bytes = sum(p.untyped_storage().nbytes() for p in trainable)
        with counter:
            if job.mode == "train":
                _training_step(model, job)
            else:
                _sampling_step(model, job)
        if job.mode != "train":
            return Footprint(weights, 0, 0, counter.peak - weights)
        largest = max((p.untyped_storage().nbytes() for p in trainable), default=0)
    optimizer = 2 * trainable_bytes  # AdamW: exp_avg and exp_avg_sq in the parameters' dtype
    # the update: CUDA's multi-tensor AdamW takes a sqrt of every second moment at once; the CPU's loop one at a time
    update_scratch = trainable_bytes if job.device == "cuda" else 2 * largest
    during_backward = counter.peak + (trainable_bytes if job.setup.accumulation else 0)
    during_update = weights + trainable_bytes + update_scratch
    peak = max(during_backward, during_update) + (weights if job.setup.ema else 0)
    return Footprint(weights, trainable_bytes, optimizer, peak - weights - trainable_bytes)


# --- the model and one step ------------------------------------------------------------------------------


def _model_on_meta(job: Job) -> nn.Module:
    """The job's model with its U-Net (and autoencoder) on the meta device, adapters injected, checkpointing set."""
    from .adapters import inject
    from .models.diffusion_model import DiffusionModel, build_unet
    from .training.checkpointing import set_activation_checkpointing

    config = job.config
    with torch.device("meta"):
        unet = build_unet(config.unet)
        autoencoder = None
        if config.task == "latent":
            from .models.latent_model import LatentSpec, build_autoencoder

            autoencoder = build_autoencoder(LatentSpec.from_dict(config.latent).autoencoder)
    if config.task == "translation":
        from .translation.model import TranslationModel

        model = TranslationModel(config, unet)
    elif config.task == "latent":
        from .models.latent_model import LatentDiffusionModel

        model = LatentDiffusionModel(config, unet, autoencoder)
    else:
        model = DiffusionModel(config, unet)
    setup = job.setup
    if job.mode == "train" and setup.method is not None:
        inject(model.unet, setup.method, setup.targets, **dict(setup.options))
    elif job.mode != "train":
        model.requires_grad_(False)
    if job.mode == "train":
        set_activation_checkpointing(model.unet, setup.checkpointing)
        model.train()
    else:
        model.eval()
    return model


def _autocast(job: Job):
    """The trainer's autocast, on the fake CPU tensors (fp16 is traced as bf16: the same sizes, the same policy)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.bfloat16}.get(job.setup.precision) if job.mode == "train" else None
    return torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)


def _batch(model: nn.Module, job: Job) -> dict:
    """The trainer's micro-batch for ``model``: x0 and noise, timesteps, class labels, condition."""
    config, b = job.config, job.batch
    labels = torch.zeros(b, dtype=torch.long) if config.unet.get("num_class_embeds") else None
    if config.task == "translation":
        x0 = torch.empty(b, 1, *config.input.shape)
        return {"x0": x0, "noise": torch.empty_like(x0), "t": torch.ones(b, dtype=torch.long), "class_labels": None,
                "condition": torch.empty_like(x0)}
    x0 = torch.empty(b, int(config.unet["out_channels"]), *model.grid_shape)
    condition = None
    if config.task == "latent" and model.spec.conditions:
        condition = torch.zeros(b, len(model.spec.conditions))
    return {"x0": x0, "noise": torch.empty_like(x0), "t": torch.zeros(b, dtype=torch.long), "class_labels": labels,
            "condition": condition}


def _training_step(model: nn.Module, job: Job) -> None:
    """A latent model first encodes the training volumes, one at a time; then the trainer's step."""
    if job.config.task == "latent":
        model.encode(torch.empty(1, 1, *job.config.input.shape))
    batch = _batch(model, job)
    with _cuda_autocast_policy(job):
        with _autocast(job):
            loss = model.loss(batch.pop("x0"), batch.pop("noise"), batch.pop("t"), **batch)
        loss.backward()


def _sampling_step(model: nn.Module, job: Job) -> None:
    """One denoising step (under no_grad, or with the input's gradient for ``guide``), then a latent model's
    decoding as the job's ``decoding`` says (a pixel model's decoding is the identity)."""
    batch = _batch(model, job)
    guided = job.mode == "guide"
    with torch.set_grad_enabled(guided):
        if job.config.task == "translation":
            source = model.puzzle.puzzle(batch["condition"])
            x = model.puzzle.puzzle(batch["x0"]).requires_grad_(guided)
            x0_hat = model.predict_x0(x, source, 1)
        else:
            x = batch["x0"].requires_grad_(guided)
            x0_hat, _ = model.denoise(x, 1, batch["class_labels"], batch["condition"])
        if guided:
            torch.autograd.grad(x0_hat.float().square().sum(), x)
        del x0_hat
    if job.config.task == "latent":
        with torch.no_grad():
            model.decode(x.detach(), job.decoding)


class _CudaAutocastPolicy(TorchDispatchMode):
    """What CUDA's autocast runs in float32 but the CPU's in the lower precision — normalisation, softmax and
    upsampling (``AT_FORALL_FP32`` and ``AT_FORALL_FP32_SET_OPT_DTYPE`` in ATen's autocast_mode.h) — run in float32
    here too. A dispatch mode, so it also holds in the backward pass where checkpointed blocks run again."""

    def __init__(self):
        super().__init__()
        aten = torch.ops.aten
        self.upcast = {aten.native_group_norm.default, aten.native_group_norm_backward.default,
                       aten.native_layer_norm.default, aten.native_layer_norm_backward.default,
                       aten._softmax.default, aten.upsample_nearest3d.default, aten.upsample_nearest3d.vec,
                       aten.upsample_trilinear3d.default, aten.upsample_trilinear3d.vec}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.upcast:
            args = tuple(_float32(a) for a in args)
        return func(*args, **(kwargs or {}))


def _float32(value):
    return value.float() if isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16) else value


def _cuda_autocast_policy(job: Job):
    from contextlib import nullcontext

    low = job.mode == "train" and job.setup.precision in ("bf16", "fp16")
    return _CudaAutocastPolicy() if low and job.device == "cuda" else nullcontext()


# --- counting live bytes ---------------------------------------------------------------------------------


class LiveBytes(TorchDispatchMode):
    """Adds up the bytes of every distinct tensor storage an operation creates while they are alive (views share
    their base's storage); ``peak`` is the largest sum seen. Works on real, meta and fake tensors alike."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, weakref.ref] = {}

    def add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._storages:
            return
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)
        self._storages[key] = weakref.ref(storage, lambda _, key=key, size=size: self._gone(key, size))

    def add_all(self, tensors) -> int:
        """Count ``tensors`` (e.g. a model's parameters) and return the bytes now alive."""
        for tensor in tensors:
            self.add(tensor)
        return self.live

    def _gone(self, key: int, size: int) -> None:
        self.live -= size
        self._storages.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_leaves(out):
            if isinstance(value, torch.Tensor):
                self.add(value)
        return out
