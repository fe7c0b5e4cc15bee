"""A rough upper estimate of a UNet job's memory, to refuse jobs that cannot fit before they start.

Calibrated on this project's CPU measurements (channels (32,64,64), 1 res block, flash attention):
a training step keeps ≈60 float32 copies of every level's feature map, inference ≈8.
"""

from __future__ import annotations

import math

BYTES_PER_VALUE = 4
TRAINING_COPIES = 60
INFERENCE_COPIES = 8


def estimate_job_bytes(unet: dict, shape, batch: int, training: bool) -> float:
    """Bytes for activations (+ attention matrices when flash attention is off) and parameters."""
    channels = list(unet["channels"])
    res_blocks = unet.get("num_res_blocks", 2)
    res_blocks = res_blocks if isinstance(res_blocks, int) else max(res_blocks)
    voxels = math.prod(int(s) for s in shape)
    per_level = [c * voxels / 8**level for level, c in enumerate(channels)]
    copies = (TRAINING_COPIES if training else INFERENCE_COPIES) * max(1, res_blocks)
    activations = sum(per_level) * copies * batch * BYTES_PER_VALUE
    attention = 0.0
    if not unet.get("use_flash_attention", False):
        for level, active in enumerate(unet["attention_levels"]):
            if active:
                tokens = voxels / 8**level
                attention += tokens**2 * batch * BYTES_PER_VALUE * (3 if training else 1)
    params = sum(9 * c * c * 27 for c in channels) * BYTES_PER_VALUE * (4 if training else 1)
    return activations + attention + params
