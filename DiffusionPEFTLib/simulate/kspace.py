"""Simulated k-space: orthonormal centred 3D FFT of an image, optionally through coil sensitivities.

With orthonormal FFTs and sensitivities normalised so Σ_c |S_c|² = 1, the coil-combined inverse
Σ_c conj(S_c) · F⁻¹(k_c) returns the image exactly. The image's own noise is shared by the coils
(add independent k-space noise for a per-coil noise model).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

SPATIAL_AXES = (-3, -2, -1)
COIL_WIDTH = 0.6  # Gaussian width of a coil's profile, in units of the field-of-view half-width


def centered_fft(image: np.ndarray) -> np.ndarray:
    """k-space of ``image`` (…, I, J, K), DC at the centre, orthonormal (energy preserved)."""
    shifted = np.fft.ifftshift(image, axes=SPATIAL_AXES)
    return np.fft.fftshift(np.fft.fftn(shifted, axes=SPATIAL_AXES, norm="ortho"), axes=SPATIAL_AXES)


def centered_ifft(kspace: np.ndarray) -> np.ndarray:
    """Inverse of :func:`centered_fft`."""
    shifted = np.fft.ifftshift(kspace, axes=SPATIAL_AXES)
    return np.fft.fftshift(np.fft.ifftn(shifted, axes=SPATIAL_AXES, norm="ortho"), axes=SPATIAL_AXES)


def coil_sensitivities(shape, n_coils: int) -> np.ndarray:
    """complex64 (C, I, J, K) smooth receive profiles of ``n_coils`` coils on a ring around the head
    (in the i–j plane), each with a linear phase; normalised so Σ_c |S_c|² = 1 in every voxel."""
    if not isinstance(n_coils, (int, np.integer)) or n_coils < 1:
        raise InputError(f"Number of coils {n_coils!r} is not a positive integer.", hint="Use for example 8.")
    grid = np.stack(np.meshgrid(*[np.linspace(-1.0, 1.0, s) for s in shape], indexing="ij"))
    angles = 2 * np.pi * np.arange(n_coils) / n_coils
    maps = []
    for angle in angles:
        position = np.array([1.2 * np.cos(angle), 1.2 * np.sin(angle), 0.0])
        distance2 = ((grid - position[:, None, None, None]) ** 2).sum(axis=0)
        phase = angle + 0.5 * (grid[0] * np.sin(angle) - grid[1] * np.cos(angle))
        maps.append(np.exp(-distance2 / (2 * COIL_WIDTH**2)) * np.exp(1j * phase))
    maps = np.stack(maps)
    return (maps / np.sqrt((np.abs(maps) ** 2).sum(axis=0))).astype(np.complex64)


def to_kspace(image: np.ndarray, sensitivities: np.ndarray | None = None) -> np.ndarray:
    """k-space of a complex image (I, J, K): (I, J, K), or (C, I, J, K) with coil sensitivities."""
    coil_images = image if sensitivities is None else sensitivities * image
    return centered_fft(coil_images).astype(np.complex64)


def from_kspace(kspace: np.ndarray, sensitivities: np.ndarray | None = None) -> np.ndarray:
    """Complex image (I, J, K) from fully sampled k-space; coils are combined with conj(S)."""
    coil_images = centered_ifft(kspace)
    if sensitivities is None:
        return coil_images.astype(np.complex64)
    return (np.conj(sensitivities) * coil_images).sum(axis=0).astype(np.complex64)
