"""Parameter counts equal the reference formulas (peft_methods.md §2.4, §2.6), per layer and for TenVOO's UNet."""

import pytest
from test_adapters_support import TENVOO_ARCHITECTURE, one_torch_thread  # noqa: F401 (autouse)
from torch import nn

from DiffusionPEFTLib.adapters import METHODS, build_unet_on_meta, plan_adapter
from DiffusionPEFTLib.adapters.factorise import most_square_split, tenvoo_factors


def meta_conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv3d:
    return nn.Conv3d(c_in, c_out, k, padding=k // 2, device="meta")


def layer_count(method: str, base: nn.Module, rank: int, **options) -> int:
    resolved = METHODS[method].resolve_options({"rank": rank, **options})
    factory = METHODS[method].layer_factory(base)
    layer = factory(base, rank, **{k: resolved[k] for k in METHODS[method].layer_options})
    return layer.num_adapter_parameters()


def tenvoo_formula(variant: str, c_in: int, c_out: int, k: int, r: int) -> int:
    n, m = tenvoo_factors(c_in), tenvoo_factors(c_out)
    if variant == "l":
        return r**2 * (n[0] * n[1] + m[0] * m[1]) + r**3 * (n[2] + m[2] + 3 * k + 1) + 2 * r**4
    return r**2 * (n[0] * n[1] + m[0] * m[1] + k) + r**3 * (n[2] + m[2] + 2 * k) + 3 * r**4


# Reference §2.6 per-layer table, Conv3d C -> C, k = 3. LoKr at C = 32 (4·8) and 64 (8·8) differs from the
# reference's always-factorised W2: r = 4 ≥ max(c, d)/2 = 4 makes W2 full there, as in peft and LyCORIS.
REFERENCE_TABLE = {
    #      LoRA r4  LoRA r8  LoHa r4  DoRA r4  LoKr r4  L r4   L r8    Q r4   Q r8
    32: (3584, 7168, 7168, 3616, 16 + 8 * 8 * 27, 1920, 17408, 1968, 19648),
    64: (7168, 14336, 14336, 7232, 64 + 8 * 8 * 27, 2432, 19456, 2480, 21696),
    128: (14336, 28672, 28672, 14464, 1856, 3456, 23552, 3504, 25792),
    256: (28672, 57344, 57344, 28928, 2048, 3712, 25600, 3760, 27840),
    512: (57344, 114688, 114688, 57856, 3840, 5760, 33792, 5808, 36032),
}


@pytest.mark.parametrize("channels", list(REFERENCE_TABLE))
def test_per_layer_counts_match_the_reference_table(channels):
    conv = meta_conv(channels, channels)
    got = (layer_count("lora", conv, 4), layer_count("lora", conv, 8), layer_count("loha", conv, 4),
           layer_count("dora", conv, 4), layer_count("lokr", conv, 4), layer_count("tenvoo-l", conv, 4),
           layer_count("tenvoo-l", conv, 8), layer_count("tenvoo-q", conv, 4), layer_count("tenvoo-q", conv, 8))
    assert got == REFERENCE_TABLE[channels]


@pytest.mark.parametrize("c_in,c_out,k,r", [(1024, 512, 3, 4), (96, 64, 3, 2), (80, 48, 3, 3), (64, 128, 1, 4)])
def test_general_formulas(c_in, c_out, k, r):
    conv = meta_conv(c_in, c_out, k)
    fan_in = c_in * k**3
    assert layer_count("lora", conv, r) == r * (fan_in + c_out)
    assert layer_count("dora", conv, r) == r * (fan_in + c_out) + c_out
    assert layer_count("loha", conv, r) == 2 * r * (fan_in + c_out)
    assert layer_count("adalora", conv, r, target_rank=1) == r * (fan_in + c_out + 1)
    assert layer_count("dylora", conv, r) == r * (fan_in + c_out)
    assert layer_count("selora", conv, r) == r * (fan_in + c_out)
    (a, c), (b, d) = most_square_split(c_out), most_square_split(c_in)
    right = c * d * k**3 if r >= max(c, d) / 2 else r * (c + d * k**3)
    assert layer_count("lokr", conv, r) == a * b + right
    for variant in ("l", "q"):
        assert layer_count(f"tenvoo-{variant}", conv, r) == tenvoo_formula(variant, c_in, c_out, k, r)


@pytest.mark.parametrize("features,expected", [(128, 4608), (256, 6144), (512, 21504)])
def test_quanta_square_gates_ignore_the_rank(features, expected):
    linear = nn.Linear(features, features, device="meta")
    assert layer_count("tenvoo-l", linear, 4) == expected
    assert layer_count("tenvoo-l", linear, 12) == expected


def test_quanta_non_square_gates_are_rank_bottlenecked():
    r, (i1, i2, i3), (o1, o2, o3) = 4, tenvoo_factors(128), tenvoo_factors(64)
    assert layer_count("tenvoo-l", nn.Linear(128, 64, device="meta"), r) == r * r * (i2 * i3 + o3 * i1 + o1 * o2)


def test_linear_low_rank_counts():
    linear = nn.Linear(48, 80, device="meta")
    assert layer_count("lora", linear, 4) == 4 * (48 + 80)
    assert layer_count("adalora", linear, 4, target_rank=2) == 4 * (48 + 80 + 1)


@pytest.mark.parametrize("method,rank,adapter,total", [
    ("tenvoo-l", 4, 539_392, 601_024),      # paper table: 0.60 M
    ("tenvoo-l", 12, 5_711_616, 5_773_248),  # toy.ipynb: 5.773248 M
    ("tenvoo-q", 4, 542_272, 603_904),       # reference §2.6: 0.604 M (paper prints 0.58 M)
])
def test_tenvoo_unet_counts_on_the_meta_device(method, rank, adapter, total):
    plan = plan_adapter(TENVOO_ARCHITECTURE, method, "tenvoo", rank=rank)
    assert plan.counts.base == 166_669_313
    assert plan.counts.extra == 61_632  # every "norm" parameter + the biases of the wrapped layers
    assert (plan.counts.adapter, plan.counts.total) == (adapter, total)
    assert len(plan.layers) == 111  # 60 Conv3d (conv1/conv2) + 51 Linear
    assert not any(layer.name.startswith("middle_block") for layer in plan.layers)
    assert sum(layer.kind == "Conv3d" for layer in plan.layers) == 60


def test_lora_baseline_counts_on_the_tenvoo_unet():
    """Reference §2.6: LoCon 0.443 M at r = 1 and 0.824 M at r = 2; LoHa 0.824 M at r = 1."""
    assert plan_adapter(TENVOO_ARCHITECTURE, "lora", "tenvoo", rank=1).counts.total == 442_912
    assert plan_adapter(TENVOO_ARCHITECTURE, "lora", "tenvoo", rank=2).counts.total == 824_192
    assert plan_adapter(TENVOO_ARCHITECTURE, "loha", "tenvoo", rank=1).counts.total == 824_192


def test_plan_formats_a_table():
    plan = plan_adapter(TENVOO_ARCHITECTURE, "tenvoo-l", "tenvoo", rank=4)
    text = plan.format()
    assert "down_blocks.0.resnets.0.conv1.conv" in text and "0.36 % of 166.67 M" in text
    assert plan.as_dict()["counts"]["total"] == 601_024


def test_meta_unet_allocates_nothing():
    model = build_unet_on_meta(TENVOO_ARCHITECTURE)
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 166_669_313
