"""The shipped 3D feature network: a small CNN encoder trained on simulator volumes (no download).

Input (N, 1, 32, 40, 32): volumes on the demo grid (6 mm, RAS) in the model range [-1, 1]
(``InputSpec.normalisation()``). Output (N, 128): the encoder's globally pooled activations (mean and max),
minus their mean over the training volumes and divided by one scale, so that the training volumes'
features have a total variance of D = 128 (0 is the "average" simulated volume, the cosine kernel of
two features is meaningful, and FID is in units of the training spread). One scale for all
dimensions keeps the network's own weighting of them: a per-dimension std would blow up the
dimensions that barely vary between real volumes. The heads that taught it (contrast,
lesion type, atrophy, tissue fractions, noise level, blur) ship with it. Built by
``scripts/build_feature_net.py``; ``Resources/FeatureNet/CARD.md`` says what it was trained on and
how well it does.

The folder holds ``feature_net.json`` (architecture arguments, input spec, heads, training record,
validation, sha256 of the weights) and ``weights.safetensors``; loading checks the sha256 and never
unpickles.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..models.config import InputSpec
from ..resources import feature_net_dir

CONFIG_NAME = "feature_net.json"
WEIGHTS_NAME = "weights.safetensors"
FORMAT_VERSION = 1
CONTRASTS = ("t1", "t2", "pd", "flair")
LESIONS = ("none", "wmh", "tumour")
FRACTIONS = ("csf", "ventricles", "gm", "wm")  # share of the normal-tissue volume
SCALAR_HEADS = ("atrophy", "noise", "blur")


class AvgMaxPool(nn.Module):
    """(N, C, X, Y, Z) → (N, 2C): the spatial mean of every channel, then its maximum (the maximum finds
    small local findings, e.g. a lesion, that the mean dilutes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))], dim=1)


def _conv(channels_in: int, channels_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv3d(channels_in, channels_out, 3, stride, 1, bias=False), nn.BatchNorm3d(channels_out), nn.SiLU()]


class FeatureNet(nn.Module):
    """Encoder: a stride-2 stem, then per stage a 3³ conv and a stride-2 3³ conv (batch norm + SiLU each),
    a last 3³ conv, then global average and max pooling to 2 · ``channels[-1]`` features.

    channels: widths of the stem and the stages, e.g. (16, 32, 48, 64) halves the grid 4 times.
    ``input``: the grid and intensity normalisation the network expects. In eval mode (always, once
    loaded) batch norm uses its stored statistics, so a volume's features do not depend on its batch.
    """

    def __init__(self, input_spec: InputSpec, channels=(16, 32, 48, 64)):
        super().__init__()
        self.input = input_spec
        layers = _conv(1, channels[0], 2)
        for width_in, width_out in zip(channels[:-1], channels[1:]):
            layers += _conv(width_in, width_in, 1) + _conv(width_in, width_out, 2)
        layers += _conv(channels[-1], channels[-1], 1)
        self.encoder = nn.Sequential(*layers, AvgMaxPool())
        dim = 2 * channels[-1]
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_scale", torch.ones(()))
        self.heads = nn.ModuleDict({"contrast": nn.Linear(dim, len(CONTRASTS)), "lesions": nn.Linear(dim, len(LESIONS)),
                                    "atrophy": nn.Linear(dim, 1), "fractions": nn.Linear(dim, len(FRACTIONS)),
                                    "noise": nn.Linear(dim, 1), "blur": nn.Linear(dim, 1)})

    @property
    def feature_dim(self) -> int:
        return self.feature_mean.numel()

    @torch.no_grad()
    def set_centre(self, pooled: torch.Tensor) -> None:
        """feature_mean, feature_scale := the mean of ``pooled`` (M, D) and the root-mean variance of its dimensions."""
        self.feature_mean.copy_(pooled.mean(0))
        self.feature_scale.copy_(pooled.var(0).mean().sqrt())

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, X, Y, Z) → (N, D) pooled activations, before standardisation."""
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, X, Y, Z) in [-1, 1] → (N, D) centred, scaled features."""
        return (self.pooled(x) - self.feature_mean) / self.feature_scale

    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training heads: contrast (N, 4) and lesion (N, 3) logits; standardised estimates of atrophy (N,),
        tissue fractions (N, 4) and the log noise std (N,); the Gaussian blur σ (N,) in voxels the input was given."""
        pooled = self.pooled(x)
        return {name: head(pooled).squeeze(-1) if name in SCALAR_HEADS else head(pooled)
                for name, head in self.heads.items()}


def build_feature_net(spec: dict) -> FeatureNet:
    """A FeatureNet from the ``architecture`` and ``input`` entries of feature_net.json (weights untouched)."""
    source = spec["input"]
    input_spec = InputSpec(shape=tuple(source["shape"]), spacing=tuple(source["spacing"]),
                           intensity=source["intensity"])
    return FeatureNet(input_spec, **spec["architecture"]["arguments"])


def load_feature_net(folder: str | Path | None = None) -> FeatureNet:
    """The network in ``folder`` (default: the shipped ``Resources/FeatureNet``) in eval mode on the CPU.

    ModelError when the folder is incomplete or the weights' sha256 differs from feature_net.json.
    """
    from safetensors.torch import load as load_safetensors

    folder = Path(folder) if folder is not None else feature_net_dir()
    try:
        spec = json.loads((folder / CONFIG_NAME).read_text())
        weights = (folder / WEIGHTS_NAME).read_bytes()
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder} is not a feature network folder ({exc}).",
                         hint=f"A feature network folder holds {CONFIG_NAME} and {WEIGHTS_NAME}; "
                         "build one with scripts/build_feature_net.py.") from None
    if hashlib.sha256(weights).hexdigest() != spec.get("weights_sha256"):
        raise ModelError(f"The feature network weights in {folder} do not match the sha256 in {CONFIG_NAME}.",
                         hint="The file is damaged or was replaced: restore Resources/FeatureNet.")
    network = build_feature_net(spec)
    network.load_state_dict(load_safetensors(weights))
    return network.eval()


@torch.no_grad()
def contrast_shares(volumes, network: FeatureNet | None = None) -> dict[str, float]:
    """Share of ``volumes`` (as for ``volume_features``) that the network's contrast head calls each contrast."""
    from .features import network_input

    network = network if network is not None else shipped_feature_net()
    batch = torch.from_numpy(np.stack([network_input(v, network) for v in volumes]))[:, None]
    votes = network.predict(batch)["contrast"].argmax(1)
    return {name: float((votes == index).double().mean()) for index, name in enumerate(CONTRASTS)}


@functools.lru_cache(maxsize=1)
def shipped_feature_net() -> FeatureNet:
    """The shipped network, loaded once per process."""
    return load_feature_net()
