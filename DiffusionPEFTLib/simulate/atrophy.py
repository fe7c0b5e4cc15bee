"""Age-like atrophy with one parameter A ∈ [0, 1]: ventricles enlarge and the cortex thins.

Both shift tissue probability, voxel by voxel, so fractions still add up to the same brain fraction:
- ventricles: tissue (GM, WM) within A·VENTRICLE_GROWTH_MM of the lateral ventricles becomes
  ventricular CSF (a soft dilation with a TRANSITION_MM ramp) — ventricle volume grows monotonically with A;
- cortex: a fraction A·CORTICAL_LOSS·exp(−depth / CORTICAL_DECAY_MM) of the GM at ``depth`` mm from
  the outer CSF becomes CSF (wider sulci, thinner cortex).
A = 0 changes nothing.
"""

from __future__ import annotations

import numpy as np

VENTRICLE_GROWTH_MM = 7.0
CORTICAL_LOSS = 0.5
CORTICAL_DECAY_MM = 3.0
TRANSITION_MM = 2.0


def apply_atrophy(fractions: dict[str, np.ndarray], ventricle_distance: np.ndarray, cortical_depth: np.ndarray,
                  atrophy: float) -> dict[str, np.ndarray]:
    """New tissue fractions (csf, ventricles, gm, wm; float32 (I, J, K)) after atrophy ``atrophy``.

    ventricle_distance, cortical_depth: mm, sampled on the same grid.
    """
    if atrophy <= 0:
        return fractions
    gm, wm = fractions["gm"], fractions["wm"]
    brain = sum(fractions.values())
    reach = np.clip((atrophy * VENTRICLE_GROWTH_MM - ventricle_distance) / TRANSITION_MM, 0.0, 1.0)
    parenchyma = gm + wm
    gained = np.minimum(np.maximum(reach * brain - fractions["ventricles"], 0.0), parenchyma)
    kept = 1.0 - gained / np.maximum(parenchyma, 1e-6)
    gm, wm = gm * kept, wm * kept
    cortical_loss = gm * (atrophy * CORTICAL_LOSS * np.exp(-cortical_depth / CORTICAL_DECAY_MM))
    return {
        "csf": fractions["csf"] + cortical_loss,
        "ventricles": fractions["ventricles"] + gained,
        "gm": gm - cortical_loss,
        "wm": wm,
    }
