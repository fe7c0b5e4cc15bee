"""MR contrasts from tissue fractions by steady-state signal equations with 3 T relaxation values.

Each tissue class c has (T1, T2, PD); a sequence gives each class a signed signal s_c; a voxel's
signal is Σ_c f_c · s_c (partial volumes add as magnetisation, so an inversion-recovery voxel half
CSF, half WM mixes a negative and a positive signal before the magnitude is taken). Signals are
divided by the sequence's largest |s_c| over normal tissue (CSF, GM, WM), so that tissue lies in [0, 1].
Sources of the values: docs/simulator.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class Relaxation:
    """Tissue properties at 3 T: T1 and T2 in ms, proton density relative to water (CSF = 1)."""

    t1_ms: float
    t2_ms: float
    proton_density: float


CSF = Relaxation(4200.0, 2000.0, 1.00)
TISSUE_RELAXATION = {
    "csf": CSF,
    "ventricles": CSF,
    "gm": Relaxation(1820.0, 99.0, 0.80),
    "wm": Relaxation(1084.0, 69.0, 0.70),
    "tumour_core": Relaxation(2100.0, 130.0, 0.85),
    "oedema": Relaxation(1800.0, 190.0, 0.88),
    "wmh": Relaxation(1500.0, 150.0, 0.80),
}
NORMAL_TISSUES = ("csf", "gm", "wm")


@dataclass(frozen=True)
class Sequence:
    """Acquisition: kind is 'spoiled_gradient_echo', 'spin_echo' or 'inversion_recovery'; times in ms.
    ``inversion_ms`` None for inversion recovery means: null CSF."""

    kind: str
    repetition_ms: float
    echo_ms: float
    flip_deg: float = 90.0
    inversion_ms: float | None = None

    def as_dict(self) -> dict:
        return {**asdict(self), "inversion_ms": self.effective_inversion_ms()}

    def effective_inversion_ms(self) -> float | None:
        """TI: the given one, or for inversion recovery the CSF null point T1·ln(2 / (1 + e^(−TR/T1)))."""
        if self.kind != "inversion_recovery" or self.inversion_ms is not None:
            return self.inversion_ms
        return CSF.t1_ms * math.log(2.0 / (1.0 + math.exp(-self.repetition_ms / CSF.t1_ms)))


SEQUENCES = {
    "t1": Sequence("spoiled_gradient_echo", repetition_ms=20.0, echo_ms=4.0, flip_deg=25.0),
    "t2": Sequence("spin_echo", repetition_ms=5000.0, echo_ms=100.0),
    "pd": Sequence("spin_echo", repetition_ms=6000.0, echo_ms=12.0),
    "flair": Sequence("inversion_recovery", repetition_ms=9000.0, echo_ms=120.0),
}


def parse_contrasts(contrasts) -> tuple[str, ...]:
    """'t1,t2' or ['t1', 't2'] → ('t1', 't2'); unknown or repeated names raise InputError."""
    names = [c.strip().lower() for c in (contrasts.split(",") if isinstance(contrasts, str) else contrasts)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in SEQUENCES]
    if unknown or not names or len(set(names)) != len(names):
        raise InputError(
            f"Contrasts {','.join(names) or '(none)'} are not a list of distinct known contrasts"
            + (f" (unknown: {', '.join(unknown)})." if unknown else "."),
            hint=f"Use a comma-separated list of: {', '.join(SEQUENCES)}.",
        )
    return tuple(names)


def tissue_signal(sequence: Sequence, tissue: Relaxation) -> float:
    """Signed steady-state signal of one pure tissue (before scaling)."""
    e1 = math.exp(-sequence.repetition_ms / tissue.t1_ms)
    e2 = math.exp(-sequence.echo_ms / tissue.t2_ms)
    if sequence.kind == "spoiled_gradient_echo":
        flip = math.radians(sequence.flip_deg)
        longitudinal = math.sin(flip) * (1.0 - e1) / (1.0 - math.cos(flip) * e1)
    elif sequence.kind == "spin_echo":
        longitudinal = 1.0 - e1
    else:
        longitudinal = 1.0 - 2.0 * math.exp(-sequence.effective_inversion_ms() / tissue.t1_ms) + e1
    return tissue.proton_density * longitudinal * e2


def class_signals(contrast: str) -> dict[str, float]:
    """Scaled signed signal per tissue class for ``contrast`` (normal tissue's largest |signal| = 1)."""
    sequence = SEQUENCES[contrast]
    raw = {name: tissue_signal(sequence, relaxation) for name, relaxation in TISSUE_RELAXATION.items()}
    scale = max(abs(raw[name]) for name in NORMAL_TISSUES)
    return {name: value / scale for name, value in raw.items()}


def render_contrast(fractions: dict[str, np.ndarray], contrast: str) -> np.ndarray:
    """Signed noise-free signal Σ_c f_c · s_c, float32 (I, J, K); background (no tissue) is 0."""
    signals = class_signals(contrast)
    return sum(fraction * np.float32(signals[name]) for name, fraction in fractions.items()).astype(np.float32)
