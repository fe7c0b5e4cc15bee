"""A MedicalNet ResNet (Chen et al. 2019, "Med3D") from a local weights file, as a feature network.

The network is MONAI's ``monai.networks.nets.resnet`` definition with MedicalNet's settings (one input
channel, 7³ stride-2 stem, the shortcut type and downsample bias of that depth, no classifier); the
weights are read with ``torch.load(weights_only=True)`` and never downloaded. Features: the last
stage's globally pooled activations, (N, 512) for depths 10–34, (N, 2048) from 50 on. Each input
volume is z-scored over its voxels first (MedicalNet was trained on z-scored intensities).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, ModelError
from ..models.config import InputSpec
from ..models.package import read_state_dict

DEPTHS = (10, 18, 34, 50, 101, 152, 200)
WEIGHTS_HINT = ("MedicalNet weights are never downloaded: get e.g. resnet_10_23dataset.pth from Tencent's MedicalNet "
                "release (github.com/Tencent/MedicalNet, or the TencentMedicalNet models on Hugging Face), "
                "put it on this machine and give its path.")


class MedicalNetFeatures(nn.Module):
    """(N, 1, X, Y, Z) → (N, D) pooled ResNet features of per-volume z-scored inputs on ``input``'s grid."""

    def __init__(self, resnet: nn.Module, input_spec: InputSpec):
        super().__init__()
        self.resnet = resnet
        self.input = input_spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        std = x.std(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-6)
        return self.resnet((x - mean) / std)


def medicalnet_depth(path: Path, depth: int | None) -> int:
    """``depth`` if given, else the number in a MedicalNet file name such as resnet_18_23dataset.pth."""
    match = re.search(r"resnet_?(\d+)", path.name.lower())
    value = depth if depth is not None else int(match.group(1)) if match else None
    if value not in DEPTHS:
        raise InputError(f"Cannot tell the ResNet depth of {path.name}" + (f" (got {value})." if value else "."),
                         hint=f"Pass depth= one of {', '.join(map(str, DEPTHS))}.")
    return value


def load_medicalnet(path: str | Path, depth: int | None = None, shape=(32, 40, 32),
                    spacing=(6.0, 6.0, 6.0)) -> MedicalNetFeatures:
    """A MedicalNet ResNet feature network from the local file ``path`` (.pth state dict), in eval mode.

    depth: 10, 18, 34, 50, …; read from the file name when not given. shape, spacing: the grid volumes
    are resampled onto (voxels, mm). InputError when the file is missing; ModelError when it holds
    pickled code or weights of another architecture.
    """
    from monai.networks.nets import resnet

    path = Path(path)
    if not path.is_file():
        raise InputError(f"MedicalNet weights not found: {path}", hint=WEIGHTS_HINT)
    depth = medicalnet_depth(path, depth)
    bias_downsample, shortcut_type = resnet.get_medicalnet_pretrained_resnet_args(depth)
    network = getattr(resnet, f"resnet{depth}")(spatial_dims=3, n_input_channels=1, conv1_t_stride=2,
                                                 feed_forward=False, shortcut_type=shortcut_type,
                                                 bias_downsample=bias_downsample)
    state = {key.removeprefix("module."): value for key, value in read_state_dict(path).items()}
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        problem = str(exc).splitlines()[0]
        raise ModelError(f"{path.name} does not hold MedicalNet ResNet-{depth} weights ({problem}).",
                         hint="Pass the depth the file was trained with (depth=…), "
                         "or give a MedicalNet .pth file.") from None
    spec = InputSpec(shape=tuple(int(s) for s in shape), spacing=tuple(float(s) for s in spacing))
    return MedicalNetFeatures(network, spec).eval()
