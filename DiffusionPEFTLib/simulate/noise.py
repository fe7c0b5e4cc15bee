"""Scanner imperfections on a noise-free signal: receive bias field, smooth phase, complex Gaussian noise.

The magnitude of (signal · bias · e^{iφ} + n), n ~ CN(0, 2σ²) (σ per real channel), is Rician;
σ = 1 / SNR in the scaled units where the brightest normal tissue has signal 1.
"""

from __future__ import annotations

import numpy as np

from .fields import smooth_random_field

BIAS_CONTROL_POINTS = (4, 4, 4)
PHASE_CONTROL_POINTS = (3, 3, 3)
PHASE_STD_RAD = 1.0


def bias_field(rng: np.random.Generator, shape, strength: float) -> np.ndarray:
    """Smooth multiplicative field exp(g), g with std ``strength`` (0.15 ≈ ±15 %); float32 (I, J, K)."""
    return np.exp(smooth_random_field(rng, shape, BIAS_CONTROL_POINTS, strength))


def smooth_phase(rng: np.random.Generator, shape) -> np.ndarray:
    """Slowly varying image phase in radians (std PHASE_STD_RAD); float32 (I, J, K)."""
    return smooth_random_field(rng, shape, PHASE_CONTROL_POINTS, PHASE_STD_RAD)


def complex_image(signal: np.ndarray, bias: np.ndarray, phase: np.ndarray, rng: np.random.Generator,
                  snr: float | None) -> np.ndarray:
    """complex64 (I, J, K) image = signal · bias · e^{iφ} + complex noise with σ = 1/snr (None: none)."""
    image = (signal * bias * np.exp(1j * phase)).astype(np.complex64)
    if snr is None:
        return image
    sigma = 1.0 / snr
    noise = rng.normal(0.0, sigma, (2, *signal.shape)).astype(np.float32)
    return image + (noise[0] + 1j * noise[1]).astype(np.complex64)
