"""The reconstructions a user would pick without a diffusion prior: zero-filled (Aᴴy) and compressed
sensing with an L1-wavelet penalty (sigpy's ``L1WaveletRecon``, FISTA), both in scanner units."""

from __future__ import annotations

import numpy as np
import torch

from .consistency import Measurement

CS_ITERATIONS = 100


def zero_filled(measurement: Measurement) -> torch.Tensor:
    """Aᴴy: the inverse FFT of the acquired samples, coils combined with conj(S): complex (X, Y, Z)."""
    return measurement.operator.adjoint(measurement.kspace[None])[0]


def l1_wavelet(measurement: Measurement, weight: float, iterations: int = CS_ITERATIONS) -> torch.Tensor:
    """argmin_x ½‖A x − y‖² + λ‖Ψ x‖₁ (Daubechies-4 wavelets), λ = ``weight`` · max|Aᴴy| so one λ suits every
    intensity scale: complex (X, Y, Z)."""
    import sigpy.mri.app

    operator = measurement.operator
    maps = operator.maps.numpy() if operator.maps is not None else np.ones((1, *measurement.kspace.shape[1:]),
                                                                          dtype=np.complex64)
    scale = float(zero_filled(measurement).abs().max()) or 1.0
    mask = np.broadcast_to(operator.mask.numpy()[None], measurement.kspace.shape[1:])
    app = sigpy.mri.app.L1WaveletRecon(measurement.kspace.numpy(), maps, weight * scale, weights=mask,
                                       max_iter=iterations, show_pbar=False)
    return torch.from_numpy(np.asarray(app.run()).astype(np.complex64))
