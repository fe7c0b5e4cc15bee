"""TenVOO / QuanTA internals: the reference einsum strings, kernel layout, factorisation, θ0 handling."""

import pickle

import pytest
import torch
from torch import nn
from test_adapters_support import one_torch_thread  # noqa: F401 (autouse)

from DiffusionPEFTLib.adapters.contraction import contract
from DiffusionPEFTLib.adapters.factorise import balanced_factors, most_square_split, tenvoo_factors
from DiffusionPEFTLib.adapters.quanta import QuanTALinear
from DiffusionPEFTLib.adapters.tenvoo import TENVOO_EQUATIONS, TenVOOConv3d
from DiffusionPEFTLib.errors import AdapterError


def test_equations_are_the_reference_strings():
    assert TENVOO_EQUATIONS["l"] == "bade, cefg, xghi, yijk, zklm, Cmno, BopA, fdqh, lrpn, jqr -> abcxyzABC"
    assert TENVOO_EQUATIONS["q"] == "bade, cefg, xghi, yijk, zjlm, Cmop, BpqA, oqrs, dftr, hlst -> abcxyzABC"


@pytest.mark.parametrize("variant", ["l", "q"])
def test_planned_contraction_equals_plain_einsum_and_the_kernel_layout(variant):
    torch.manual_seed(0)
    conv = nn.Conv3d(24, 16, 3, padding=1).double()
    layer = TenVOOConv3d(conv, rank=3, variant=variant)
    cores = [core.detach() for core in layer.cores]
    network = torch.einsum(TENVOO_EQUATIONS[variant], *cores)  # (i1,i2,i3,kd,kh,kw,o1,o2,o3)
    assert torch.allclose(contract(TENVOO_EQUATIONS[variant], *cores), network, rtol=1e-10, atol=1e-8)
    weight = layer.network_weight(cores)
    (i1, i2, i3), (o1, o2, o3) = layer.in_factors, layer.out_factors
    for _ in range(20):
        a, b, c = (torch.randint(n, ()).item() for n in (i1, i2, i3))
        d, e, f = (torch.randint(3, ()).item() for _ in range(3))
        A, B, C = (torch.randint(n, ()).item() for n in (o1, o2, o3))
        c_in, c_out = (a * i2 + b) * i3 + c, (A * o2 + B) * o3 + C
        assert weight[c_out, c_in, d, e, f] == pytest.approx(network[a, b, c, d, e, f, A, B, C].item(), rel=1e-9)


def test_tenvoo_q_height_core_is_the_broadcast_quirk():
    layer = TenVOOConv3d(nn.Conv3d(8, 8, 3), rank=4, variant="q")
    assert tuple(layer.cores[3].shape) == (3, 1, 4, 4)
    assert tuple(TenVOOConv3d(nn.Conv3d(8, 8, 3), rank=4, variant="l").cores[3].shape) == (3, 4, 4, 4)


def test_zero_start_is_exact_and_frozen_copy_is_a_buffer():
    layer = TenVOOConv3d(nn.Conv3d(16, 32, 3, padding=1), rank=2)
    assert torch.equal(layer.delta_weight(), torch.zeros_like(layer.base.weight))
    state = layer.adapter_state()
    assert {f"frozen_core_{i}" for i in range(10)} <= set(state) and "frozen_weight" not in state
    assert all(not getattr(layer, f"frozen_core_{i}").requires_grad for i in range(10))
    assert len(list(layer.adapter_parameters())) == 10


def test_loading_theta0_recomputes_the_frozen_contraction():
    """Also through a plain model.load_state_dict (trainer resume), via the post-load hook."""
    torch.manual_seed(0)
    source = nn.Sequential(TenVOOConv3d(nn.Conv3d(8, 8, 3, padding=1), rank=2))
    torch.manual_seed(1)
    target = nn.Sequential(TenVOOConv3d(nn.Conv3d(8, 8, 3, padding=1), rank=2))
    target.load_state_dict(source.state_dict())
    assert torch.equal(target[0].frozen_weight, source[0].frozen_weight)
    assert torch.equal(target[0].delta_weight(), torch.zeros_like(target[0].base.weight))
    restored = pickle.loads(pickle.dumps(source))  # whole-model torch.save keeps working
    assert torch.equal(restored[0].frozen_weight, source[0].frozen_weight)


def test_quanta_weight_equals_the_input_contraction_of_the_reference():
    """QuanTA's training form contracts the input: '...abc,efbc,diaf,ghde->...ghi' (reference code, d = 3)."""
    torch.manual_seed(0)
    for in_f, out_f, rank in ((32, 32, 4), (32, 16, 3)):
        layer = QuanTALinear(nn.Linear(in_f, out_f).double(), rank=rank)
        x = torch.randn(5, in_f, dtype=torch.float64)
        y = torch.einsum("...abc,efbc,diaf,ghde->...ghi", x.view(5, *layer.in_factors), *layer.cores)
        weight = layer.network_weight(list(layer.cores))
        assert torch.allclose(x @ weight.T, y.reshape(5, out_f))
        assert layer.uses_rank == (in_f != out_f)


def test_factorisation_table_and_balanced_fallback():
    assert tenvoo_factors(256) == (8, 8, 4) and tenvoo_factors(768) == (16, 8, 6)
    assert tenvoo_factors(80) == (5, 4, 4) == balanced_factors(80)
    assert tenvoo_factors(7) == (7, 1, 1)
    assert tenvoo_factors(40, {40: [5, 4, 2]}) == (5, 4, 2)
    assert tenvoo_factors(40, {"40": [5, 4, 2]}) == (5, 4, 2)  # as read back from adapter.json
    for c in range(1, 300):
        n = balanced_factors(c)
        assert n[0] * n[1] * n[2] == c and n[0] >= n[1] >= n[2] >= 1
    assert most_square_split(32) == (4, 8) and most_square_split(512) == (16, 32) and most_square_split(13) == (1, 13)


def test_impossible_factorisation_is_an_adapter_error():
    with pytest.raises(AdapterError, match="product is 40"):
        TenVOOConv3d(nn.Conv3d(40, 8, 3), rank=2, factors={40: [5, 4, 3]})
