"""Stateful methods driven through their TrainingCallbacks by a real minimal trainer."""

import pytest
import torch
from test_adapters_support import TINY_ARCHITECTURE, MiniTrainer, tiny_unet, unet_batch
from test_adapters_support import one_torch_thread  # noqa: F401 (autouse)
from torch import nn

from DiffusionPEFTLib.adapters import (TrainingCallback, inject, load_adapter, plot_rank_history, rank_histories,
                                       save_adapter)
from DiffusionPEFTLib.adapters.adalora import AdaLoRABudget
from DiffusionPEFTLib.errors import AdapterError
from DiffusionPEFTLib.models.config import InputSpec, ModelConfig, ScheduleConfig
from DiffusionPEFTLib.models.diffusion_model import DiffusionModel
from DiffusionPEFTLib.training import Trainer, TrainConfig, TrainingVolumes


class TwoBranches(nn.Module):
    """``signal`` drives the output; ``silent`` runs but cannot affect the loss (×0)."""

    def __init__(self, conv: bool):
        super().__init__()
        make = (lambda: nn.Conv3d(3, 4, 3, padding=1)) if conv else (lambda: nn.Linear(6, 5))
        self.signal, self.silent = make(), make()

    def forward(self, x):
        return self.signal(x) + 0.0 * self.silent(x)


def toy_batch(conv: bool, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 5, 5, 5, generator=generator) if conv else torch.randn(32, 6, generator=generator)
    target = torch.randn(4, 4, 5, 5, 5, generator=generator) if conv else torch.randn(32, 5, generator=generator)
    return x, target


def test_callback_base_is_a_no_op():
    callback = TrainingCallback()
    assert callback.extra_loss(None) is None and callback.state_dict() == {}


# -- SeLoRA -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv3d"])
def test_selora_grows_where_the_gradient_signal_is(conv):
    torch.manual_seed(0)
    adapters = inject(TwoBranches(conv), "selora", ["signal", "silent"], rank=1, max_rank=4, expand_every=2,
                      threshold=1.3)
    callbacks = adapters.make_callbacks()
    trainer = MiniTrainer(adapters.model, adapters.trainable_parameters(), callbacks, lr=1e-2)
    batch = toy_batch(conv)
    for step in range(12):
        trainer.train_step(step, batch)
    signal, silent = adapters.layers["signal"], adapters.layers["silent"]
    assert signal.rank > 1 and silent.rank == 1
    assert signal.rank_history[0] == [0, 1] and len(signal.rank_history) == signal.rank
    assert silent.rank_history == [[0, 1]]
    assert signal.lora_down.shape[0] == signal.lora_up.shape[1] == signal.rank
    state = trainer.optimizer.state[signal.lora_down]
    assert state["exp_avg"].shape == signal.lora_down.shape and state["exp_avg_sq"].shape == signal.lora_down.shape
    assert callbacks[0].last_ratios["silent"] == 1.0  # no Fisher information at all
    trainer.train_step(12, batch)  # the optimizer keeps working with the grown tensors


def test_selora_growth_keeps_the_output_and_respects_the_cap():
    torch.manual_seed(0)
    adapters = inject(TwoBranches(conv=False), "selora", ["signal"], rank=1, max_rank=2, expand_every=1,
                      threshold=1.0)
    trainer = MiniTrainer(adapters.model, adapters.trainable_parameters(), adapters.make_callbacks(), lr=1e-2)
    x, target = toy_batch(conv=False)
    trainer.train_step(0, (x, target))
    layer = adapters.layers["signal"]
    assert layer.rank == 2
    for step in range(1, 4):
        trainer.train_step(step, (x, target))
    assert layer.rank == 2  # capped at max_rank
    with torch.no_grad():
        before = adapters.model(x)
        layer.grow(torch.randn(1, 6), step=99)  # a grown rank starts with a zero column: same output
        assert layer.rank == 3 and torch.allclose(adapters.model(x), before)


class GradientLog(TrainingCallback):
    """Records every parameter's gradient after backward (runs after the SeLoRA callback)."""

    def __init__(self):
        self.grads: list[dict[int, torch.Tensor]] = []

    def after_backward(self, trainer, step):
        self.grads.append({id(p): p.grad.clone() for group in trainer.optimizer.param_groups
                           for p in group["params"] if p.grad is not None})


def test_selora_new_slots_follow_a_fresh_adam_and_old_slots_keep_their_moments():
    """A slot added at optimizer step T0 moves exactly as AdamW started at T0 would move it (its own bias
    correction), while the slots that were there keep their moments and step count through the growth."""
    torch.manual_seed(0)
    adapters = inject(TwoBranches(conv=False), "selora", ["signal"], rank=1, max_rank=2, expand_every=3,
                      threshold=1.0)
    layer = adapters.layers["signal"]
    log = GradientLog()
    trainer = MiniTrainer(adapters.model, adapters.trainable_parameters(), [*adapters.make_callbacks(), log],
                          lr=1e-2)
    batch = toy_batch(conv=False)
    for step in range(2):
        trainer.train_step(step, batch)
    old = {key: trainer.optimizer.state[layer.lora_up][key].clone() for key in ("exp_avg", "exp_avg_sq")}
    trainer.train_step(2, batch)  # grows after this step
    state = trainer.optimizer.state[layer.lora_up]
    assert layer.rank == 2 and int(state["step"]) == 3
    old = {key: 0.9 * old["exp_avg"] + 0.1 * log.grads[-1][id(layer.lora_up)] if key == "exp_avg" else
           0.999 * old["exp_avg_sq"] + 0.001 * log.grads[-1][id(layer.lora_up)] ** 2 for key in old}
    for key in old:  # the step before growth updated them as usual; growth kept them and appended zeros
        assert torch.allclose(state[key][:, :1], old[key]) and not state[key][:, 1:].any()

    fresh = [nn.Parameter(layer.lora_down.detach()[1:].clone()), nn.Parameter(layer.lora_up.detach()[:, 1:].clone())]
    reference = torch.optim.AdamW(fresh, lr=1e-2)
    for step in range(3, 9):
        trainer.train_step(step, batch)
        grads = log.grads[-1]
        fresh[0].grad, fresh[1].grad = grads[id(layer.lora_down)][1:], grads[id(layer.lora_up)][:, 1:]
        reference.step()
        assert torch.allclose(layer.lora_down[1:], fresh[0], atol=1e-6), step
        assert torch.allclose(layer.lora_up[:, 1:], fresh[1], atol=1e-6), step
    assert fresh[1].abs().max() > 1e-3  # the new column really trained


def tiny_diffusion_model() -> DiffusionModel:
    config = ModelConfig(dict(TINY_ARCHITECTURE), ScheduleConfig(), InputSpec((16, 16, 16), (4.0, 4.0, 4.0)))
    return DiffusionModel(config, tiny_unet())


def test_early_stopping_restores_a_smaller_selora_rank_and_resumes_from_it(tmp_path):
    """The best validation comes before later growth: the trainer goes back to that rank and those weights,
    the optimizer state shrinks with it, and the final checkpoint resumes and trains on."""
    generator = torch.Generator().manual_seed(3)
    volumes = TrainingVolumes(torch.rand(2, 1, 16, 16, 16, generator=generator), None, [])
    config = TrainConfig(steps=6, lr=1e-2, val_every=1, early_stop_patience=2, checkpoint_every=0, augment=False)

    def trainer_for(workdir):
        model = tiny_diffusion_model()
        adapters = inject(model.unet, "selora", r".*resnets\.0\.conv[12]\.conv", rank=1, max_rank=4,
                          expand_every=1, threshold=1.0)
        trainer = Trainer(model, list(adapters.trainable_parameters()), volumes, config, workdir, val=volumes,
                          callbacks=adapters.make_callbacks(config.steps))
        return trainer, adapters

    trainer, adapters = trainer_for(tmp_path)
    losses = iter([1.0, 0.5, 0.7, 0.8, 0.9, 1.0])  # best at the 2nd validation (step 2), stop at step 4
    snapshots = {}

    def validation_loss():
        snapshots[trainer.step] = ({n: l.rank for n, l in adapters.layers.items()},
                                   {k: v.clone() for k, v in adapters.state_dict().items()})
        return next(losses)

    trainer.validation_loss = validation_loss
    result = trainer.run()
    assert result.stopped_early and result.steps == 4
    best_ranks, best_state = snapshots[2]
    assert max(snapshots[4][0].values()) > max(best_ranks.values())  # it did grow after the best step
    assert {n: l.rank for n, l in adapters.layers.items()} == best_ranks
    for name, tensor in adapters.state_dict().items():
        assert torch.equal(tensor, best_state[name]), name
    for layer in adapters.layers.values():
        for param in (layer.lora_down, layer.lora_up):
            assert trainer.optimizer.state[param]["exp_avg"].shape == param.shape

    resumed, resumed_adapters = trainer_for(tmp_path)
    assert resumed.load_checkpoint() and resumed.step == 4
    assert resumed_adapters.ranks() == best_ranks
    resumed._optimizer_step()  # the restored optimizer state fits the restored shapes


def test_selora_on_the_unet_saves_history_plots_it_and_resumes(tmp_path):
    adapters = inject(tiny_unet(), "selora", r".*resnets\.0\.conv[12]\.conv", rank=1, max_rank=3, expand_every=1,
                      threshold=1.05)
    callbacks = adapters.make_callbacks()
    trainer = MiniTrainer(adapters.model, adapters.trainable_parameters(), callbacks, lr=1e-2)
    for step in range(3):
        trainer.train_step(step, unet_batch())
    assert max(adapters.ranks().values()) > 1

    folder = save_adapter(adapters, tmp_path / "selora", base_fingerprint="0" * 64,
                          base_architecture=TINY_ARCHITECTURE)
    histories = rank_histories(folder)
    assert histories == {name: layer.rank_history for name, layer in adapters.layers.items()}
    png = plot_rank_history(histories, tmp_path / "ranks.png", last_step=3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loaded = load_adapter(folder, tiny_unet(), base_fingerprint="0" * 64)
    assert loaded.ranks() == adapters.ranks()

    # --resume: callback state first (resizes layers), then model weights, then a fresh optimizer.
    resumed = inject(tiny_unet(), "selora", r".*resnets\.0\.conv[12]\.conv", rank=1, max_rank=3, expand_every=1,
                     threshold=1.05)
    resumed_callbacks = resumed.make_callbacks()
    resumed_callbacks[0].load_state_dict(callbacks[0].state_dict())
    resumed.model.load_state_dict(adapters.model.state_dict())
    optimizer = torch.optim.AdamW(resumed.trainable_parameters())
    optimizer.load_state_dict(trainer.optimizer.state_dict())
    x, t, _ = unet_batch()
    with torch.no_grad():
        assert torch.equal(resumed.model(x, t), adapters.model(x, t))
    assert resumed.layers[next(iter(resumed.layers))].rank_history == next(iter(adapters.layers.values())).rank_history


# -- DyLoRA -----------------------------------------------------------------------------------------
def test_dylora_updates_only_the_sampled_row_and_column():
    torch.manual_seed(0)
    adapters = inject(TwoBranches(conv=True), "dylora", ["signal"], rank=4, seed=3)
    layer = adapters.layers["signal"]
    with torch.no_grad():
        for column in layer.up_columns:
            column.normal_()  # as after some training, so every row can get a non-zero gradient
    sampler = adapters.make_callbacks()[0]
    trainer = MiniTrainer(adapters.model, adapters.trainable_parameters(), [sampler], lr=1e-2)
    batch = toy_batch(conv=True)
    seen = set()
    for step in range(8):
        before = [p.detach().clone() for p in layer.adapter_parameters()]
        sampler.before_forward(trainer, step)
        b = sampler.last_rank
        seen.add(b)
        loss = trainer.loss_on(batch)
        loss.backward()
        for i in range(layer.rank):
            for group in (layer.down_rows, layer.up_columns):
                assert (group[i].grad is not None) == (i == b - 1)
        assert layer.down_rows[b - 1].grad.any() and layer.up_columns[b - 1].grad.any()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        after = list(layer.adapter_parameters())
        changed = [not torch.equal(x, y) for x, y in zip(before, after)]
        assert changed == [i == b - 1 for i in range(4)] * 2  # rows then columns
    assert len(seen) > 1 and seen <= {1, 2, 3, 4}


def test_dylora_works_at_any_rank_at_inference():
    torch.manual_seed(0)
    adapters = inject(TwoBranches(conv=True), "dylora", ["signal"], rank=4)
    layer = adapters.layers["signal"]
    with torch.no_grad():
        for column in layer.up_columns:
            column.normal_()
    x, _ = toy_batch(conv=True)
    adapters.model.eval()
    outputs = []
    with torch.no_grad():
        for rank in range(1, 5):
            layer.set_inference_rank(rank)
            unmerged = adapters.model(x)
            adapters.merge()
            assert torch.allclose(adapters.model(x), unmerged, atol=1e-5)
            adapters.unmerge()
            outputs.append(unmerged)
            assert adapters.ranks() == {"signal": rank}
    assert all(not torch.allclose(a, b) for a, b in zip(outputs, outputs[1:]))
    with pytest.raises(AdapterError, match="exceeds"):
        layer.set_inference_rank(5)


# -- AdaLoRA ----------------------------------------------------------------------------------------
def adalora_on_toy(**options):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5))
    return inject(model, "adalora", ["0", "2"], rank=6, target_rank=2, **options)


def test_adalora_target_rank_defaults_to_two_thirds_of_the_rank():
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5))
    adapters = inject(model, "adalora", ["0", "2"], rank=4)  # no target_rank: 3, not peft's fixed 8 > 4
    assert adapters.make_callbacks(total_steps=50)[0].target_budget == 3 * 2


def test_adalora_budget_follows_the_cubic_schedule():
    adapters = adalora_on_toy(tinit=10, tfinal=20, delta_t=5)
    budget = AdaLoRABudget(adapters.layers, total_steps=100, target_rank=2, tinit=10, tfinal=20, delta_t=5)
    b0, bT = 12, 4
    assert budget.budget(0) == (b0, False) and budget.budget(10) == (b0, False)
    for step in (11, 25, 30, 47, 79, 80):
        expected = int((b0 - bT) * (1 - (step - 10) / (100 - 20 - 10)) ** 3 + bT)
        assert budget.budget(step) == (expected, step % 5 == 0)
    assert budget.budget(30)[0] == int(8 * (1 - 20 / 70) ** 3 + 4) == 6
    assert budget.budget(81) == (bT, True) and budget.budget(99) == (bT, True)
    with pytest.raises(AdapterError, match="total number of optimizer steps"):
        adapters.make_callbacks()


def test_adalora_masking_reduces_active_triplets_to_the_budget():
    adapters = adalora_on_toy(tinit=2, tfinal=3, delta_t=1)
    (budget,) = adapters.make_callbacks(total_steps=12)
    trainer = MiniTrainer(adapters.model, adapters.trainable_parameters(), [budget], lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(64, 6, generator=generator), torch.randn(64, 5, generator=generator))
    active = []
    for step in range(12):
        trainer.train_step(step, batch)
        active.append(sum(adapters.ranks().values()))
        expected, masked = budget.budget(step)
        if masked:  # from step 3 (tinit = 2) on, every step (delta_t = 1); fixed mask from step 9 (= T - tfinal)
            assert active[-1] == expected
            for layer in adapters.layers.values():
                assert not layer.lora_singular[~layer.active].any()  # masked λ are zero
    assert active[:3] == [12, 12, 12] and active[3] < 12 and active[-4:] == [4, 4, 4, 4]
    assert active == sorted(active, reverse=True)


def test_adalora_orthogonality_penalty_is_added_to_the_loss():
    adapters = adalora_on_toy()
    (budget,) = adapters.make_callbacks(total_steps=10)
    penalty = budget.extra_loss(None)
    assert penalty.item() > 0 and penalty.requires_grad
    penalty.backward()
    assert all(layer.lora_up.grad.any() and layer.lora_down.grad.any() for layer in adapters.layers.values())
    state = budget.state_dict()
    budget.load_state_dict(state)
