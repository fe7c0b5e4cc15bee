"""Full-reference similarity between two volumes of the same grid, on MONAI's metrics.

Arrays are (X, Y, Z) numpy or torch; ``data_range`` defaults to the reference's max − min.
MS-SSIM picks its kernel and number of scales from the volume size instead of failing on small
volumes: MONAI's rule (every dim // (scales − 1)² > kernel − 1) and the coarsest scale at least one
kernel wide (dim // 2^(scales − 1) ≥ kernel).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


@dataclass(frozen=True)
class MSSSIMSettings:
    kernel_size: int
    weights: tuple[float, ...]


def ms_ssim_settings(shape) -> MSSSIMSettings:
    """Largest kernel in (7, 5, 3), then the most scales (≤ 5) that MONAI accepts for ``shape``.

    The standard 5 weights are truncated to the chosen number of scales and renormalised.
    """
    smallest = min(int(s) for s in shape)
    for kernel in (7, 5, 3):
        for scales in (5, 4, 3, 2):
            if smallest // (scales - 1) ** 2 > kernel - 1 and smallest // 2 ** (scales - 1) >= kernel:
                weights = np.asarray(MS_SSIM_WEIGHTS[:scales])
                return MSSSIMSettings(kernel, tuple(float(w) for w in weights / weights.sum()))
    raise InputError(f"A volume of shape {tuple(shape)} is too small for MS-SSIM.",
                     hint="Compare larger volumes, or use SSIM/PSNR.")


def _tensor(volume) -> torch.Tensor:
    data = torch.as_tensor(np.asarray(volume, dtype=np.float32))
    if data.ndim != 3:
        raise InputError(f"Expected a 3D volume, got shape {tuple(data.shape)}.", hint="Compare single 3D volumes.")
    return data[None, None]


def _pair(pred, ref):
    pred_t, ref_t = _tensor(pred), _tensor(ref)
    if pred_t.shape != ref_t.shape:
        raise InputError(f"The volumes have different shapes {tuple(pred_t.shape[2:])} and {tuple(ref_t.shape[2:])}.",
                         hint="Resample the prediction onto the reference grid first.")
    return pred_t, ref_t


def _range(ref_t: torch.Tensor, data_range: float | None) -> float:
    value = float(ref_t.max() - ref_t.min()) if data_range is None else float(data_range)
    return value if value > 0 else 1.0


def ms_ssim(pred, ref, data_range: float | None = None) -> float:
    from monai.metrics import MultiScaleSSIMMetric

    pred_t, ref_t = _pair(pred, ref)
    settings = ms_ssim_settings(ref_t.shape[2:])
    metric = MultiScaleSSIMMetric(spatial_dims=3, data_range=_range(ref_t, data_range),
                                  kernel_size=settings.kernel_size, weights=settings.weights)
    return float(metric(pred_t, ref_t).mean())


def ssim(pred, ref, data_range: float | None = None) -> float:
    from monai.metrics import SSIMMetric

    pred_t, ref_t = _pair(pred, ref)
    window = min(7, min(ref_t.shape[2:]) // 2 * 2 - 1)
    metric = SSIMMetric(spatial_dims=3, data_range=_range(ref_t, data_range), win_size=window)
    return float(metric(pred_t, ref_t).mean())


def psnr(pred, ref, data_range: float | None = None) -> float:
    from monai.metrics import PSNRMetric

    pred_t, ref_t = _pair(pred, ref)
    return float(PSNRMetric(max_val=_range(ref_t, data_range))(pred_t, ref_t).mean())


def nrmse(pred, ref) -> float:
    """‖pred − ref‖ / ‖ref‖ (the Tamir-lab / fastMRI √NMSE convention)."""
    pred_t, ref_t = _pair(pred, ref)
    return float(torch.linalg.vector_norm(pred_t - ref_t) / torch.linalg.vector_norm(ref_t))


def compare_volumes(pred, ref, data_range: float | None = None) -> dict[str, float]:
    """All four full-reference metrics on the whole volume."""
    return {
        "ms_ssim": ms_ssim(pred, ref, data_range),
        "ssim": ssim(pred, ref, data_range),
        "psnr": psnr(pred, ref, data_range),
        "nrmse": nrmse(pred, ref),
    }


def compare_in_mask(pred, ref, mask, data_range: float | None = None) -> dict[str, float]:
    """PSNR, SSIM and NRMSE over the voxels where ``mask`` (X, Y, Z, bool) is set, e.g. inside the brain.

    PSNR and NRMSE use those voxels only; SSIM is MONAI's local SSIM map (the same Gaussian window as
    :func:`ssim`) averaged over the mask voxels whose window lies inside the volume.
    """
    from monai.metrics.regression import compute_ssim_and_cs

    pred_t, ref_t = _pair(pred, ref)
    inside = torch.as_tensor(np.asarray(mask, dtype=bool))
    if tuple(inside.shape) != tuple(ref_t.shape[2:]) or not bool(inside.any()):
        raise InputError(f"The mask must be a non-empty volume of the reference's shape {tuple(ref_t.shape[2:])}.",
                         hint="Resample the mask onto the reference grid (nearest neighbour).")
    value_range = _range(ref_t, data_range)
    error = (pred_t - ref_t)[0, 0][inside]
    window = min(7, min(ref_t.shape[2:]) // 2 * 2 - 1)
    ssim_map, _ = compute_ssim_and_cs(pred_t, ref_t, 3, [window] * 3, [1.5] * 3, value_range)
    half = window // 2
    valid = inside[half: inside.shape[0] - half, half: inside.shape[1] - half, half: inside.shape[2] - half]
    return {
        "ssim": float(ssim_map[0, 0][valid].mean()),
        "psnr": float(10 * torch.log10(value_range**2 / error.pow(2).mean())),
        "nrmse": float(torch.linalg.vector_norm(error) / torch.linalg.vector_norm(ref_t[0, 0][inside])),
    }
