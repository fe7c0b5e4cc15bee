"""LoRA on Conv3d and Linear gives the same ΔW (and output) as HF peft for the same A and B.

peft is a test-only dependency; DiffusionPEFTLib never imports it.
"""

import copy

import pytest
import torch
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from test_adapters_support import one_torch_thread  # noqa: F401 (autouse)

from DiffusionPEFTLib.adapters import inject


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(4, 6, 3, padding=1)
        self.fc = nn.Linear(5, 7)

    def forward(self, volume, vector):
        return self.conv(volume), self.fc(vector)


@pytest.mark.parametrize("rank,alpha", [(3, 5.0), (2, 2.0)])
def test_lora_delta_weight_matches_peft(rank, alpha):
    torch.manual_seed(0)
    ours_model, peft_model = Toy(), None
    peft_model = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=alpha, target_modules=["conv", "fc"]),
                                         copy.deepcopy(ours_model))
    adapters = inject(ours_model, "lora", ["conv", "fc"], rank=rank, alpha=alpha)
    with torch.no_grad():
        for name in ("conv", "fc"):
            ours = adapters.layers[name]
            ours.lora_up.normal_()  # B is zero at init; give it values so the comparison means something
            theirs = getattr(peft_model, name)
            theirs.lora_A["default"].weight.copy_(ours.lora_down.view_as(theirs.lora_A["default"].weight))
            theirs.lora_B["default"].weight.copy_(ours.lora_up.view_as(theirs.lora_B["default"].weight))
            expected = theirs.get_delta_weight("default")
            assert expected.abs().max() > 0
            assert torch.allclose(ours.delta_weight(), expected, atol=1e-6)
        volume, vector = torch.randn(2, 4, 5, 5, 5), torch.randn(3, 5)
        for got, expected in zip(ours_model(volume, vector), peft_model(volume, vector)):
            assert torch.allclose(got, expected, atol=1e-5)
