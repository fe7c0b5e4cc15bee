"""Where the k-space comes from: retrospective undersampling of a magnitude volume, or a k-space file.

k-space files: ``.npy`` holding a complex array (X, Y, Z) (one coil) or (C, X, Y, Z) (coils), or ``.h5``
with that array in the dataset ``kspace``; centred (DC at index N // 2 of every axis), orthonormal FFT
convention, readout along X. The mask file (``.npy``) is (Y, Z) or (X, Y, Z) of 0/1 (constant along X).
Coil sensitivities of a multi-coil file are estimated from its fully sampled centre (ESPIRiT, sigpy), and
the image's smooth phase from the same centre, so the real-valued prior sees a real image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..volumes.intensity import IntensityNormalisation
from .consistency import Measurement
from .kspace import MRIOperator, centered_ifft, coil_maps
from .masks import sampling_mask

KSPACE_SUFFIXES = (".npy", ".h5")


def retrospective(image: np.ndarray, acceleration: float, kind: str, coils: int, normalisation: IntensityNormalisation,
                  centre_fraction: float | None = None, seed: int = 0) -> Measurement:
    """Undersample the real image (X, Y, Z) (scanner units) through ``coils`` birdcage coils."""
    if np.iscomplexobj(image):
        raise InputError("A complex volume was given where a magnitude image is expected.",
                         hint="Give the magnitude volume, or give complex k-space with --kspace.")
    mask = torch.from_numpy(sampling_mask(image.shape[1:], acceleration, kind, centre_fraction, seed))
    maps = coil_maps(image.shape, coils) if coils > 1 else None
    operator = MRIOperator(mask, maps)
    kspace = operator.forward(torch.from_numpy(image.astype(np.float32)).to(torch.complex64)[None])[0]
    return measured(kspace, operator, normalisation)


def measured(kspace: torch.Tensor, operator: MRIOperator, normalisation: IntensityNormalisation) -> Measurement:
    """The measurement with its model-range map fitted on the zero-filled magnitude, as training fitted it on
    the true image (the 99.5th percentile of a blurred image is an estimate, refined by data consistency)."""
    zero_filled = operator.adjoint(kspace[None])[0].abs().numpy()
    params = normalisation.fit(zero_filled)
    scale = (params.source_high - params.source_low) / (params.target_high - params.target_low)
    return Measurement(kspace, operator, scale, params.source_low - scale * params.target_low)


def read_kspace(path: str | Path, mask_path: str | Path, normalisation: IntensityNormalisation) -> Measurement:
    """A measurement from a k-space file and its mask file (layouts in the module docstring)."""
    kspace = _read_array(Path(path), "kspace")
    if not np.iscomplexobj(kspace):
        raise InputError(f"{Path(path).name} holds real numbers; k-space is complex.",
                         hint="Save the complex k-space (e.g. numpy complex64), not its magnitude; a magnitude "
                         "image is given without --kspace.")
    if kspace.ndim == 3:
        kspace = kspace[None]
    if kspace.ndim != 4:
        raise InputError(f"{Path(path).name} has shape {kspace.shape}; k-space is (X, Y, Z) or (coils, X, Y, Z).",
                         hint="Store one volume's k-space per file.")
    if not np.all(np.isfinite(kspace)):
        raise InputError(f"{Path(path).name} contains NaN or infinite values.",
                         hint="Replace unacquired samples by 0 and check the export.")
    mask = _mask_of(_read_array(Path(mask_path), "mask"), kspace.shape[1:], Path(mask_path).name)
    kspace = torch.from_numpy(kspace.astype(np.complex64)) * torch.from_numpy(mask.astype(np.float32))
    maps = _sensitivities(kspace, mask)
    return measured(kspace, MRIOperator(torch.from_numpy(mask), maps), normalisation)


def _read_array(path: Path, dataset: str) -> np.ndarray:
    if path.suffix.lower() not in KSPACE_SUFFIXES:
        raise InputError(f"{path.name}: k-space and masks are read from {' or '.join(KSPACE_SUFFIXES)} files.",
                         hint="Save the array with numpy.save (or in an HDF5 dataset named 'kspace').")
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        import h5py

        with h5py.File(path, "r") as handle:
            return np.asarray(handle[dataset])
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"Cannot read {path.name}: {exc}", hint=f"Give a .npy array, or .h5 with a '{dataset}' "
                         "dataset.") from None


def _mask_of(mask: np.ndarray, shape: tuple[int, int, int], name: str) -> np.ndarray:
    """bool (Y, Z) from a (Y, Z) or (X, Y, Z) mask; InputError if it does not fit the k-space."""
    if mask.shape == shape:
        if not np.all(mask == mask[:1]):
            raise InputError(f"{name} varies along the readout (X) axis; a Cartesian 3D mask is the same for "
                             "every readout position.", hint="Give the (Y, Z) phase-encode mask.")
        mask = mask[0]
    if mask.shape != shape[1:]:
        raise InputError(f"{name} has shape {mask.shape}, which does not fit k-space of shape {shape}.",
                         hint=f"The mask is ({shape[1]}, {shape[2]}) (phase-encode axes) or {shape}.")
    if not np.isin(mask, (0, 1)).all():
        raise InputError(f"{name} holds values other than 0 and 1.", hint="A sampling mask is 0 (not acquired) "
                         "or 1 (acquired).")
    return mask.astype(bool)


def _sensitivities(kspace: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """(C, X, Y, Z) maps: ESPIRiT for coils (ones for one), times the smooth image phase from the centre."""
    coils = kspace.shape[0]
    if coils > 1:
        from sigpy.mri.app import EspiritCalib

        width = _calibration_width(mask)  # ESPIRiT's kernel must fit the calibration region twice over
        maps = torch.from_numpy(np.asarray(EspiritCalib(kspace.numpy(), calib_width=width, kernel_width=min(6, width // 2),
                                                        show_pbar=False).run()).astype(np.complex64))
        if not bool(maps.abs().amax() > 0):
            raise InputError("The coil sensitivities could not be estimated from the k-space centre (too few fully "
                             f"sampled lines: a {width}-wide calibration region).",
                             hint="Acquire a larger fully sampled centre (e.g. 24 lines), or give single-coil k-space.")
        maps = maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt().clamp(min=1e-6)
    else:
        maps = coil_maps(tuple(kspace.shape[1:]), 1)
    low_resolution = (maps.conj() * centered_ifft(kspace * _centre_window(kspace.shape[1:], mask))).sum(0)
    phase = torch.exp(1j * torch.angle(low_resolution)).to(torch.complex64)
    return maps * phase


def _calibration_width(mask: np.ndarray) -> int:
    """Side of the fully sampled square around the (Y, Z) centre (at least 4)."""
    cy, cz = mask.shape[0] // 2, mask.shape[1] // 2
    width = 1
    while width < min(mask.shape) and mask[cy - width // 2: cy + (width + 1) // 2, cz - width // 2: cz + (width + 1) // 2].all():
        width += 1
    return max(width - 1, 4)


def _centre_window(shape, mask: np.ndarray) -> torch.Tensor:
    """A Hann window over the calibration region of (Y, Z), all X: keeps the smooth low frequencies."""
    width = _calibration_width(mask)
    window = np.zeros(shape[1:], dtype=np.float32)
    hann = np.hanning(width + 2)[1:-1].astype(np.float32)
    cy, cz = shape[1] // 2, shape[2] // 2
    window[cy - width // 2: cy - width // 2 + width, cz - width // 2: cz - width // 2 + width] = np.outer(hann, hann)
    return torch.from_numpy(window)
