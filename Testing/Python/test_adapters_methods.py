"""Every method on a tiny 3D UNet: zero start, gradients everywhere, merge = unmerged, unload."""

import copy

import pytest
import torch
from test_adapters_support import MiniTrainer, tiny_unet, unet_batch, one_torch_thread  # noqa: F401 (autouse)

from DiffusionPEFTLib.adapters import METHODS, AdapterLayer, inject

OPTIONS = {"tenvoo-l": {"rank": 2}, "tenvoo-q": {"rank": 2}, "lora": {"rank": 3}, "dora": {"rank": 3},
           "loha": {"rank": 2}, "lokr": {"rank": 2}, "selora": {"rank": 1, "expand_every": 1, "threshold": 1.0},
           "dylora": {"rank": 2}, "adalora": {"rank": 4, "target_rank": 2}, "norm-bias": {}, "full": {},
           "controlled": {}}
STEPS = 2  # SeLoRA grows after each; DyLoRA (seed 0) samples ranks 1 and 2; AdaLoRA, planned for
TOTAL_STEPS = 50  # steps, masks a few triplets at step 1 (cubic budget: 3.88 of 4 per layer)


def test_every_registered_method_is_exercised():
    assert set(OPTIONS) == set(METHODS)


@pytest.mark.parametrize("method", list(OPTIONS))
def test_zero_start_gradients_and_merge(method):
    """Step 0 = base output; after two optimizer steps driven by the method's callbacks every trainable tensor
    gets a gradient at the inference rank (eval: DyLoRA's full rank, nothing detached) and nothing else
    trains; merged output = unmerged output; unmerge restores W0."""
    batch = unet_batch()
    x, t, _ = batch
    base = tiny_unet()
    original = copy.deepcopy(base.state_dict())
    with torch.no_grad():
        expected = base(x, t)
    adapters = inject(base, method, **OPTIONS[method])
    with torch.no_grad():
        assert (adapters.model(x, t) - expected).abs().max().item() <= 1e-6

    callbacks = adapters.make_callbacks(TOTAL_STEPS)
    trainer = MiniTrainer(adapters.model, adapters.trainable_parameters(), callbacks, lr=1e-2)
    for step in range(STEPS):
        trainer.train_step(step, batch)
    if method == "selora":
        assert all(layer.rank == 1 + STEPS for layer in adapters.layers.values())
    if method == "adalora":
        ranks = adapters.ranks().values()
        assert sum(ranks) < 4 * len(ranks) and min(ranks) > 0  # masked some, no whole layer
    adapters.model.eval()
    trainer.loss_on(batch).backward()
    named = dict(adapters.named_trainable_parameters())
    assert [name for name, p in named.items() if p.grad is None or not p.grad.any()] == []
    trained = {id(p) for p in named.values()}
    assert [n for n, p in adapters.model.named_parameters() if p.requires_grad and id(p) not in trained] == []
    if not adapters.layers:
        return

    adapters.model.eval()
    with torch.no_grad():
        unmerged = adapters.model(x, t)
        adapters.merge()
        merged = adapters.model(x, t)
        adapters.unmerge()
        again = adapters.model(x, t)
    assert (unmerged - expected).abs().max().item() > 1e-4  # the adapter really changed the output
    assert (merged - unmerged).abs().max().item() <= 1e-5
    assert (again - unmerged).abs().max().item() <= 1e-5
    for name, layer in adapters.layers.items():
        assert torch.allclose(layer.base.weight, original[f"{name}.weight"], atol=1e-5)


@pytest.mark.parametrize("method", ["tenvoo-q", "dora"])
def test_merge_and_unload_gives_a_plain_model_with_the_same_output(method):
    batch = unet_batch()
    x, t, _ = batch
    adapters = inject(tiny_unet(), method, **OPTIONS[method])
    MiniTrainer(adapters.model, adapters.trainable_parameters(), lr=1e-2).train_step(0, batch)
    adapters.model.eval()
    with torch.no_grad():
        adapted = adapters.model(x, t)
        copied = adapters.merged_copy()
        assert any(isinstance(m, AdapterLayer) for m in adapters.model.modules())
        plain = adapters.merge_and_unload()
        assert not any(isinstance(m, AdapterLayer) for m in plain.modules())
        assert set(plain.state_dict()) == set(tiny_unet().state_dict())
        assert (copied(x, t) - adapted).abs().max().item() <= 1e-5
        assert (plain(x, t) - adapted).abs().max().item() <= 1e-5


def test_merged_layer_runs_the_plain_base_layer():
    conv = torch.nn.Conv3d(4, 4, 3, padding=1)
    layer = METHODS["lora"].conv3d(conv, 2)
    built = []
    original = layer.delta_weight
    layer.delta_weight = lambda: built.append(1) or original()
    layer.merge()
    layer(torch.randn(1, 4, 5, 5, 5))
    layer(torch.randn(1, 4, 5, 5, 5))
    assert built == [1]  # ΔW was built by merge() only, not by the forwards
