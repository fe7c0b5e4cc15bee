"""One trainer for pretraining and fine-tuning, and the volume data it learns from."""

from .data import TrainingVolumes, find_volume_files, split_validation
from .trainer import Trainer, TrainConfig, TrainResult

__all__ = ["TrainingVolumes", "find_volume_files", "split_validation", "Trainer", "TrainConfig", "TrainResult"]
