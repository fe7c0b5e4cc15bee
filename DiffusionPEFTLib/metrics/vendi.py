"""Vendi score: the effective number of distinct volumes in a set (Friedman & Dieng 2023).

VS = exp(−Σ λ_i log λ_i), λ_i the eigenvalues of K / n for a positive semi-definite similarity
matrix K (n × n, unit diagonal). 1 when all volumes are identical, n when all are orthogonal.
Two similarities: the cosine of feature-network features, and MS-SSIM between the volumes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .diversity import ms_ssim_matrix
from .features import volume_features


def vendi_score(kernel) -> float:
    """Vendi score of an (n, n) similarity matrix with unit diagonal; in [1, n].

    The matrix is symmetrised; negative eigenvalues (a similarity such as MS-SSIM is not guaranteed
    positive semi-definite) are set to 0 before the entropy.
    """
    matrix = np.asarray(kernel, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise InputError(f"The Vendi score needs a square similarity matrix, got shape {matrix.shape}.",
                         hint="Pass the n × n similarities of n volumes.")
    eigenvalues = np.clip(np.linalg.eigvalsh((matrix + matrix.T) / 2 / len(matrix)), 0.0, None)
    eigenvalues = eigenvalues[eigenvalues > 0]
    return float(np.exp(-np.sum(eigenvalues * np.log(eigenvalues))))


def cosine_vendi(features: torch.Tensor) -> float:
    """Vendi score of feature vectors (n, D) with their cosine similarity as the kernel."""
    unit = torch.nn.functional.normalize(features.double(), dim=1)
    return vendi_score((unit @ unit.T).numpy())


def feature_vendi(volumes, network: nn.Module | None = None) -> float:
    """Vendi score of a set of volumes with the cosine similarity of their features as the kernel."""
    return cosine_vendi(volume_features(volumes, network))


def ms_ssim_vendi(volumes, data_range: float | None = None) -> float:
    """Vendi score of a set of (X, Y, Z) arrays of one grid with pairwise MS-SSIM as the kernel."""
    return vendi_score(ms_ssim_matrix(volumes, data_range))
