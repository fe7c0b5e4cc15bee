"""Cartesian 3D MRI forward models: orthonormal centred FFT, A = M·F (one coil) and A = M·F·S (coils).

Images are complex tensors (B, X, Y, Z); k-space is (B, C, X, Y, Z) with C = 1 for a single coil. The
readout runs along X and is fully sampled; the sampling mask (Y, Z) covers the two phase-encode axes and
is broadcast along X and the coils. Sensitivities are normalised so Σ_c |S_c|² = 1 in every voxel (a smooth
image phase may be folded into them), hence AᴴA = I for a full mask, and for one coil A is a partial
isometry (A Aᴴ = M) so its pseudo-inverse is Aᴴ.
"""

from __future__ import annotations

import numpy as np
import torch

SPATIAL_DIMS = (-3, -2, -1)


def centered_fft(image: torch.Tensor) -> torch.Tensor:
    """k-space of ``image`` (…, X, Y, Z) with DC at index N // 2 of every axis; orthonormal (energy kept)."""
    shifted = torch.fft.ifftshift(image, dim=SPATIAL_DIMS)
    return torch.fft.fftshift(torch.fft.fftn(shifted, dim=SPATIAL_DIMS, norm="ortho"), dim=SPATIAL_DIMS)


def centered_ifft(kspace: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`centered_fft`."""
    shifted = torch.fft.ifftshift(kspace, dim=SPATIAL_DIMS)
    return torch.fft.fftshift(torch.fft.ifftn(shifted, dim=SPATIAL_DIMS, norm="ortho"), dim=SPATIAL_DIMS)


def coil_maps(shape: tuple[int, int, int], coils: int) -> torch.Tensor:
    """complex64 (C, X, Y, Z) birdcage receive sensitivities (sigpy.mri.birdcage_maps) of ``coils`` coils,
    normalised so Σ_c |S_c|² = 1; one coil is a uniform map of ones."""
    if coils == 1:
        return torch.ones((1, *shape), dtype=torch.complex64)
    from sigpy.mri import birdcage_maps

    maps = birdcage_maps((coils, *shape), dtype=np.complex64)
    maps = maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))
    return torch.from_numpy(maps.astype(np.complex64))


class MRIOperator:
    """A = M·F·S on complex images (B, X, Y, Z) → k-space (B, C, X, Y, Z), and its adjoint.

    mask: (Y, Z) of 0/1; maps: (C, X, Y, Z) complex sensitivities (Σ_c |S_c|² = 1), None for one coil."""

    def __init__(self, mask: torch.Tensor, maps: torch.Tensor | None = None):
        self.mask = mask.to(torch.float32)
        self.maps = maps

    @property
    def coils(self) -> int:
        return 1 if self.maps is None else self.maps.shape[0]

    def _mask(self, kspace: torch.Tensor) -> torch.Tensor:
        return kspace * self.mask.to(kspace.device)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        coil_images = image[:, None] if self.maps is None else image[:, None] * self.maps.to(image.device)
        return self._mask(centered_fft(coil_images))

    def adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        coil_images = centered_ifft(self._mask(kspace))
        if self.maps is None:
            return coil_images[:, 0]
        return (self.maps.conj().to(kspace.device) * coil_images).sum(dim=1)

    def normal(self, image: torch.Tensor) -> torch.Tensor:
        """AᴴA image."""
        return self.adjoint(self.forward(image))
