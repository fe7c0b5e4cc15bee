"""Invertible intensity normalisation: a recorded linear map from scanner units to the model's range."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class NormalisationParams:
    """What :meth:`IntensityNormalisation.fit` measured on one volume: the source values mapped to
    the ends of the model range. Stored with outputs so results can be mapped back."""

    source_low: float
    source_high: float
    target_low: float
    target_high: float

    def apply(self, data: np.ndarray) -> np.ndarray:
        scale = (self.target_high - self.target_low) / (self.source_high - self.source_low)
        return ((data - self.source_low) * scale + self.target_low).astype(np.float32)

    def invert(self, data: np.ndarray) -> np.ndarray:
        scale = (self.source_high - self.source_low) / (self.target_high - self.target_low)
        return ((data - self.target_low) * scale + self.source_low).astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class IntensityNormalisation:
    """Percentile scaling: the ``lower``/``upper`` percentiles (of all voxels) map to ``range``.

    Values beyond the percentiles are not clipped, so the map is exactly invertible.
    """

    lower: float = 0.0
    upper: float = 99.5
    range: tuple[float, float] = (-1.0, 1.0)

    def fit(self, data: np.ndarray) -> NormalisationParams:
        low, high = np.percentile(data, [self.lower, self.upper])
        if high <= low:
            low, high = float(data.min()), float(data.max())
        return NormalisationParams(float(low), float(high), float(self.range[0]), float(self.range[1]))

    def to_dict(self) -> dict:
        return {"method": "percentile", "lower": self.lower, "upper": self.upper, "range": list(self.range)}

    @classmethod
    def from_dict(cls, spec: dict) -> "IntensityNormalisation":
        return cls(float(spec["lower"]), float(spec["upper"]), tuple(float(v) for v in spec["range"]))
