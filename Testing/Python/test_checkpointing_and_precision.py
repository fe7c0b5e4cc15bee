"""Activation checkpointing changes no number (loss and every trainable gradient, every method in fp32, full
fine-tuning, TenVOO-L and LoRA under bf16 autocast) and keeps less in memory (counted allocations); precisions resolve per device, and a checkpoint
made with one precision is not resumed with another."""

from __future__ import annotations

import pytest
import torch
from test_adapters_support import TINY_ARCHITECTURE, one_torch_thread  # noqa: F401 (autouse)

from DiffusionPEFTLib.adapters import METHODS, inject
from DiffusionPEFTLib.errors import InputError, ModelError
from DiffusionPEFTLib.footprint import LiveBytes
from DiffusionPEFTLib.models import DiffusionModel, InputSpec, ModelConfig, ScheduleConfig
from DiffusionPEFTLib.training import Trainer, TrainConfig, TrainingVolumes
from DiffusionPEFTLib.training.checkpointing import set_activation_checkpointing, uses_activation_checkpointing
from DiffusionPEFTLib.training.precision import autocast_dtype, resolve_precision

GRID = (16, 16, 16)


def tiny_model(seed: int = 0) -> DiffusionModel:
    """A tiny pixel model whose zero-initialised layers got small random weights (as a pretrained one has)."""
    torch.manual_seed(seed)
    config = ModelConfig({**TINY_ARCHITECTURE, "use_flash_attention": True}, ScheduleConfig(), InputSpec(GRID, (4.0,) * 3))
    model = DiffusionModel(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1 and not param.any():
                param.normal_(0.0, 0.05)
    return model


def batch(size: int = 1):
    generator = torch.Generator().manual_seed(3)
    x0 = torch.randn(size, 1, *GRID, generator=generator)
    return x0, torch.randn(x0.shape, generator=generator), torch.randint(0, 1000, (size,), generator=generator)


def loss_and_gradients(model, params, checkpointing: bool, precision: str):
    set_activation_checkpointing(model.unet, checkpointing)
    for param in params:
        param.grad = None
    with torch.autocast("cpu", dtype=autocast_dtype(precision), enabled=precision != "fp32"):
        loss = model.loss(*batch())
    loss.backward()
    return loss.detach(), [param.grad.clone() for param in params]


@pytest.mark.parametrize("method,precision", [*((name, "fp32") for name in sorted(METHODS)), ("full", "bf16"),
                                              ("tenvoo-l", "bf16"), ("lora", "bf16")])
def test_checkpointing_changes_neither_the_loss_nor_any_gradient(method, precision):
    model = tiny_model()
    params = list(inject(model.unet, method).trainable_parameters())
    plain_loss, plain = loss_and_gradients(model, params, False, precision)
    checkpointed_loss, checkpointed = loss_and_gradients(model, params, True, precision)
    assert uses_activation_checkpointing(model.unet)
    assert sum(bool(g.any()) for g in plain) >= len(plain) // 3  # the gradients compared are real ones
    torch.testing.assert_close(checkpointed_loss, plain_loss, rtol=1e-6, atol=1e-7)
    for got, expected in zip(checkpointed, plain):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def peak_step_bytes(method: str, checkpointing: bool, precision: str = "fp32") -> int:
    """Counted peak of one forward + backward on real tensors, above the model's own weights."""
    model = tiny_model()
    params = list(inject(model.unet, method).trainable_parameters())
    counter = LiveBytes()
    weights = counter.add_all([*model.parameters(), *model.buffers()])
    with counter:
        loss_and_gradients(model, params, checkpointing, precision)
    return counter.peak - weights


@pytest.mark.parametrize("method", ["tenvoo-l", "full"])
def test_checkpointing_lowers_the_counted_peak(method):
    plain, checkpointed = peak_step_bytes(method, False), peak_step_bytes(method, True)
    assert checkpointed < 0.8 * plain, (checkpointed, plain)


def test_bf16_lowers_the_counted_peak():
    assert peak_step_bytes("lora", False, "bf16") < 0.8 * peak_step_bytes("lora", False, "fp32")


def test_checkpointing_switches_off_and_needs_a_monai_unet():
    model = tiny_model()
    set_activation_checkpointing(model.unet, True)
    set_activation_checkpointing(model.unet, True)  # idempotent
    set_activation_checkpointing(model.unet, False)
    assert not uses_activation_checkpointing(model.unet)
    assert set(model.unet.state_dict()) == set(tiny_model().unet.state_dict())  # names and weights untouched
    with pytest.raises(ModelError, match="DiffusionModelUNet"):
        set_activation_checkpointing(torch.nn.Conv3d(1, 1, 3), True)


def test_precisions_resolve_per_device():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cuda", bf16_supported=True) == "bf16"
    assert resolve_precision("auto", "cuda", bf16_supported=False) == "fp16"
    assert resolve_precision("fp16", "cuda", bf16_supported=False) == "fp16"
    with pytest.raises(InputError, match="CUDA"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(InputError, match="bf16"):
        resolve_precision("bf16", "cuda", bf16_supported=False)
    assert autocast_dtype("fp32") is None and autocast_dtype("bf16") is torch.bfloat16


def trainer(workdir, steps: int = 2, **config) -> Trainer:
    model = tiny_model()
    adapters = inject(model.unet, "lora", rank=2)
    images = torch.rand(3, 1, *GRID, generator=torch.Generator().manual_seed(5))
    data = TrainingVolumes(images, None, [f"v{i}" for i in range(3)])
    return Trainer(model, list(adapters.trainable_parameters()), data,
                   TrainConfig(steps=steps, lr=1e-3, checkpoint_every=1, **config), workdir)


def test_the_trainer_trains_alike_with_checkpointing_and_in_bf16(tmp_path):
    plain = trainer(tmp_path / "plain").run().losses
    checkpointed_trainer = trainer(tmp_path / "checkpointed", checkpointing=True)
    checkpointed = checkpointed_trainer.run().losses
    assert uses_activation_checkpointing(checkpointed_trainer.model.unet)
    assert checkpointed == pytest.approx(plain, rel=1e-6)
    bf16 = trainer(tmp_path / "bf16", precision="bf16")
    assert bf16.amp_dtype is torch.bfloat16 and bf16.config.precision == "bf16"
    losses = bf16.run().losses
    assert losses != plain and losses == pytest.approx(plain, rel=0.05)


def test_resume_refuses_another_precision_but_not_checkpointing(tmp_path):
    first = trainer(tmp_path, steps=1)
    first.run()
    assert first.config.precision == "fp32"  # auto on the CPU, stored resolved
    with pytest.raises(InputError, match="precision 'fp32' \\(now 'bf16'\\)"):
        trainer(tmp_path, precision="bf16").load_checkpoint()
    resumed = trainer(tmp_path, checkpointing=True)
    assert resumed.load_checkpoint() and resumed.step == 1


def test_a_checkpoint_from_before_precision_resumes(tmp_path):
    trainer(tmp_path, steps=1).run()
    path = tmp_path / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    del state["config"]["precision"], state["config"]["checkpointing"]
    state["config"]["amp"] = True  # how such a checkpoint said it: AMP where the device has it
    torch.save(state, path)
    assert trainer(tmp_path).load_checkpoint()
