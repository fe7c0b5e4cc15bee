"""Model packages, the DiffusionModel (MONAI DiffusionModelUNet + noise schedule + input spec) and the
LatentDiffusionModel (+ a frozen AutoencoderKL; imported from MONAI model-zoo bundles by ``bundle``); config presets
of published models (``preset_config("tenvoo")``)."""

from .config import ModelConfig, InputSpec, ScheduleConfig, MODEL_FORMAT_VERSION
from .schedule import NoiseSchedule
from .diffusion_model import DiffusionModel
from .package import load_model, save_model, read_model_config, weights_fingerprint
from .presets import preset_config
from .latent_model import LatentDiffusionModel, load_latent_model, save_latent_model

__all__ = [
    "ModelConfig", "InputSpec", "ScheduleConfig", "MODEL_FORMAT_VERSION", "NoiseSchedule", "DiffusionModel",
    "load_model", "save_model", "read_model_config", "weights_fingerprint", "LatentDiffusionModel",
    "load_latent_model", "save_latent_model", "preset_config",
]
