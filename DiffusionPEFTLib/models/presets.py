"""Config presets for ``import --preset NAME CHECKPOINT``: the model.json of a published pixel-space DDPM, as
data, so that its checkpoint alone makes a model package.

``tenvoo``: TenVOO's pretrained UNet (github.com/xiaovhua/tenvoo; peft_methods.md §1), 166,669,313 parameters.

- architecture: ``ddpm_unet.py`` ``init_diffusion_unet`` (MONAI-Generative's ``num_channels`` is MONAI core's
  ``channels``);
- scheduler: ``pretrain_ddpm.py``: 1000 steps of scaled_linear_beta from 0.0005 to 0.0195, ε target;
- input: ``dataset.py`` ``default_transform``: 160×224×160 voxels at 1 mm, RAS, ``ScaleIntensity(minv=0, maxv=1)``.
  That min–max scaling is our percentile normalisation with the 0th and 100th percentiles (the minimum and the
  maximum) mapped to [0, 1]: the same linear map, exactly, and it stays invertible.
"""

from __future__ import annotations

import copy

from .config import MODEL_FORMAT_VERSION, ModelConfig

PRESETS: dict[str, dict] = {
    "tenvoo": {
        "format_version": MODEL_FORMAT_VERSION,
        "task": "synthesis",
        "architecture": {"class": "monai.networks.nets.DiffusionModelUNet", "arguments": {
            "spatial_dims": 3, "in_channels": 1, "out_channels": 1, "num_res_blocks": 2,
            "channels": [32, 32, 64, 128, 256, 512],
            "attention_levels": [False, False, False, False, True, True],
            "norm_num_groups": 32, "norm_eps": 1e-6, "num_head_channels": [0, 0, 0, 0, 256, 512]}},
        "scheduler": {"num_train_timesteps": 1000, "schedule": "scaled_linear_beta", "beta_start": 0.0005,
                      "beta_end": 0.0195, "prediction_type": "epsilon"},
        "input": {"shape": [160, 224, 160], "spacing": [1.0, 1.0, 1.0], "orientation": "RAS",
                  "intensity": {"method": "percentile", "lower": 0.0, "upper": 100.0, "range": [0.0, 1.0]}},
        "provenance": {"preset": "tenvoo", "described_by": "github.com/xiaovhua/tenvoo: ddpm_unet.py, "
                       "pretrain_ddpm.py, dataset.py"},
    },
}


def preset_config(name: str) -> ModelConfig:
    """The checked ModelConfig that preset ``name`` (a key of :data:`PRESETS`) stands for (its own copy)."""
    return ModelConfig.from_dict(copy.deepcopy(PRESETS[name]), source=f"preset {name}")
