"""MONAI model-zoo bundle folders for the tests (configs/inference.json, configs/metadata.json, models/*.pt).

``BRAIN_*`` and ``BRATS_*`` state the networks, autoencoders and schedulers of the model zoo's
``brain_image_synthesis_latent_diffusion_model`` and ``brats_mri_generative_diffusion`` exactly as their published
configs do (key names, ``@`` references, ``$`` expressions kept as text), with metadata as published in the parts
the import reads. ``write_bundle`` builds the networks from such a config with MONAI's own ConfigParser (only the
network entries, which hold no expression), gives them random weights and saves them in the old
MONAI-Generative key format the real downloads use (``load_old=1``) or in MONAI's current one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

BRAIN_INFERENCE = {
    "imports": ["$import torch", "$from datetime import datetime", "$from pathlib import Path"],
    "bundle_root": ".",
    "load_old": 1,
    "model_dir": "$@bundle_root + '/models'",
    "output_dir": "$@bundle_root + '/output'",
    "create_output_dir": "$Path(@output_dir).mkdir(exist_ok=True)",
    "gender": 0.0, "age": 0.1, "ventricular_vol": 0.2, "brain_vol": 0.4,
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "conditioning": "$torch.tensor([[@gender, @age, @ventricular_vol, @brain_vol]]).to(@device).unsqueeze(1)",
    "autoencoder_def": {
        "_target_": "monai.networks.nets.AutoencoderKL", "spatial_dims": 3, "in_channels": 1, "out_channels": 1,
        "latent_channels": 3, "channels": [64, 128, 128, 128], "num_res_blocks": 2, "norm_num_groups": 32,
        "norm_eps": 1e-06, "attention_levels": [False, False, False, False], "with_encoder_nonlocal_attn": False,
        "with_decoder_nonlocal_attn": False},
    "network_def": "@autoencoder_def",
    "load_autoencoder_path": "$@model_dir + '/autoencoder.pt'",
    "load_autoencoder_func": "$@autoencoder_def.load_old_state_dict if bool(@load_old) else @autoencoder_def.load_state_dict",
    "load_autoencoder": "$@load_autoencoder_func(torch.load(@load_autoencoder_path))",
    "autoencoder": "$@autoencoder_def.to(@device)",
    "diffusion_def": {
        "_target_": "monai.networks.nets.DiffusionModelUNet", "spatial_dims": 3, "in_channels": 7, "out_channels": 3,
        "channels": [256, 512, 768], "num_res_blocks": 2, "attention_levels": [False, True, True],
        "norm_num_groups": 32, "norm_eps": 1e-06, "resblock_updown": True, "num_head_channels": [0, 512, 768],
        "with_conditioning": True, "transformer_num_layers": 1, "cross_attention_dim": 4, "upcast_attention": True,
        "use_flash_attention": False},
    "load_diffusion_path": "$@model_dir + '/model.pt'",
    "load_diffusion": "$@load_diffusion_func(torch.load(@load_diffusion_path))",
    "diffusion": "$@diffusion_def.to(@device)",
    "scheduler": {
        "_target_": "monai.networks.schedulers.DDIMScheduler", "_requires_": ["@load_diffusion", "@load_autoencoder"],
        "beta_start": 0.0015, "beta_end": 0.0205, "num_train_timesteps": 1000, "schedule": "scaled_linear_beta",
        "clip_sample": False},
    "noise": "$torch.randn((1, 3, 20, 28, 20)).to(@device)",
    "set_timesteps": "$@scheduler.set_timesteps(num_inference_steps=50)",
    "sampler": {"_target_": "scripts.sampler.Sampler", "_requires_": "@set_timesteps"},
    "sample": "$@sampler.sampling_fn(@noise, @autoencoder, @diffusion, @scheduler, @conditioning)",
    "run": "$@saver(@sample[0][0])",
}
BRAIN_METADATA = {
    "version": "1.0.0", "monai_version": "1.4.0", "task": "Brain image synthesis",
    "description": "A generative model for creating high-resolution 3D brain MRI based on UK Biobank",
    "authors": "Walter H. L. Pinaya et al.", "copyright": "Copyright (c) MONAI Consortium",
    "data_source": "https://www.ukbiobank.ac.uk/", "image_classes": "T1w head MRI with 1x1x1 mm voxel size",
    "intended_use": "This is a research tool/prototype and not to be used clinically",
    "network_data_format": {
        "inputs": {"image": {"type": "tabular", "num_channels": 1, "value_range": [0, 1],
                             "spatial_shape": [160, 224, 160],
                             "channel_def": {"0": "Gender", "1": "Age", "2": "Ventricular volume", "3": "Brain volume"}}},
        "outputs": {"pred": {"type": "image", "num_channels": 1, "spatial_shape": [160, 224, 160],
                             "value_range": [0, 1], "channel_def": {"0": "T1w"}}}},
}
BRAIN_NETWORKS = {"autoencoder.pt": "autoencoder_def", "model.pt": "diffusion_def"}

BRATS_INFERENCE = {
    "imports": ["$import torch", "$from datetime import datetime", "$from pathlib import Path"],
    "bundle_root": ".",
    "model_dir": "$@bundle_root + '/models'",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "spatial_dims": 3, "image_channels": 1, "latent_channels": 8, "latent_shape": [8, 36, 44, 28],
    "autoencoder_def": {
        "_target_": "monai.networks.nets.autoencoderkl.AutoencoderKL", "spatial_dims": "@spatial_dims",
        "in_channels": "@image_channels", "out_channels": "@image_channels", "latent_channels": "@latent_channels",
        "channels": [64, 128, 256], "num_res_blocks": 2, "norm_num_groups": 32, "norm_eps": 1e-06,
        "attention_levels": [False, False, False], "with_encoder_nonlocal_attn": False,
        "with_decoder_nonlocal_attn": False, "include_fc": False},
    "network_def": {
        "_target_": "monai.networks.nets.diffusion_model_unet.DiffusionModelUNet", "spatial_dims": "@spatial_dims",
        "in_channels": "@latent_channels", "out_channels": "@latent_channels", "channels": [256, 256, 512],
        "attention_levels": [False, True, True], "num_head_channels": [0, 64, 64], "num_res_blocks": 2,
        "include_fc": False, "use_combined_linear": False},
    "load_autoencoder_path": "$@bundle_root + '/models/model_autoencoder.pt'",
    "load_autoencoder": "$@autoencoder_def.load_old_state_dict(torch.load(@load_autoencoder_path))",
    "load_diffusion_path": "$@model_dir + '/model.pt'",
    "load_diffusion": "$@network_def.load_old_state_dict(torch.load(@load_diffusion_path))",
    "noise_scheduler": {
        "_target_": "monai.networks.schedulers.ddim.DDIMScheduler", "_requires_": ["@load_diffusion", "@load_autoencoder"],
        "num_train_timesteps": 1000, "beta_start": 0.0015, "beta_end": 0.0195, "schedule": "scaled_linear_beta",
        "clip_sample": False},
    "noise": "$torch.randn([1]+@latent_shape).to(@device)",
    "inferer": {"_target_": "scripts.ldm_sampler.LDMSampler", "_requires_": "@set_timesteps"},
    "run": ["$@inferer.run(@noise, @autoencoder, @diffusion, @noise_scheduler, @saver)"],
}
BRATS_METADATA = {
    "version": "1.1.5", "monai_version": "1.4.0", "name": "BraTS MRI Latent Diffusion Generation",
    "task": "Conditional Synthesis of Brain MRI with Tumor Features", "authors": "MONAI team",
    "copyright": "Copyright (c) MONAI Consortium", "data_source": "http://medicaldecathlon.com/",
    "image_classes": "Flair brain MRI with 1.1x1.1x1.1 mm voxel size",
    "intended_use": "This is a research tool/prototype and not to be used clinically",
    "network_data_format": {
        "inputs": {"latent": {"type": "noise", "num_channels": 8, "spatial_shape": [36, 44, 28], "value_range": [0, 1]}},
        "outputs": {"pred": {"type": "feature", "num_channels": 8, "spatial_shape": [36, 44, 28], "value_range": [0, 1]}}},
}
BRATS_NETWORKS = {"model_autoencoder.pt": "autoencoder_def", "model.pt": "network_def"}


def tiny_inference(conditions: int = 2) -> dict:
    """The brain bundle's scheme (conditions concatenated and cross-attended, old-format weights) with narrow
    networks: for the tests that are about the import itself rather than the published sizes."""
    config = copy.deepcopy(BRAIN_INFERENCE)
    names = ["age", "ventricular_vol", "brain_vol", "gender"][:conditions]
    for name in ("gender", "age", "ventricular_vol", "brain_vol"):
        config.pop(name)
    config.update({name: 0.25 * (i + 1) for i, name in enumerate(names)})
    config["conditioning"] = f"$torch.tensor([[{', '.join('@' + n for n in names)}]]).to(@device).unsqueeze(1)"
    config["autoencoder_def"].update(channels=[8, 16], attention_levels=[False, True], norm_num_groups=8,
                                     with_encoder_nonlocal_attn=True, with_decoder_nonlocal_attn=True)
    config["diffusion_def"].update(in_channels=3 + conditions, channels=[8, 16], attention_levels=[False, True],
                                   num_head_channels=[0, 8], norm_num_groups=8, cross_attention_dim=conditions,
                                   num_res_blocks=1)
    return config


def tiny_metadata(conditions: int = 2) -> dict:
    metadata = copy.deepcopy(BRAIN_METADATA)
    labels = {"0": "Age", "1": "Ventricular volume", "2": "Brain volume", "3": "Gender"}
    metadata["network_data_format"]["inputs"]["image"]["channel_def"] = {str(i): labels[str(i)] for i in range(conditions)}
    metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] = [16, 16, 16]
    metadata["network_data_format"]["outputs"]["pred"]["spatial_shape"] = [16, 16, 16]
    metadata["image_classes"] = "T1w head MRI with 8x8x8 mm voxel size"
    return metadata


def write_bundle(folder: Path, inference: dict, metadata: dict, networks: dict[str, str] | None = None,
                 old_format: bool = True, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    """Write a bundle folder; ``networks``: weight file name → config entry of the network it holds (None: no
    weights). Returns each file's state dict in MONAI's current key names (what an import must reproduce)."""
    from monai.bundle import ConfigParser

    (folder / "configs").mkdir(parents=True)
    (folder / "configs" / "inference.json").write_text(json.dumps(inference, indent=1))
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=1))
    (folder / "LICENSE").write_text("\n   Apache License\n   Version 2.0, January 2004\n")
    states = {}
    if networks:
        (folder / "models").mkdir()
    generator = torch.Generator().manual_seed(seed)
    pool = torch.randn(1 << 20, generator=generator) * 0.05
    for name, key in (networks or {}).items():
        with torch.device("meta"):  # only the network entry is parsed: it holds no expression
            network = ConfigParser(copy.deepcopy(inference)).get_parsed_content(key)
        state = {k: _random_like(v, pool, generator) for k, v in network.state_dict().items()}
        torch.save(to_old_format(state) if old_format else state, folder / "models" / name)
        states[name] = state
    return states


def to_old_format(state: dict) -> dict:
    """MONAI's current key names → MONAI-Generative's (the inverse of ``load_old_state_dict``'s renaming)."""
    old = {}
    for key, value in state.items():
        if ".attn.to_" in key or ".attn.out_proj." in key:  # self-attention blocks
            key = key.replace(".attn.to_", ".to_").replace(".attn.out_proj.", ".proj_attn.")
        elif "transformer_blocks" in key and ".out_proj." in key:  # cross-attention output projections
            key = key.replace(".out_proj.", ".to_out.0.")
        old[key.replace("postconv", "conv")] = value
    return old


def _random_like(tensor: torch.Tensor, pool: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random values of ``tensor``'s shape, cut from ``pool`` at a random offset (fast for 500 M parameters)."""
    count = tensor.numel()
    start = int(torch.randint(0, pool.numel(), (1,), generator=generator))
    repeats = -(-(start + count) // pool.numel())
    values = pool.repeat(repeats)[start:start + count] if repeats > 1 else pool[start:start + count]
    return values.reshape(tensor.shape).clone()
