"""LoRA, DoRA and LoKr against HF peft for the same factors: ΔW, outputs, adapter gradients, merged weights,
LoKr's parameter counts; AdaLoRA's importance scores and masks against peft's RankAllocator.

peft is a test-only dependency; DiffusionPEFTLib never imports it. peft's LoKr has no Conv3d: a Conv2d with a
(3, 9) kernel has the same fan-in and the same ΔW element order as our Conv3d 3×3×3, so it stands in for it.
"""

import copy

import pytest
import torch
from peft import LoKrConfig, LoraConfig, inject_adapter_in_model
from peft.tuners.adalora import AdaLoraConfig
from peft.tuners.adalora.layer import RankAllocator
from torch import nn
from test_adapters_support import MiniTrainer, one_torch_thread  # noqa: F401 (autouse)

from DiffusionPEFTLib.adapters import inject


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(4, 6, 3, padding=1)
        self.fc = nn.Linear(5, 7)

    def forward(self, volume, vector):
        return self.conv(volume), self.fc(vector)


def toy_inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 5, 5, 5, generator=generator), torch.randn(3, 5, generator=generator)


def paired_lora(rank: float, alpha: float, dora: bool):
    """(our AdapterSet, peft model) on copies of one Toy, with the same non-zero A, B (and DoRA magnitude)."""
    torch.manual_seed(0)
    ours_model = Toy()
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=["conv", "fc"], use_dora=dora)
    peft_model = inject_adapter_in_model(config, copy.deepcopy(ours_model))
    adapters = inject(ours_model, "dora" if dora else "lora", ["conv", "fc"], rank=rank, alpha=alpha)
    with torch.no_grad():
        for name, ours in adapters.layers.items():
            ours.lora_up.normal_()  # B is zero at init; give it values so the comparison means something
            theirs = getattr(peft_model, name)
            theirs.lora_A["default"].weight.copy_(ours.lora_down.view_as(theirs.lora_A["default"].weight))
            theirs.lora_B["default"].weight.copy_(ours.lora_up.view_as(theirs.lora_B["default"].weight))
            if dora:
                ours.magnitude.mul_(1 + 0.3 * torch.rand_like(ours.magnitude))  # away from ‖W0‖ = the init
                magnitude = theirs.lora_magnitude_vector["default"].weight
                magnitude.copy_(ours.magnitude.view_as(magnitude))
    return adapters, peft_model


@pytest.mark.parametrize("rank,alpha", [(3, 5.0), (2, 2.0)])
def test_lora_delta_weight_matches_peft(rank, alpha):
    adapters, peft_model = paired_lora(rank, alpha, dora=False)
    with torch.no_grad():
        for name, ours in adapters.layers.items():
            expected = getattr(peft_model, name).get_delta_weight("default")
            assert expected.abs().max() > 0
            assert torch.allclose(ours.delta_weight(), expected, atol=1e-6)
        for got, expected in zip(adapters.model(*toy_inputs()), peft_model(*toy_inputs())):
            assert torch.allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_outputs_adapter_gradients_and_merge_match_peft(dora):
    """Same outputs, same ∂L/∂A, ∂L/∂B (and ∂L/∂m: DoRA's norm is detached in both), same merged weights."""
    adapters, peft_model = paired_lora(3, 5.0, dora)
    ours_out, peft_out = adapters.model(*toy_inputs()), peft_model(*toy_inputs())
    generator = torch.Generator().manual_seed(2)
    probes = [torch.randn(out.shape, generator=generator) for out in ours_out]
    for got, expected in zip(ours_out, peft_out):
        assert torch.allclose(got, expected, atol=1e-5)
    sum((out * probe).sum() for out, probe in zip(ours_out, probes)).backward()
    sum((out * probe).sum() for out, probe in zip(peft_out, probes)).backward()
    for name, ours in adapters.layers.items():
        theirs = getattr(peft_model, name)
        pairs = [(ours.lora_down, theirs.lora_A["default"].weight), (ours.lora_up, theirs.lora_B["default"].weight)]
        if dora:
            pairs.append((ours.magnitude, theirs.lora_magnitude_vector["default"].weight))
        for mine, peft_param in pairs:
            assert mine.grad.abs().max() > 0
            assert torch.allclose(mine.grad, peft_param.grad.view_as(mine.grad), rtol=1e-4, atol=1e-5), name
    with torch.no_grad():
        adapters.merge()
        for name, ours in adapters.layers.items():
            theirs = getattr(peft_model, name)
            theirs.merge()
            assert torch.allclose(ours.base.weight, theirs.base_layer.weight, atol=1e-5), name


# -- LoKr ---------------------------------------------------------------------------------------------
class KronToy(nn.Module):
    """Our Conv3d (c_in → c_out, 3³) and Linear, and peft's stand-in Conv2d with a (3, 9) kernel."""

    def __init__(self, c_in: int, c_out: int, as_peft: bool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, (3, 9)) if as_peft else nn.Conv3d(c_in, c_out, 3)
        self.fc = nn.Linear(c_in, c_out)


@pytest.mark.parametrize("c_in,c_out,rank", [
    (32, 32, 4),  # 32 = 4·8: r = 4 ≥ 8/2, full W2
    (32, 32, 3),  # r = 3 < 4, low-rank W2
    (64, 128, 4),  # 64 = 8·8, 128 = 8·16: 4 < 16/2, low rank
    (64, 128, 8),  # 8 ≥ 16/2, full
    (48, 16, 2),  # 48 = 6·8, 16 = 4·4: 2 < 8/2
    (12, 20, 3),  # 12 = 3·4, 20 = 4·5: 3 ≥ 5/2
])
def test_lokr_counts_structure_and_delta_weight_match_peft(c_in, c_out, rank):
    torch.manual_seed(0)
    adapters = inject(KronToy(c_in, c_out, as_peft=False), "lokr", ["conv", "fc"], rank=rank, alpha=3.0)
    peft_model = inject_adapter_in_model(LoKrConfig(r=rank, alpha=3.0, target_modules=["conv", "fc"]),
                                         KronToy(c_in, c_out, as_peft=True))
    for name, ours in adapters.layers.items():
        theirs = getattr(peft_model, name)
        peft_count = sum(p.numel() for n, p in theirs.named_parameters() if n.startswith("lokr_"))
        assert ours.num_adapter_parameters() == peft_count, name
        assert ours.full_right == ("default" in theirs.lokr_w2), name
        with torch.no_grad():
            for param in ours.adapter_parameters():
                param.normal_()  # W1 is zero at init
            pieces = ([("lokr_w2", ours.kron_right)] if ours.full_right
                      else [("lokr_w2_a", ours.up), ("lokr_w2_b", ours.down)])
            for key, value in [("lokr_w1", ours.kron_left), *pieces]:
                target = getattr(theirs, key)["default"]
                target.copy_(value.reshape(target.shape))
            expected = theirs.get_delta_weight("default")
            assert torch.allclose(ours.delta_weight().reshape(expected.shape), expected, atol=1e-5), name


# -- AdaLoRA ------------------------------------------------------------------------------------------
class PeftNames(nn.Module):
    """Copies of our AdaLoRA factors under peft's names (lora_A = Q, lora_E = λ as (r, 1), lora_B = P)."""

    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleDict()
        for name, layer in layers.items():
            holder = nn.Module()
            for peft_name, ours in (("lora_A", layer.lora_down), ("lora_E", layer.lora_singular[:, None]),
                                    ("lora_B", layer.lora_up)):
                setattr(holder, peft_name, nn.ParameterDict({"default": nn.Parameter(ours.detach().clone())}))
            self.layers[name] = holder

    def copy_from(self, layers):
        """Values and gradients of our factors at this moment."""
        with torch.no_grad():
            for name, layer in layers.items():
                holder = self.layers[name]
                for peft_name, ours in (("lora_A", layer.lora_down), ("lora_E", layer.lora_singular),
                                        ("lora_B", layer.lora_up)):
                    param = getattr(holder, peft_name)["default"]
                    param.copy_(ours.view_as(param))
                    param.grad = ours.grad.view_as(param).clone()


def test_adalora_importance_and_masks_match_peft_rank_allocator():
    """I = |w·∂L/∂w|, its EMA Ī and the uncertainty EMA Ū, the triplet scores S and the budget mask, as peft."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5))
    adapters = inject(model, "adalora", ["0", "2"], rank=4, target_rank=2, beta1=0.7, beta2=0.6)
    (budget,) = adapters.make_callbacks(total_steps=20)
    budget.after_step = lambda *args: None  # masking is compared below, at one chosen budget
    trainer = MiniTrainer(adapters.model, adapters.trainable_parameters(), [budget], lr=1e-2)
    mirror = PeftNames(adapters.layers)
    allocator = RankAllocator(mirror, AdaLoraConfig(target_r=2, beta1=0.7, beta2=0.6, total_step=20), "default")
    ours_update = budget.update_importance

    def both_update():
        ours_update()
        mirror.copy_from(adapters.layers)
        allocator.update_ipt(mirror)

    budget.update_importance = both_update
    generator = torch.Generator().manual_seed(0)
    batch = (torch.randn(64, 6, generator=generator), torch.randn(64, 5, generator=generator))
    for step in range(4):
        trainer.train_step(step, batch)
    for name in adapters.layers:
        for part, peft_name in (("lora_down", "lora_A"), ("lora_singular", "lora_E"), ("lora_up", "lora_B")):
            key = f"layers.{name}.{peft_name}.default"
            ours_key = f"{name}.{part}"
            assert budget.sensitivity[ours_key].abs().max() > 0 and budget.uncertainty[ours_key].abs().max() > 0
            assert torch.allclose(budget.sensitivity[ours_key].view(-1), allocator.exp_avg_ipt[key].view(-1))
            assert torch.allclose(budget.uncertainty[ours_key].view(-1), allocator.exp_avg_unc[key].view(-1))
    for kept in range(1, budget.initial_budget):  # the same mask at every budget = the same triplet ranking
        pattern = allocator.mask_to_budget(mirror, budget=kept)
        budget.mask_to_budget(kept)
        assert {name: layer.active.tolist() for name, layer in adapters.layers.items()} == {
            name: pattern[f"layers.{name}.lora_E.default"] for name in adapters.layers}, kept
        assert sum(adapters.ranks().values()) == kept
