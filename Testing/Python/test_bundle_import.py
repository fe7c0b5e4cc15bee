"""MONAI model-zoo latent diffusion bundles → latent model packages.

The two published bundles at their exact architectures (the 553 M-parameter UK Biobank brain LDM UNet and the
189 M-parameter BraTS one; random weights in the old key format the downloads use; grids reduced) are imported
(the command's own functions), sampled, fine-tuned with TenVOO-L for 2 steps and sampled again. The commands
themselves (``import-bundle``, ``synthesize``/``finetune --condition``, ``synthesize --adapter``) run on narrow
networks in the brain bundle's scheme, which also show that a ``$`` expression is never run, a missing weight file
says where to put it, conditions are named, checked and used, volumes are encoded once, LoRA trains too, and the
output rule holds.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundles import (BRAIN_INFERENCE, BRAIN_METADATA, BRAIN_NETWORKS, BRATS_INFERENCE, BRATS_METADATA,
                     BRATS_NETWORKS, tiny_inference, tiny_metadata, write_bundle)
from conftest import run_cli, smooth_volume
from sandbox import snapshot

from DiffusionPEFTLib.volumes import write_volume


@pytest.fixture
def scratch(tmp_path):
    """A folder for half a gigabyte to several gigabytes of weights: in memory (/dev/shm) where there is room,
    so the large bundles do not wait on the disk; removed afterwards."""
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > 12e9:
        folder = shm / f"diffusion-peft-test-{os.getpid()}-{tmp_path.name}"
        folder.mkdir()
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path


def scans(root: Path, count: int = 2) -> Path:
    for index in range(count):
        write_volume(smooth_volume(seed=index), root / "scans" / f"scan{index}.nii.gz")
    return root / "scans"


def ok(*argv):
    code, events = run_cli(*argv)
    assert code == 0, events.of("error")
    return events


def failing(*argv) -> dict:
    code, events = run_cli(*argv)
    errors = events.of("error")
    assert code != 0 and len(errors) == 1 and not events.of("done"), events.events
    return errors[0]


def stored_tensors(package: Path, name: str, keys) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(package / name), "pt") as handle:
        return {key: handle.get_tensor(key) for key in keys}


def definition(config: dict, key: str) -> dict:
    """A network entry of a config as MONAI would build it: ``@`` references resolved, ``_target_`` left out."""
    return {name: config[value[1:]] if isinstance(value, str) and value.startswith("@") else value
            for name, value in config[key].items() if name != "_target_"}


def sample_volume(path: Path) -> np.ndarray:
    data = np.asarray(nib.load(str(path)).dataobj)
    assert np.isfinite(data).all()
    return data


def import_sample_adapt(root: Path, bundle: Path, shape: tuple[int, int, int], probed: dict,
                        targets: str | None = None, conditions: dict | None = None) -> tuple[dict, object]:
    """What ``import-bundle`` does (import at ``shape``, write the package), then on the imported model (the
    commands' own loading and adapter merging are tested on the narrow bundles): sample, fine-tune TenVOO-L for
    2 steps, merge, sample again from the same noise; returns (model.json, fine-tuning outcome)."""
    from DiffusionPEFTLib.context import RunContext
    from DiffusionPEFTLib.finetuning import FineTuneSettings, fine_tune
    from DiffusionPEFTLib.models.bundle import BundleOverrides, import_bundle
    from DiffusionPEFTLib.models.latent_model import save_latent_model
    from DiffusionPEFTLib.synthesis import sample
    from DiffusionPEFTLib.training import find_volume_files

    package = root / "package"
    model = import_bundle(bundle, BundleOverrides(shape=shape))
    save_latent_model(model, package)
    for name, tensors in probed.items():  # old-format files: the renamed keys land on the right tensors
        stored = stored_tensors(package, "autoencoder.safetensors" if "autoencoder" in name else "weights.safetensors",
                                tensors)
        assert all(torch.equal(stored[key], tensors[key]) for key in tensors)
    first = sample(model, 1, steps=2, conditions=conditions, generator=torch.Generator().manual_seed(0))
    assert first.shape == (1, 1, *shape) and torch.isfinite(first).all()
    outcome = fine_tune(model, find_volume_files([scans(root)]), FineTuneSettings(
        method="tenvoo-l", targets=targets, steps=2, conditions=conditions), root / "work", RunContext())
    model.unet = outcome.adapters.merge_and_unload()
    again = sample(model, 1, steps=2, conditions=conditions, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(again).all() and not torch.equal(again, first)  # the adapter changed the model
    return json.loads((package / "model.json").read_text()), outcome


def probes(state: dict, pattern: str, count: int = 3) -> dict:
    """A few tensors whose old-format names differ from MONAI's (``pattern``), plus the first one."""
    keys = [key for key in state if pattern in key][:count] + [next(iter(state))]
    return {key: state[key] for key in keys}


# --- the published bundles at their exact architectures ------------------------------------------------


def test_brain_ldm_bundle_imports_samples_with_conditions_and_finetunes(scratch):
    bundle = scratch / "brain_image_synthesis_latent_diffusion_model"
    states = write_bundle(bundle, BRAIN_INFERENCE, BRAIN_METADATA, BRAIN_NETWORKS)
    probed = {"model.pt": probes(states["model.pt"], "transformer_blocks.0.attn2.out_proj"),
              "autoencoder.pt": probes(states["autoencoder.pt"], "postconv")}
    del states

    from DiffusionPEFTLib.models.bundle import read_bundle
    from DiffusionPEFTLib.models.latent_model import LatentSpec

    full = read_bundle(bundle).config  # the published grid, read as data: 160×224×160 at 1 mm → 3×20×28×20 latents
    assert full.input.shape == (160, 224, 160) and full.input.spacing == (1.0, 1.0, 1.0)
    assert LatentSpec.from_dict(full.latent).latent_shape(full.input.shape) == (20, 28, 20)

    # TenVOO-L on the attention layers here (the 553 M-parameter UNet's convolutions take the CPU seconds per step)
    spec, outcome = import_sample_adapt(scratch, bundle, (32, 32, 32), probed, targets="attention",
                                        conditions={"age": 0.6, "ventricular_vol": 0.3})
    assert spec["task"] == "latent"
    assert spec["architecture"]["arguments"] == definition(BRAIN_INFERENCE, "diffusion_def")
    assert spec["latent"]["autoencoder"]["arguments"] == definition(BRAIN_INFERENCE, "autoencoder_def")
    assert spec["latent"]["conditioning"] == ["concat", "crossattn"]
    assert [(c["name"], c["default"], c["label"]) for c in spec["latent"]["conditions"]] == [
        ("gender", 0.0, "Gender"), ("age", 0.1, "Age"), ("ventricular_vol", 0.2, "Ventricular volume"),
        ("brain_vol", 0.4, "Brain volume")]
    assert spec["scheduler"] == {"num_train_timesteps": 1000, "schedule": "scaled_linear_beta", "beta_start": 0.0015,
                                 "beta_end": 0.0205, "prediction_type": "epsilon"}
    card = spec["provenance"]["bundle"]
    assert card["name"] == "brain_image_synthesis_latent_diffusion_model" and card["version"] == "1.0.0"
    assert card["copyright"] == "Copyright (c) MONAI Consortium" and card["licence_file"] == "LICENSE: Apache License"
    assert set(card["weights"]) == {"autoencoder", "unet"} and len(card["weights"]["unet"]["sha256"]) == 64
    assert any("attn2" in layer.name for layer in outcome.adapters.layer_summaries())  # cross-attention adapted too
    assert outcome.provenance["conditions"] == {"gender": 0.0, "age": 0.6, "ventricular_vol": 0.3, "brain_vol": 0.4}


def test_brats_bundle_imports_samples_and_finetunes(scratch):
    bundle = scratch / "brats_mri_generative_diffusion"
    states = write_bundle(bundle, BRATS_INFERENCE, BRATS_METADATA, BRATS_NETWORKS)
    probed = {"model.pt": probes(states["model.pt"], ".attn.to_q"),
              "model_autoencoder.pt": probes(states["model_autoencoder.pt"], "postconv")}
    del states

    spec, _ = import_sample_adapt(scratch, bundle, (16, 16, 16), probed)  # TenVOO-L on its default layers
    # as published, plus the MONAI default it leaves out (model.json states the whole architecture)
    assert spec["architecture"]["arguments"] == {**definition(BRATS_INFERENCE, "network_def"), "norm_num_groups": 32}
    assert spec["latent"]["autoencoder"]["arguments"] == definition(BRATS_INFERENCE, "autoencoder_def")
    assert spec["latent"]["conditions"] == [] and spec["latent"]["scale_factor"] == 1.0
    assert spec["input"]["spacing"] == [1.1, 1.1, 1.1]  # "Flair brain MRI with 1.1x1.1x1.1 mm voxel size"
    assert spec["provenance"]["bundle"]["name"] == "BraTS MRI Latent Diffusion Generation"

    from DiffusionPEFTLib.models.bundle import read_bundle

    assert read_bundle(bundle).config.input.shape == (144, 176, 112)  # latent_shape [8, 36, 44, 28] × 4


# --- narrow networks in the brain bundle's scheme ------------------------------------------------------


def tiny_bundle(root: Path, weights: bool = True, **changes) -> Path:
    config = tiny_inference()
    config.update(changes)
    write_bundle(root / "bundle", config, tiny_metadata(), BRAIN_NETWORKS if weights else None)
    return root / "bundle"


def test_expressions_are_never_run(tmp_path):
    planted = tmp_path / "PWNED"
    bundle = tiny_bundle(tmp_path, pwn=f"$open({str(planted)!r}, 'w')",
                         create_output_dir=f"$__import__('os').system('touch {planted}')")
    ok("import-bundle", bundle, "--out", tmp_path / "package")  # an expression where no value is needed: ignored
    assert not planted.exists()

    config = tiny_inference()
    config["groups"] = f"$__import__('os').system('touch {planted}') or 8"
    config["autoencoder_def"]["norm_num_groups"] = "@groups"  # needed, and only an expression behind a reference
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))  # (MONAI's own parser would run it)
    before = snapshot(tmp_path)
    error = failing("import-bundle", bundle, "--out", tmp_path / "second")
    assert error["kind"] == "input" and "never run" in error["message"] and "groups" in error["message"]
    assert not planted.exists() and snapshot(tmp_path) == before


def test_a_missing_weight_file_says_where_to_put_it(tmp_path):
    bundle = tiny_bundle(tmp_path, weights=False)
    error = failing("import-bundle", bundle, "--out", tmp_path / "package")
    assert error["kind"] == "model"
    assert f"put the downloaded file here: {bundle / 'models' / 'autoencoder.pt'}" in error["message"]
    assert not (tmp_path / "package").exists()


def test_outputs_follow_the_output_rule(tmp_path):
    bundle = tiny_bundle(tmp_path)
    error = failing("import-bundle", bundle, "--out", bundle / "package")
    assert "inside the input" in error["message"]
    # weights of another network: the import fails after its checks and leaves nothing behind
    torch.save({"conv.weight": torch.zeros(1)}, bundle / "models" / "model.pt")
    before = snapshot(tmp_path)
    error = failing("import-bundle", bundle, "--out", tmp_path / "out" / "package")
    assert error["kind"] == "model" and "do not fit" in error["message"]
    assert snapshot(tmp_path) == before
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("a user's file")
    assert "already exists" in failing("import-bundle", bundle, "--out", tmp_path / "taken")["message"]


def test_old_and_current_key_formats_give_the_same_package(tmp_path):
    fingerprints = []
    for old_format in (True, False):
        root = tmp_path / str(old_format)
        write_bundle(root / "bundle", tiny_inference(), tiny_metadata(), BRAIN_NETWORKS, old_format=old_format)
        ok("import-bundle", root / "bundle", "--out", root / "package")
        spec = json.loads((root / "package" / "model.json").read_text())
        fingerprints.append((spec["weights_sha256"], spec["latent"]["autoencoder_sha256"]))
    assert fingerprints[0] == fingerprints[1]


def test_conditions_are_named_checked_and_change_the_sample(tmp_path):
    from DiffusionPEFTLib.models.latent_model import load_latent_model
    from DiffusionPEFTLib.synthesis import sample

    package = tmp_path / "package"
    ok("import-bundle", tiny_bundle(tmp_path), "--out", package)
    model = load_latent_model(package)
    assert model.condition_values({"age": 0.9}) == {"age": 0.9, "ventricular_vol": 0.5}  # defaults from the bundle
    young, old = (sample(model, 1, steps=3, conditions={"age": age}, generator=torch.Generator().manual_seed(0))
                  for age in (0.0, 1.0))
    assert young.shape == (1, 1, 16, 16, 16) and not torch.allclose(young, old)

    error = failing("synthesize", package, "--condition", "height=0.5", "--out", tmp_path / "s.nii.gz")
    assert error["kind"] == "input" and "age" in error["hint"] and "ventricular_vol" in error["hint"]
    error = failing("synthesize", package, "--condition", "age=67", "--out", tmp_path / "s.nii.gz")
    assert "[0, 1]" in error["message"]
    assert not (tmp_path / "s.nii.gz").exists()


def test_the_commands_take_a_latent_package_with_conditions(tmp_path):
    package = tmp_path / "package"
    ok("import-bundle", tiny_bundle(tmp_path), "--out", package)
    condition = ("--condition", "age=0.6,ventricular_vol=0.3")
    ok("synthesize", package, "--steps", "2", *condition, "--out", tmp_path / "first.nii.gz")
    ok("finetune", package, scans(tmp_path), "--method", "tenvoo-l", "--steps", "2", *condition,
       "--out", tmp_path / "adapter")
    ok("synthesize", package, "--adapter", tmp_path / "adapter", "--steps", "2", *condition, "--out",
       tmp_path / "again.nii.gz")
    first, again = sample_volume(tmp_path / "first.nii.gz"), sample_volume(tmp_path / "again.nii.gz")
    assert first.shape == again.shape == (16, 16, 16) and not np.array_equal(first, again)
    adapter = json.loads((tmp_path / "adapter" / "adapter.json").read_text())
    assert adapter["provenance"]["conditions"] == {"age": 0.6, "ventricular_vol": 0.3}
    card = ok("info", package, "--json").of("result")[0]["value"]
    assert [c["name"] for c in card["latent"]["conditions"]] == ["age", "ventricular_vol"]


def test_lora_finetunes_on_latents_encoded_once_with_a_frozen_autoencoder(tmp_path):
    from DiffusionPEFTLib.context import RunContext
    from DiffusionPEFTLib.finetuning import FineTuneSettings, fine_tune
    from DiffusionPEFTLib.models.latent_model import load_latent_model
    from DiffusionPEFTLib.training import find_volume_files

    package = tmp_path / "package"
    ok("import-bundle", tiny_bundle(tmp_path), "--out", package)
    model = load_latent_model(package)
    autoencoder = {k: v.clone() for k, v in model.autoencoder.state_dict().items()}
    calls = []
    model.autoencoder.encoder.register_forward_hook(lambda *args: calls.append(1))
    files = find_volume_files([scans(tmp_path, 3)])
    outcome = fine_tune(model, files, FineTuneSettings(method="lora", steps=4, conditions={"age": 0.7}),
                        tmp_path / "work", RunContext())
    assert len(calls) == 3 and outcome.result.steps == 4  # each volume encoded once, not once per step
    assert all(torch.equal(v, autoencoder[k]) for k, v in model.autoencoder.state_dict().items())
    assert not any(p.requires_grad for p in model.autoencoder.parameters())
    assert outcome.provenance["conditions"] == {"age": 0.7, "ventricular_vol": 0.5}

    ok("finetune", package, tmp_path / "scans", "--method", "lora", "--steps", "2", "--out", tmp_path / "lora")
    ok("synthesize", package, "--adapter", tmp_path / "lora", "--steps", "2", "--out", tmp_path / "s.nii.gz")
    assert sample_volume(tmp_path / "s.nii.gz").shape == (16, 16, 16)
