"""Cartesian undersampling masks over the two phase-encode axes (Y, Z) of a 3D acquisition (readout X full).

- ``equispaced`` and ``random``: fastMRI's line masks (``subsample.py``; MONAI's ``EquispacedKspaceMask`` /
  ``RandomKspaceMask`` use the same formulas) along Y, every Z acquired for each chosen Y line. A centre
  block of round(N_y · f) lines is always kept; R = 4 pairs with f = 0.08, R = 8 with f = 0.04 (f = 0.32 / R).
- ``vd``: 2D variable-density Poisson-disc sampling of (ky, kz) (``sigpy.mri.poisson``) with a fully
  sampled centre of f · (N_y, N_z).

Every mask is deterministic given its seed. The acceleration a mask really achieves (all / acquired
(ky, kz) points) is :func:`achieved_acceleration`; the random and Poisson kinds hit R only on average.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

MASK_KINDS = ("equispaced", "random", "vd")


def default_centre_fraction(acceleration: float) -> float:
    """fastMRI's pairing R = 4 ↔ 0.08, R = 8 ↔ 0.04."""
    return 0.32 / acceleration


def sampling_mask(shape: tuple[int, int], acceleration: float, kind: str = "equispaced",
                  centre_fraction: float | None = None, seed: int = 0) -> np.ndarray:
    """bool (Y, Z): True where (ky, kz) is acquired. InputError for an impossible R or centre fraction."""
    if kind not in MASK_KINDS:
        raise InputError(f"Unknown mask '{kind}'.", hint=f"Use one of {', '.join(MASK_KINDS)}.")
    lines, partitions = shape
    centre = default_centre_fraction(acceleration) if centre_fraction is None else centre_fraction
    _check(acceleration, centre, lines if kind != "vd" else min(lines, partitions))
    if acceleration == 1:
        return np.ones(shape, dtype=bool)
    rng = np.random.RandomState(seed)
    if kind == "vd":
        from sigpy.mri import poisson

        calibration = (max(1, round(lines * centre)), max(1, round(partitions * centre)))
        try:
            mask = poisson(shape, acceleration, calib=calibration, dtype=np.float32, seed=seed) > 0
        except ValueError:
            raise InputError(f"No variable-density mask reaches acceleration {acceleration:g} on a "
                             f"{lines}×{partitions} phase-encode plane.",
                             hint="Use another --acceleration or the equispaced/random masks.") from None
        mask[_centre(lines, calibration[0]), _centre(partitions, calibration[1])] = True  # fastMRI's centre block
        return mask
    line_mask = line_mask_1d(lines, acceleration, centre, kind, rng)
    return np.repeat(line_mask[:, None], partitions, axis=1)


def line_mask_1d(count: int, acceleration: float, centre_fraction: float, kind: str,
                 rng: np.random.RandomState) -> np.ndarray:
    """bool (count,): fastMRI's 1D line mask ("equispaced" or "random") drawing from ``rng``."""
    low = int(round(count * centre_fraction))
    mask = np.zeros(count, dtype=bool)
    if kind == "random":
        probability = (count / acceleration - low) / (count - low)
        mask = rng.uniform(size=count) < probability
    else:
        adjusted = acceleration * (low - count) / (low * acceleration - count)
        offset = rng.randint(0, round(adjusted))
        mask[np.around(np.arange(offset, count - 1, adjusted)).astype(np.uint)] = True
    mask[_centre(count, low)] = True
    return mask


def _centre(count: int, width: int) -> slice:
    """fastMRI's centre block of ``width`` of ``count`` lines."""
    pad = (count - width + 1) // 2
    return slice(pad, pad + width)


def achieved_acceleration(mask: np.ndarray) -> float:
    """All (ky, kz) points ÷ acquired ones."""
    return float(mask.size / max(int(np.count_nonzero(mask)), 1))


def _check(acceleration: float, centre_fraction: float, lines: int) -> None:
    if not np.isfinite(acceleration) or acceleration < 1:
        raise InputError(f"Acceleration {acceleration:g} is not possible: R is all k-space lines ÷ acquired ones, "
                         "so it is at least 1.", hint="Use e.g. --acceleration 4 (1 = fully sampled).")
    if acceleration > lines / 2:
        raise InputError(f"Acceleration {acceleration:g} would keep fewer than 2 of the {lines} phase-encode lines.",
                         hint=f"Use an acceleration of at most {lines // 2} on this grid (4 to 8 is usual).")
    if not 0 < centre_fraction < 1:
        raise InputError(f"Centre fraction {centre_fraction:g} is not in (0, 1).",
                         hint="Leave it out for fastMRI's pairing (0.32 / R: 0.08 at R = 4).")
    low = int(round(lines * centre_fraction))
    if acceleration > 1 and low >= lines / acceleration:
        raise InputError(f"A centre fraction of {centre_fraction:g} keeps {low} of {lines} lines, as many as "
                         f"acceleration {acceleration:g} allows in all.",
                         hint="Use a smaller --centre-fraction or a smaller --acceleration.")
