"""Recipe hints a method gives the ``finetune`` command (it reads them; the adapters never train)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Recipe:
    """How to train this method.

    lr_factor: multiply the pretraining learning rate by this (controlled fine-tuning: 0.1); 1.0 = use the
        learning rate as given.
    max_epochs: epoch budget; None = the command's own setting.
    early_stopping_patience: stop after this many validations without improvement of ``monitor``;
        None = no early stopping.
    monitor: validation metric to watch (lower is better for 'val_loss').
    new_class_label: label of a class embedding added for a new contrast, else None.
    """

    lr_factor: float = 1.0
    max_epochs: int | None = None
    early_stopping_patience: int | None = None
    monitor: str = "val_loss"
    new_class_label: int | None = None

    @property
    def needs_validation(self) -> bool:
        return self.early_stopping_patience is not None

    def as_dict(self) -> dict:
        return asdict(self)
