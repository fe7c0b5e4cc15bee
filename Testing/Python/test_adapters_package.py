"""Adapter packages: save -> load gives the same outputs; wrong base refused; describe; atomic writes."""

import json

import pytest
import torch
from safetensors.torch import load_file
from test_adapters_support import TINY_ARCHITECTURE, MiniTrainer, fingerprint, tiny_unet, unet_batch
from test_adapters_support import one_torch_thread  # noqa: F401 (autouse)

from DiffusionPEFTLib.adapters import describe, format_card, inject, load_adapter, save_adapter
from DiffusionPEFTLib.errors import AdapterError, InputError
from DiffusionPEFTLib.files import MARKER_NAME

OPTIONS = {"tenvoo-l": {"rank": 2}, "tenvoo-q": {"rank": 2}, "lora": {"rank": 3}, "dora": {"rank": 2},
           "loha": {"rank": 2}, "lokr": {"rank": 2}, "selora": {"rank": 1, "expand_every": 1, "threshold": 1.0},
           "dylora": {"rank": 3},
           "adalora": {"rank": 3, "target_rank": 1}, "norm-bias": {}, "full": {}, "controlled": {}}
PROVENANCE = {"data": "10 T1 volumes", "steps": 2, "seed": 0, "metrics": {"val_loss": 0.5}}


def trained(method: str, **model_overrides):
    adapters = inject(tiny_unet(**model_overrides), method, **OPTIONS.get(method, {}))
    trainer = MiniTrainer(adapters.model, adapters.trainable_parameters(), adapters.make_callbacks(2), lr=1e-2)
    for step in range(2):  # with the method's callbacks: SeLoRA grows to rank 3, AdaLoRA masks at step 1
        trainer.train_step(step, unet_batch())
    return adapters


@pytest.mark.parametrize("method", list(OPTIONS))
def test_save_then_load_reproduces_the_outputs(method, tmp_path):
    adapters = trained(method)
    base_sha = fingerprint(tiny_unet())
    folder = save_adapter(adapters, tmp_path / "adapter", base_fingerprint=base_sha,
                          base_architecture=TINY_ARCHITECTURE, provenance=PROVENANCE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
    assert sorted(p.name for p in folder.iterdir()) == [MARKER_NAME, "adapter.json", "adapter.safetensors"]

    x, t, _ = unet_batch()
    adapters.model.eval()
    loaded = load_adapter(folder, tiny_unet(), base_fingerprint=base_sha)
    loaded.model.eval()
    with torch.no_grad():
        assert (loaded.model(x, t) - adapters.model(x, t)).abs().max().item() <= 1e-6
    assert loaded.ranks() == adapters.ranks()
    assert loaded.counts() == adapters.counts()


def test_manifest_and_tensors_hold_what_is_needed(tmp_path):
    adapters = trained("tenvoo-l")
    sha = fingerprint(tiny_unet())
    folder = save_adapter(adapters, tmp_path / "a", base_fingerprint=sha, base_architecture=TINY_ARCHITECTURE,
                          provenance=PROVENANCE)
    manifest = json.loads((folder / "adapter.json").read_text())
    assert manifest["format_version"] == 1 and manifest["method"] == "tenvoo-l"
    assert manifest["options"]["rank"] == 2 and manifest["targets"] == ["tenvoo"]
    assert manifest["base_model"] == {"fingerprint": sha, "architecture": json.loads(json.dumps(TINY_ARCHITECTURE))}
    assert manifest["provenance"] == PROVENANCE
    assert manifest["layers"]["down_blocks.0.resnets.0.conv1.conv"]["rank"] == 2
    assert manifest["counts"]["extra"] > 0 and manifest["counts"]["total"] == adapters.counts().total
    tensors = load_file(str(folder / "adapter.safetensors"))
    assert "down_blocks.0.resnets.0.conv1.conv.frozen_core_0" in tensors  # θ0
    assert "down_blocks.0.resnets.0.conv1.conv.cores.0" in tensors  # θ
    assert "down_blocks.0.resnets.0.conv1.conv.bias" in tensors  # trained wrapped bias
    assert "down_blocks.0.resnets.0.norm1.weight" in tensors  # trained norm
    assert not any("frozen_weight" in k or ".base." in k for k in tensors)


def test_wrong_base_is_refused_unless_forced(tmp_path):
    adapters = trained("lora")
    folder = save_adapter(adapters, tmp_path / "a", base_fingerprint=fingerprint(tiny_unet()),
                          base_architecture=TINY_ARCHITECTURE)
    other = tiny_unet(seed=5)
    with pytest.raises(AdapterError, match="another base model") as caught:
        load_adapter(folder, other, base_fingerprint=fingerprint(other))
    assert caught.value.hint
    assert not any("lora" in n for n, _ in other.named_parameters())  # refused before touching the model
    forced = load_adapter(folder, other, base_fingerprint=fingerprint(other), allow_fingerprint_mismatch=True)
    assert len(forced.layers) == len(adapters.layers)


def test_describe_gives_a_card(tmp_path):
    adapters = trained("adalora")
    folder = save_adapter(adapters, tmp_path / "a", base_fingerprint="ab" * 32, base_architecture=TINY_ARCHITECTURE,
                          provenance=PROVENANCE)
    card = describe(folder)
    assert card["method"] == "adalora" and card["layers"] == len(adapters.layers)
    assert card["counts"]["adapter"] == adapters.counts().adapter
    assert card["ranks"]["sum"] == sum(adapters.ranks().values())
    text = format_card(card)
    assert "adalora" in text and "abab" in text and "10 T1 volumes" in text


def test_controlled_package_with_a_new_class_loads_onto_the_original_base(tmp_path):
    adapters = inject(tiny_unet(num_class_embeds=2), "controlled", new_class=True)
    folder = save_adapter(adapters, tmp_path / "a", base_fingerprint="cd" * 32,
                          base_architecture={**TINY_ARCHITECTURE, "num_class_embeds": 2})
    loaded = load_adapter(folder, tiny_unet(num_class_embeds=2), base_fingerprint="cd" * 32)
    assert loaded.recipe.new_class_label == 2
    x, t = torch.randn(1, 1, 16, 16, 16), torch.tensor([7])
    label = torch.tensor([2])
    with torch.no_grad():
        assert torch.equal(loaded.model(x, t, class_labels=label), adapters.model(x, t, class_labels=label))


def test_saving_is_atomic_and_checks_its_inputs(tmp_path):
    adapters = trained("lora")
    sha = fingerprint(tiny_unet())
    folder = save_adapter(adapters, tmp_path / "a", base_fingerprint=sha, base_architecture=TINY_ARCHITECTURE)
    with pytest.raises(InputError, match="already exists"):
        save_adapter(adapters, folder, base_fingerprint=sha, base_architecture=TINY_ARCHITECTURE)
    save_adapter(adapters, folder, base_fingerprint=sha, base_architecture=TINY_ARCHITECTURE, overwrite=True,
                 provenance={"steps": 9})
    assert json.loads((folder / "adapter.json").read_text())["provenance"] == {"steps": 9}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    with pytest.raises(AdapterError, match="sha256"):
        save_adapter(adapters, tmp_path / "b", base_fingerprint="not-a-hash", base_architecture={})
    assert not (tmp_path / "b").exists()
    with pytest.raises(AdapterError, match="not an adapter package"):
        load_adapter(tmp_path, tiny_unet(), base_fingerprint=sha)
