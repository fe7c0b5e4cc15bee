"""Volumes → feature vectors through a feature network (the shipped one unless another is given).

A feature network is an ``nn.Module`` mapping (N, 1, X, Y, Z) to (N, D) with an ``input`` InputSpec
(the grid it expects and its intensity normalisation). Volumes may be given as

- (X, Y, Z) arrays already in the model range (how samples and model-grid reals are passed to every
  metric here); an array on another grid is taken to span the same field of view as the network's
  grid and is resampled onto it (trilinear, anti-aliased);
- ``Volume`` objects in scanner units: resampled in millimetres onto the network's grid centred on
  the volume (``to_model_grid``), then percentile-normalised (``InputSpec.normalisation()``),
  exactly as training and inference inputs are.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..volumes import Volume, model_grid_affine, resample, to_model_grid


def network_input(volume, network: nn.Module) -> np.ndarray:
    """One volume on the network's grid in its intensity range: float32 (X, Y, Z)."""
    spec = network.input
    if isinstance(volume, Volume):
        on_grid, _ = to_model_grid(volume, spec.shape, spec.spacing)
        return spec.normalisation().fit(on_grid.data).apply(on_grid.data)
    data = np.asarray(volume, dtype=np.float32)
    if data.ndim != 3:
        raise InputError(f"Expected 3D volumes, got an array of shape {data.shape}.", hint="Pass (X, Y, Z) arrays.")
    if data.shape == tuple(spec.shape):
        return data
    field_of_view = np.asarray(spec.shape) * np.asarray(spec.spacing)  # mm
    source = Volume(data, model_grid_affine(np.zeros(3), data.shape, field_of_view / np.asarray(data.shape)))
    return resample(source, spec.shape, model_grid_affine(np.zeros(3), spec.shape, spec.spacing)).data


def default_network() -> nn.Module:
    from .feature_net import shipped_feature_net

    return shipped_feature_net()


@torch.no_grad()
def volume_features(volumes, network: nn.Module | None = None, batch_size: int = 8) -> torch.Tensor:
    """Features (N, D) float64 of N volumes (see the module docstring for what a volume may be)."""
    network = network if network is not None else default_network()
    if len(volumes) == 0:
        raise InputError("No volumes were given to compute features of.", hint="Pass at least one volume per set.")
    device = next(network.parameters()).device
    chunks = []
    for start in range(0, len(volumes), batch_size):
        batch = np.stack([network_input(v, network) for v in volumes[start:start + batch_size]])
        chunks.append(network(torch.from_numpy(batch)[:, None].to(device)).double().cpu())
    return torch.cat(chunks)
