"""One trainer for pretraining and fine-tuning, and the volume data it learns from."""

from .data import TrainingVolumes, find_volume_files, split_validation
from .trainer import CHECKPOINT_NAME, Trainer, TrainConfig, TrainResult

__all__ = ["CHECKPOINT_NAME", "TrainingVolumes", "find_volume_files", "split_validation", "Trainer", "TrainConfig",
           "TrainResult"]
