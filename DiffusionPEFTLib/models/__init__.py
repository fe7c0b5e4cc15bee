"""Model packages and the DiffusionModel (MONAI DiffusionModelUNet + noise schedule + input spec)."""

from .config import ModelConfig, InputSpec, ScheduleConfig, MODEL_FORMAT_VERSION
from .schedule import NoiseSchedule
from .diffusion_model import DiffusionModel
from .package import load_model, save_model, read_model_config, weights_fingerprint

__all__ = [
    "ModelConfig", "InputSpec", "ScheduleConfig", "MODEL_FORMAT_VERSION", "NoiseSchedule", "DiffusionModel",
    "load_model", "save_model", "read_model_config", "weights_fingerprint",
]
