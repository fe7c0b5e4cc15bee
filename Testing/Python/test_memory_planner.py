"""The memory planner (footprint.py traces a step on fake tensors, memory.py plans against a budget): its
prediction matches a counted real training step, grows with the grid and the batch, falls with checkpointing and
bf16; it covers latent models and the puzzled grid of translation models; it proposes the first settings that fit;
``--plan`` and the budget refusal of the training commands use it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from bundles import BRAIN_NETWORKS, tiny_inference, tiny_metadata, write_bundle
from conftest import TINY_ARCH, run_cli
from test_adapters_support import TINY_ARCHITECTURE, one_torch_thread  # noqa: F401 (autouse)

from DiffusionPEFTLib.adapters import inject
from DiffusionPEFTLib.footprint import GIB, Job, LiveBytes, TrainingSetup, footprint, with_changes
from DiffusionPEFTLib.memory import MemoryBudget, plan_memory
from DiffusionPEFTLib.models import DiffusionModel, InputSpec, ModelConfig, ScheduleConfig
from DiffusionPEFTLib.training import Trainer, TrainConfig, TrainingVolumes

MATCH = 0.10  # the prediction is within ±10 % of the counted peak of a real step


def config_on(grid=(16, 16, 16)) -> ModelConfig:
    return ModelConfig({**TINY_ARCHITECTURE, "use_flash_attention": True}, ScheduleConfig(), InputSpec(grid, (4.0,) * 3))


def job(grid=(16, 16, 16), batch: int = 1, method: str = "lora", **setup) -> Job:
    return Job(config_on(grid), batch, "train", TrainingSetup.of(method, **setup))


def counted_real_step(config: ModelConfig, batch: int, method: str, checkpointing: bool, tmp_path) -> int:
    """Peak bytes alive during the trainer's second optimizer step on real tensors (weights, AdamW state and
    everything the step allocates), counted per tensor storage."""
    torch.manual_seed(0)
    model = DiffusionModel(config)
    adapters = inject(model.unet, method)
    images = torch.rand(2 * batch, 1, *config.input.shape)
    trainer = Trainer(model, list(adapters.trainable_parameters()), TrainingVolumes(images, None, ["v"] * len(images)),
                      TrainConfig(steps=2, batch_size=batch, checkpoint_every=0, checkpointing=checkpointing), tmp_path)
    trainer._optimizer_step()  # AdamW's state exists from here on
    counter = LiveBytes()
    state = [t for s in trainer.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    counter.add_all([*model.parameters(), *model.buffers(), *state])
    with counter:
        trainer._optimizer_step()
    return counter.peak


@pytest.mark.parametrize("checkpointing", [False, True])
def test_the_prediction_matches_a_counted_real_step(checkpointing, tmp_path):
    planned = job((24, 24, 24), 2, "lora", checkpointing=checkpointing)
    predicted = footprint(planned)
    counted = counted_real_step(planned.config, 2, "lora", checkpointing, tmp_path)
    assert abs(counted / predicted.total - 1) < MATCH, (counted, predicted)


def test_weights_gradients_and_optimizer_are_exact_sizes():
    model = DiffusionModel(config_on())
    base = sum(p.numel() for p in model.unet.parameters()) * 4
    full = footprint(job(method="full"))
    assert full.gradients == base and full.optimizer == 2 * base
    lora = footprint(job(method="lora"))
    trainable = sum(p.numel() for p in inject(DiffusionModel(config_on()).unet, "lora").trainable_parameters()) * 4
    assert lora.gradients == trainable and lora.optimizer == 2 * trainable and lora.weights > base


def test_the_prediction_grows_with_grid_and_batch_and_falls_with_checkpointing_and_bf16():
    grids = [footprint(job(grid)).total for grid in [(16, 16, 16), (24, 24, 24), (32, 32, 32)]]
    assert grids == sorted(grids) and len(set(grids)) == 3
    batches = [footprint(job(batch=b)).total for b in (1, 2, 4)]
    assert batches == sorted(batches) and len(set(batches)) == 3
    plain = footprint(job((32, 32, 32))).activations
    checkpointed = footprint(job((32, 32, 32), checkpointing=True)).activations
    bf16 = footprint(job((32, 32, 32), precision="bf16")).activations
    both = footprint(job((32, 32, 32), precision="bf16", checkpointing=True)).activations
    assert checkpointed < 0.8 * plain and bf16 < 0.8 * plain and both < min(checkpointed, bf16)
    gpu = footprint(replace(job((32, 32, 32), precision="bf16"), device="cuda")).activations
    assert bf16 < gpu < plain  # CUDA's autocast keeps normalisation and upsampling in float32


def test_the_planner_proposes_the_first_settings_that_fit():
    planned = job((32, 32, 32), batch=2)
    plain = footprint(planned).total
    checkpointed = footprint(with_changes(planned, checkpointing=True)).total
    plan = plan_memory(planned, MemoryBudget((plain + checkpointed) // 2))
    assert not plan.fits and plan.proposal.setup.checkpointing and plan.proposal.batch == 2
    assert plan.proposal.setup.precision == "fp32" and "--checkpointing" in plan.advice()
    smallest = footprint(with_changes(planned, 1, precision="bf16", checkpointing=True)).total
    plan = plan_memory(planned, MemoryBudget(smallest + 1))
    assert plan.proposal.batch == 1 and "bf16 + activation checkpointing at batch 1" in plan.advice()
    assert plan_memory(planned, MemoryBudget(smallest - 1)).proposal is None
    assert plan_memory(planned, MemoryBudget(plain)).fits


def test_latent_and_translation_models_are_planned(tmp_path):
    from DiffusionPEFTLib.models.bundle import read_bundle

    write_bundle(tmp_path / "bundle", tiny_inference(), tiny_metadata(), networks=None)
    latent = read_bundle(tmp_path / "bundle").config
    training, sampling = footprint(Job(latent, 1, "train", TrainingSetup.of("lora"))), footprint(Job(latent, 1, "sample"))
    assert training.total > sampling.total > sampling.weights > 0 and sampling.gradients == 0
    from DiffusionPEFTLib.cli import build_parser
    from DiffusionPEFTLib.commands.translate_train import build_config

    args = build_parser().parse_args(["translate-train", "pairs.csv", "--out", "t", "--shape", "32", "32", "32",
                                      "--channels", "8", "16", "16", "--norm-groups", "8", "--head-channels", "8"])
    puzzled = {}
    for factor in (1, 2):
        args.puzzle = factor
        puzzled[factor] = footprint(Job(build_config(args), 1, "train")).activations
    assert puzzled[2] < puzzled[1]  # the U-Net runs on a grid 2³ times smaller, with 8× the channels at its input
    assert 0 < footprint(Job(build_config(args), 1, "sample")).total < footprint(Job(build_config(args), 1)).total


def test_finetune_plan_prints_the_prediction_and_the_gpu_what_if(tiny_model_dir):
    code, events = run_cli("finetune", tiny_model_dir, "--method", "lora", "--plan", "--json", "--threads", "1")
    assert code == 0, events.events
    metrics = {e["name"]: e["value"] for e in events.of("metric")}
    document = events.of("result")[0]["value"]
    assert metrics["fits"] == 1 and document["fits"] and document["predicted"]["total"] == metrics["predicted_peak_bytes"]
    assert "Fits on this machine" in " ".join(e["message"] for e in events.of("log"))
    code, events = run_cli("finetune", tiny_model_dir, "--method", "lora", "--plan", "--gpu-memory-gb", "0.00001",
                           "--threads", "1")
    assert code == 0
    message = " ".join(e["message"] for e in events.of("log"))
    assert "bf16" in message and "on cuda" in message and "Does not fit on a 1e-05 GB GPU" in message


def test_pretrain_plan_writes_nothing(tmp_path, volume_folder):
    code, events = run_cli("pretrain", volume_folder, "--out", tmp_path / "m", *TINY_ARCH, "--plan", "--checkpointing",
                           "--threads", "1")
    assert code == 0, events.events
    assert "checkpointing" in events.of("log")[0]["message"] and not (tmp_path / "m").exists()
    assert not any(tmp_path.iterdir())


def test_a_job_over_the_budget_is_refused_with_the_settings_that_fit(tiny_model_dir, volume_folder, tmp_path):
    from DiffusionPEFTLib.models import read_model_config

    planned = Job(read_model_config(tiny_model_dir), 1, "train", TrainingSetup.of("lora"))
    plain, checkpointed = footprint(planned).total, footprint(with_changes(planned, checkpointing=True)).total
    budget = (plain + checkpointed) / 2 / GIB
    code, events = run_cli("finetune", tiny_model_dir, volume_folder, "--method", "lora", "--steps", "1",
                           "--memory-budget-gb", budget, "--out", tmp_path / "a", "--threads", "1")
    error = events.of("error")[0]
    assert code != 0 and error["kind"] == "memory" and "--checkpointing" in error["hint"], error
    assert not (tmp_path / "a").exists()


def test_a_job_the_tracer_cannot_run_starts_with_a_warning(monkeypatch):
    import DiffusionPEFTLib.footprint as footprint_module
    from DiffusionPEFTLib.events import ListSink
    from DiffusionPEFTLib.memory import check_job

    def untraceable(job):
        raise RuntimeError("no fake kernel for this operation")

    monkeypatch.setattr(footprint_module, "_traced", untraceable)
    events = ListSink()
    assert check_job(MemoryBudget(1), job((8, 8, 8)), "Training", "hint", events) is None
    assert "could not trace" in events.of("log")[0]["message"] and events.of("log")[0]["level"] == "warning"
