"""``import --preset tenvoo CHECKPOINT``: a checkpoint as TenVOO's scripts save it (``torch.save(unet.state_dict())``
of MONAI-Generative's DiffusionModelUNet, i.e. old key names, no wrapper; xiaovhua/tenvoo ``pretrain_ddpm.py``)
becomes a package with TenVOO's architecture, schedule and input, and the published parameter counts.

One full-size UNet (166.7 M parameters, a 667 MB checkpoint) is built and imported per module."""

from __future__ import annotations

import json

import pytest
import torch
from bundles import to_old_format
from conftest import run_cli
from test_adapters_support import one_torch_thread  # noqa: F401 (autouse)

from DiffusionPEFTLib.adapters import inject
from DiffusionPEFTLib.errors import ModelError
from DiffusionPEFTLib.models import load_model
from DiffusionPEFTLib.models.diffusion_model import build_unet
from DiffusionPEFTLib.models.package import load_network_state
from DiffusionPEFTLib.models.presets import preset_config

TENVOO_PARAMETERS = 166_669_313  # toy.ipynb / pretrain_ddpm.py printout (peft_methods.md §1)


@pytest.fixture(scope="module")
def tenvoo_checkpoint(tmp_path_factory):
    """(checkpoint path, its tensors under MONAI's current names): TenVOO's UNet with distinct random values in
    every tensor, saved like TenVOO's pretrain_ddpm.py saves it."""
    unet = build_unet(preset_config("tenvoo").unet, initialise=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in unet.state_dict().values():
            tensor.normal_(0.0, 0.02, generator=generator)
    state = unet.state_dict()
    path = tmp_path_factory.mktemp("tenvoo") / "ddpm-last.pth"
    torch.save(to_old_format(state), path)
    return path, state


@pytest.fixture(scope="module")
def imported(tenvoo_checkpoint, tmp_path_factory):
    """The package ``diffusion-peft import --preset tenvoo`` writes from the checkpoint."""
    out = tmp_path_factory.mktemp("imported") / "tenvoo"
    code, events = run_cli("import", "--preset", "tenvoo", tenvoo_checkpoint[0], "--out", out)
    assert code == 0, events.events
    return out


def test_the_checkpoint_uses_monai_generative_names(tenvoo_checkpoint):
    names = torch.load(tenvoo_checkpoint[0], weights_only=True, mmap=True).keys()
    assert {"down_blocks.4.attentions.0.to_q.weight", "middle_block.attention.proj_attn.bias",
            "up_blocks.0.upsampler.conv.conv.weight"} <= names
    assert not any(".attn.to_q" in name or "postconv" in name for name in names)


def test_imported_package_holds_the_saved_weights(tenvoo_checkpoint, imported):
    model = load_model(imported)
    assert model.parameter_count() == TENVOO_PARAMETERS
    loaded = model.unet.state_dict()
    assert loaded.keys() == tenvoo_checkpoint[1].keys()
    assert all(torch.equal(loaded[name], tensor) for name, tensor in tenvoo_checkpoint[1].items())


def test_model_json_records_the_preset_and_the_source(tenvoo_checkpoint, imported):
    spec = json.loads((imported / "model.json").read_text())
    assert spec["provenance"]["preset"] == "tenvoo"
    assert spec["provenance"]["imported_from"] == str(tenvoo_checkpoint[0])
    assert spec["architecture"]["arguments"]["channels"] == [32, 32, 64, 128, 256, 512]
    assert spec["scheduler"] == {"num_train_timesteps": 1000, "schedule": "scaled_linear_beta", "beta_start": 0.0005,
                                 "beta_end": 0.0195, "prediction_type": "epsilon"}
    assert spec["input"]["shape"] == [160, 224, 160] and spec["input"]["spacing"] == [1.0, 1.0, 1.0]
    assert {k: spec["input"]["intensity"][k] for k in ("lower", "upper", "range")} == {
        "lower": 0.0, "upper": 100.0, "range": [0.0, 1.0]}  # TenVOO's ScaleIntensity(minv=0, maxv=1): min–max


def test_tenvoo_l_rank_4_on_the_imported_unet_counts_the_published_numbers(imported):
    model = load_model(imported)
    adapters = inject(model.unet, "tenvoo-l", "tenvoo", rank=4)
    counts = adapters.counts()
    assert (counts.base, counts.adapter, counts.total) == (TENVOO_PARAMETERS, 539_392, 601_024)  # paper: 0.60 M
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 601_024


def test_a_checkpoint_of_another_architecture_is_refused_naming_tensors(tmp_path, tiny_model_dir):
    torch.save(load_model(tiny_model_dir).unet.state_dict(), tmp_path / "tiny.pt")
    code, events = run_cli("import", "--preset", "tenvoo", tmp_path / "tiny.pt", "--out", tmp_path / "pkg")
    error = events.of("error")[0]
    assert code == 3 and error["kind"] == "model", events.events
    assert "do not fit the architecture in preset tenvoo" in error["message"]
    assert "missing (down_blocks.0.resnets.1.norm1.weight" in error["message"]  # tiny has 1 res block, TenVOO 2
    assert "conv_in.conv.weight: (8, 1, 3, 3, 3) vs (32, 1, 3, 3, 3)" in error["message"]
    assert "--preset" in error["hint"]
    assert not (tmp_path / "pkg").exists()


def test_the_tenvoo_checkpoint_with_another_model_json_is_refused(tmp_path, tenvoo_checkpoint, tiny_model_dir):
    code, events = run_cli("import", tiny_model_dir / "model.json", tenvoo_checkpoint[0], "--out", tmp_path / "pkg")
    error = events.of("error")[0]
    assert code == 3 and "do not fit" in error["message"], events.events
    assert "unexpected (down_blocks.0.resnets.1.norm1.weight" in error["message"]
    assert not (tmp_path / "pkg").exists()


def test_a_tensor_missing_from_an_old_format_file_is_named_alone(tenvoo_checkpoint):
    """The other tensors are matched under their MONAI-Generative names: none is reported unexpected."""
    state = torch.load(tenvoo_checkpoint[0], weights_only=True, mmap=True)
    del state["down_blocks.4.attentions.0.to_q.weight"]
    with pytest.raises(ModelError) as caught:
        load_network_state(build_unet(preset_config("tenvoo").unet, initialise=False), state, "partial.pth")
    assert caught.value.message.endswith("model.json: 1 missing (down_blocks.4.attentions.0.attn.to_q.weight).")


def test_a_missing_checkpoint_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, events = run_cli("import", "--preset", "tenvoo", "downloads/ddpm-last.pth", "--out", "pkg")
    error = events.of("error")[0]
    assert code == 3 and "not found" in error["message"]
    assert f"Put the downloaded file here: {tmp_path / 'downloads' / 'ddpm-last.pth'}" in error["hint"]
