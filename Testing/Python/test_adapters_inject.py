"""Injection: presets, custom regexes, extra trainables, counts, state, and the errors a user can hit."""

import pytest
import torch
from test_adapters_support import tiny_unet, one_torch_thread  # noqa: F401 (autouse)
from torch import nn

from DiffusionPEFTLib.adapters import AdapterLayer, inject
from DiffusionPEFTLib.errors import AdapterError


def test_tenvoo_preset_wraps_the_official_layers_and_trains_norms_and_wrapped_biases():
    model = tiny_unet()
    adapters = inject(model, "tenvoo-l", "tenvoo", rank=2)
    names = list(adapters.layers)
    assert "time_embed.2" in names and "down_blocks.0.resnets.0.conv1.conv" in names
    assert "down_blocks.2.attentions.0.attn.to_q" in names and "up_blocks.0.attentions.1.attn.to_v" in names
    assert not any(n.startswith("middle_block") for n in names)  # official regexes skip the mid block
    assert not any(n.endswith(("to_k", "out_proj", "skip_connection.conv", "op.conv")) for n in names)
    assert "down_blocks.0.resnets.0.conv1.conv.bias" in adapters.extra
    assert "middle_block.resnet_1.norm1.weight" in adapters.extra  # every "norm" parameter, mid block too
    assert "out.0.weight" not in adapters.extra  # the official name rule misses MONAI's final GroupNorm
    counts = adapters.counts()
    assert counts.adapter == sum(p.numel() for layer in adapters.layers.values() for p in layer.adapter_parameters())
    assert counts.extra == sum(p.numel() for p in adapters.extra.values())
    assert counts.total == counts.adapter + counts.extra == sum(p.numel() for p in adapters.trainable_parameters())
    assert counts.base == sum(p.numel() for p in tiny_unet().parameters())
    assert counts.share == pytest.approx(counts.total / counts.base)
    assert "norms/biases" in str(counts)


def test_presets_custom_regexes_and_overrides():
    conv_layers = inject(tiny_unet(), "lora", "all-conv", rank=2).layers
    assert all(isinstance(layer.base, nn.Conv3d) for layer in conv_layers.values())
    assert "conv_in.conv" in conv_layers and "middle_block.resnet_1.conv1.conv" in conv_layers
    attention = inject(tiny_unet(), "lora", "attention", rank=2).layers
    assert {n.rsplit(".", 1)[1] for n in attention} == {"to_q", "to_k", "to_v", "out_proj"}
    assert any(n.startswith("middle_block.attention") for n in attention)
    mixed = inject(tiny_unet(), "lora", [r"time_embed\.[02]", r".*skip_connection\.conv"], rank=2,
                   train_norms=True, train_bias=True)
    assert "time_embed.0" in mixed.layers and "up_blocks.0.resnets.0.skip_connection.conv" in mixed.layers
    assert "out.0.weight" in mixed.extra  # train_norms=True: every normalisation layer
    assert inject(tiny_unet(), "lora", "attention", rank=2).extra == {}


def test_inject_freezes_the_base_and_state_dict_uses_original_names():
    adapters = inject(tiny_unet(), "lora", r".*resnets\.0\.conv1\.conv", rank=2)
    trainable = {id(p) for p in adapters.trainable_parameters()}
    assert all(id(p) in trainable for p in adapters.model.parameters() if p.requires_grad)
    assert all(not layer.base.weight.requires_grad for layer in adapters.layers.values())
    keys = set(adapters.state_dict())
    assert "down_blocks.0.resnets.0.conv1.conv.lora_down" in keys
    assert not any(".base." in key for key in keys)


def test_adapter_set_state_round_trip():
    source = inject(tiny_unet(), "loha", "tenvoo", rank=2)
    with torch.no_grad():
        for p in source.trainable_parameters():
            p.add_(0.01)
    target = inject(tiny_unet(), "loha", "tenvoo", rank=2)
    target.load_state_dict(source.state_dict())
    for (name, a), (_, b) in zip(source.named_trainable_parameters(), target.named_trainable_parameters()):
        assert torch.equal(a, b), name
    with pytest.raises(AdapterError, match="not wrapped"):
        target.load_state_dict({**source.state_dict(), "nowhere.lora_down": torch.zeros(1)})


@pytest.mark.parametrize("call,message", [
    (lambda m: inject(m, "lora", r".*does_not_exist", rank=2), "matches no"),
    (lambda m: inject(m, "lora", r"down_blocks\.0\.resnets\.0\.conv1", rank=2), "matches no"),
    (lambda m: inject(m, "lora", "[unclosed", rank=2), "not a valid regular expression"),
    (lambda m: inject(m, "lora", rank=0), "positive integer"),
    (lambda m: inject(m, "tenvoo-l", rank=-2), "positive integer"),
    (lambda m: inject(m, "loha", rank=2.5), "positive integer"),
    (lambda m: inject(m, "magic-lora", rank=2), "Unknown adapter method"),
    (lambda m: inject(m, "lora", rank=2, bogus=1), "no option 'bogus'"),
    (lambda m: inject(m, "dylora", rank=2, min_rank=3), "min_rank"),
    (lambda m: inject(m, "adalora", rank=4, target_rank=8), "target_rank"),
    (lambda m: inject(m, "selora", rank=4, max_rank=2), "max_rank"),
    (lambda m: inject(m, "full", "tenvoo"), "fixed selection"),
    (lambda m: inject(m, "tenvoo-l", rank=2, factors={16: [4, 4, 4]}), "product is 16"),
    (lambda m: inject(m, "controlled", new_class=True), "no class embedding"),
    (lambda m: inject(m, "controlled", lr_factor=0), "lr_factor"),
    (lambda m: inject(m, "controlled", max_epochs=0), "max_epochs"),
])
def test_clear_adapter_errors(call, message):
    with pytest.raises(AdapterError, match=message) as caught:
        call(tiny_unet())
    assert caught.value.hint


def test_error_hints_point_at_the_fix():
    with pytest.raises(AdapterError) as caught:
        inject(tiny_unet(), "lora", r"down_blocks\.0\.resnets\.0\.conv1", rank=2)
    assert "Convolution" in caught.value.hint and "\\.conv" in caught.value.hint
    with pytest.raises(AdapterError) as caught:
        inject(tiny_unet(), "nope")
    assert "tenvoo-l" in caught.value.hint and "selora" in caught.value.hint


def test_injecting_twice_is_refused_and_a_failed_inject_leaves_the_model_untouched():
    model = tiny_unet()
    inject(model, "lora", rank=2)
    with pytest.raises(AdapterError, match="already carries adapters"):
        inject(model, "lora", rank=2)
    for failing in (dict(targets=["tenvoo", r".*nothing"]), dict(factors={16: [4, 4, 4]})):
        fresh = tiny_unet()
        with pytest.raises(AdapterError):
            inject(fresh, "tenvoo-l", rank=2, **failing)
        assert not any(isinstance(m, AdapterLayer) for m in fresh.modules())
        assert all(p.requires_grad for p in fresh.parameters())


def test_selection_methods_and_controlled_recipe():
    norm_bias = inject(tiny_unet(), "norm-bias")
    assert norm_bias.layers == {} and norm_bias.counts().adapter == 0
    assert all(name.endswith(("bias", "weight")) for name in norm_bias.extra)
    assert "out.0.weight" in norm_bias.extra and "conv_in.conv.bias" in norm_bias.extra
    assert "conv_in.conv.weight" not in norm_bias.extra
    full = inject(tiny_unet(), "full")
    assert full.counts().share == 1.0 and full.recipe.lr_factor == 1.0

    model = tiny_unet(num_class_embeds=2)
    controlled = inject(model, "controlled", new_class=True, new_class_init=0)
    assert controlled.recipe.lr_factor == 0.1 and controlled.recipe.needs_validation
    assert controlled.recipe.new_class_label == 2
    assert model.class_embedding.num_embeddings == 3
    assert torch.equal(model.class_embedding.weight[2], model.class_embedding.weight[0])
    x, t = torch.randn(1, 1, 16, 16, 16), torch.tensor([3])
    model(x, t, class_labels=torch.tensor([2]))
    assert controlled.counts().total == sum(p.numel() for p in model.parameters())
