"""Lesions as extra tissue classes that take their volume from the normal tissue they replace.

- ``tumour``: one glioma-like mass in white matter: a wobbly sphere of tumour core (radius 6–15 mm,
  replaces every tissue) inside a shell of vasogenic oedema (6–15 mm wider; replaces WM, and GM at
  30 %). No mass effect.
- ``wmh``: 4–12 white-matter hyperintensities (radius 3–7 mm), placed in WM with a preference for the
  periventricular region (weight exp(−distance to ventricles / 12 mm)); they replace WM only.
Edges are partial-volume ramps one voxel wide; outside a lesion's outer radius nothing changes.
"""

from __future__ import annotations

import numpy as np

from .fields import smooth_random_field

LESION_TYPES = ("none", "tumour", "wmh")
LESION_CLASSES = ("tumour_core", "oedema", "wmh")
OEDEMA_GM_SHARE = 0.3
WMH_PERIVENTRICULAR_MM = 12.0


def ball(distance_mm: np.ndarray, radius_mm, ramp_mm: float) -> np.ndarray:
    """Partial-volume indicator of ``distance_mm < radius_mm`` (linear ramp ``ramp_mm`` wide), float32."""
    return np.clip((radius_mm - distance_mm) / ramp_mm + 0.5, 0.0, 1.0).astype(np.float32)


def pick_white_matter_voxel(rng: np.random.Generator, wm: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Index (3,) of a random voxel with WM fraction ≥ 0.7 of the maximum, chosen ∝ ``weight``."""
    candidates = np.flatnonzero(wm.ravel() >= 0.7 * wm.max())
    p = None if weight is None else weight.ravel()[candidates] / weight.ravel()[candidates].sum()
    return np.asarray(np.unravel_index(rng.choice(candidates, p=p), wm.shape))


def add_lesions(kind: str, rng: np.random.Generator, fractions: dict, spacing,
                ventricle_distance: np.ndarray) -> tuple[dict, dict]:
    """Fractions with lesion classes of ``kind`` (LESION_TYPES) added, and the lesions' parameters.

    fractions: class → float32 (I, J, K); spacing: 3 voxel sizes in mm; ventricle_distance in mm."""
    if kind == "none":
        return dict(fractions), {}
    shape = next(iter(fractions.values())).shape
    positions_mm = np.indices(shape, dtype=np.float32) * np.asarray(spacing, dtype=np.float32)[:, None, None, None]
    if kind == "tumour":
        return add_tumour(rng, fractions, positions_mm, spacing)
    return add_white_matter_hyperintensities(rng, fractions, positions_mm, spacing, ventricle_distance)


def add_tumour(rng: np.random.Generator, fractions: dict, positions_mm: np.ndarray, spacing) -> tuple[dict, dict]:
    """Fractions with ``tumour_core`` and ``oedema`` added; and the tumour's parameters.

    positions_mm: (3, I, J, K) voxel positions in mm (any origin) on the fractions' grid.
    """
    ramp = float(np.mean(spacing))
    centre = pick_white_matter_voxel(rng, fractions["wm"])
    centre_mm = positions_mm[(slice(None), *centre)]
    core_radius, margin = rng.uniform(6.0, 15.0), rng.uniform(6.0, 15.0)
    wobble = 1.0 + smooth_random_field(rng, positions_mm.shape[1:], (5, 5, 5), 0.15)
    distance = np.linalg.norm(positions_mm - centre_mm[:, None, None, None], axis=0) / wobble
    core = ball(distance, core_radius, ramp)
    shell = np.maximum(ball(distance, core_radius + margin, ramp) - core, 0.0)
    out = {name: value * (1.0 - core) for name, value in fractions.items()}
    oedema_wm, oedema_gm = shell * out["wm"], OEDEMA_GM_SHARE * shell * out["gm"]
    out["wm"], out["gm"] = out["wm"] - oedema_wm, out["gm"] - oedema_gm
    out["tumour_core"] = core * sum(fractions.values())
    out["oedema"] = oedema_wm + oedema_gm
    params = {"centre_voxel": centre.tolist(), "core_radius_mm": core_radius,
              "oedema_radius_mm": core_radius + margin}
    return out, params


def add_white_matter_hyperintensities(rng: np.random.Generator, fractions: dict, positions_mm: np.ndarray,
                                      spacing, ventricle_distance: np.ndarray) -> tuple[dict, dict]:
    """Fractions with ``wmh`` added (taken from WM); and the lesions' centres and radii."""
    ramp = float(np.mean(spacing))
    weight = np.exp(-ventricle_distance / WMH_PERIVENTRICULAR_MM)
    lesion = np.zeros(positions_mm.shape[1:], dtype=np.float32)
    blobs = []
    for _ in range(int(rng.integers(4, 13))):
        centre = pick_white_matter_voxel(rng, fractions["wm"], weight)
        radius = rng.uniform(3.0, 7.0)
        distance = np.linalg.norm(positions_mm - positions_mm[(slice(None), *centre)][:, None, None, None], axis=0)
        lesion = np.maximum(lesion, ball(distance, radius, ramp))
        blobs.append({"centre_voxel": centre.tolist(), "radius_mm": radius})
    out = dict(fractions)
    out["wmh"] = lesion * fractions["wm"]
    out["wm"] = fractions["wm"] - out["wmh"]
    return out, {"lesions": blobs}
