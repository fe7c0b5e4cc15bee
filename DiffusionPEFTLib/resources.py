"""Where shipped data lives: anatomy maps, the demo model, the feature network, sample data (the top-level ``Resources/``)."""

from __future__ import annotations

import os
from pathlib import Path

RESOURCES_ENV = "DIFFUSIONPEFT_RESOURCES"
DEMO_MODEL = "Models/demo-t1-32x40x32"
TRANSLATION_MODEL = "Models/t1-to-flair-64x80x64"
PRIOR_MODEL = "Models/prior-t1-t2-pd-32x40x32"
FEATURE_NET = "FeatureNet"


def resources_dir() -> Path:
    """``$DIFFUSIONPEFT_RESOURCES`` if set, else ``Resources/`` next to the DiffusionPEFTLib package."""
    configured = os.environ.get(RESOURCES_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[1] / "Resources"


def demo_model_dir() -> Path:
    """The shipped demo base model package (healthy T1w, 32×40×32 at 6 mm)."""
    return resources_dir() / DEMO_MODEL


def prior_model_dir() -> Path:
    """The shipped class-conditioned T1w/T2w/PD prior (32×40×32 at 6 mm): reconstruction and multi-contrast synthesis."""
    return resources_dir() / PRIOR_MODEL


def translation_model_dir() -> Path:
    """The shipped T1w → FLAIR translation model package (64×80×64 at 3 mm, puzzle p = 2)."""
    return resources_dir() / TRANSLATION_MODEL


def feature_net_dir() -> Path:
    """The shipped 3D feature network for distribution metrics (32×40×32 at 6 mm, 128 features)."""
    return resources_dir() / FEATURE_NET
