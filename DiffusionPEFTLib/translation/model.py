"""TranslationModel: a MONAI ``DiffusionModelUNet`` on puzzled tensors, trained as a direct bridge source → target.

The U-Net sees (B, 2·p³, X'/p, Y'/p, Z'/p): the puzzled bridge state x_t and the puzzled source y
concatenated on the channel axis, and predicts x0 or the residual x_t − x0 (p³ channels). Its package is a
model package like the others with ``"task": "translation"`` and a ``translation`` section in model.json
(:class:`TranslationSpec`); the loss is the bridge's MSE plus λ · the puzzle-gradient loss.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, ModelError
from ..models.config import ModelConfig
from ..models.diffusion_model import build_unet
from ..models.package import load_package
from .bridge import BridgeConfig, BridgeSchedule
from .contrast_check import SourceSignature
from .puzzle import FACTORS, Puzzle
from .puzzle_loss import puzzle_gradient_loss


@dataclass(frozen=True)
class TranslationSpec:
    """source/target: contrast names; puzzle: factor p; bridge: its schedule and prediction;
    puzzle_gradient_weight: λ of the puzzle-gradient loss (0: off); source_signature: the training sources'
    intensity signature (recorded after training; None in packages made before it existed)."""

    source: str
    target: str
    puzzle: int = 2
    bridge: BridgeConfig = BridgeConfig()
    puzzle_gradient_weight: float = 0.1
    source_signature: SourceSignature | None = None

    def to_dict(self) -> dict:
        """model.json's translation section; without a signature the key is left out (so a training run's
        identity, which holds this section, is what it was before signatures existed)."""
        values = {**asdict(self), "bridge": asdict(self.bridge)}
        del values["source_signature"]
        if self.source_signature is not None:
            values["source_signature"] = self.source_signature.to_dict()
        return values

    @classmethod
    def from_dict(cls, spec: dict, source: str = "model.json") -> "TranslationSpec":
        try:
            values = dict(spec)
            values["bridge"] = BridgeConfig(**values.get("bridge", {}))
            if values.get("source_signature") is not None:
                values["source_signature"] = SourceSignature.from_dict(values["source_signature"])
            made = cls(**values)
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: the translation section is not valid ({exc}).",
                             hint="Re-export the model, or fix model.json's translation section.") from None
        if made.puzzle not in FACTORS or not made.puzzle_gradient_weight >= 0:
            raise ModelError(f"{source}: translation.puzzle must be one of {FACTORS} and the puzzle-gradient "
                             f"weight ≥ 0 (got {made.puzzle}, {made.puzzle_gradient_weight}).",
                             hint="Re-export the model, or fix model.json's translation section.")
        return made


class TranslationModel(nn.Module):
    """``unet`` on puzzled tensors + :class:`BridgeSchedule` + :class:`Puzzle`; ``config`` is its model.json."""

    def __init__(self, config: ModelConfig, unet: nn.Module | None = None):
        super().__init__()
        if config.task != "translation" or config.translation is None:
            raise ModelError("This package is not a translation model.", hint="Give a translation model package.")
        self.config = config
        self.spec = TranslationSpec.from_dict(config.translation)
        self.unet = unet if unet is not None else build_unet(config.unet)
        self.bridge = BridgeSchedule(self.spec.bridge)
        self.puzzle = Puzzle(self.spec.puzzle, multiple=2 ** (len(config.unet["channels"]) - 1))

    def record_source_signature(self, signature: SourceSignature) -> None:
        """Store the training sources' signature in ``spec`` and ``config`` (written by ``save_model``)."""
        self.spec = replace(self.spec, source_signature=signature)
        self.config = replace(self.config, translation=self.spec.to_dict())

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return tuple(self.config.input.shape)

    @property
    def num_train_timesteps(self) -> int:
        return self.bridge.num_timesteps

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def training_timesteps(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Bridge steps t ∈ [1, T] for a batch (t = 0 is the target itself)."""
        return torch.randint(1, self.num_train_timesteps + 1, (count,), generator=generator)

    def check_class_label(self, label: int | None) -> None:
        if label is not None:
            raise InputError("Translation models take no class label.", hint="Leave the class label out.")

    def loss(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
             class_labels: torch.Tensor | None = None, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Bridge MSE on puzzled tensors + λ · puzzle-gradient loss; x0 (target), noise and condition
        (the source) are (B, 1, X, Y, Z) on the model grid."""
        if condition is None:
            raise ValueError("a translation model is trained on (source, target) pairs")
        shape = tuple(x0.shape[2:])
        target, source, noise = (self.puzzle.puzzle(v) for v in (x0, condition, noise))
        x_t = self.bridge.q_sample(target, source, t, noise)
        output = self.unet(torch.cat([x_t, source], dim=1), timesteps=t, class_labels=class_labels).float()
        loss = F.mse_loss(output, self.bridge.training_target(target, x_t).float())
        if self.spec.puzzle_gradient_weight:
            x0_hat = self.bridge.predicted_x0(output, x_t.float())
            loss = loss + self.spec.puzzle_gradient_weight * puzzle_gradient_loss(x0_hat, target.float(),
                                                                                  self.puzzle, shape)
        return loss

    def predict_x0(self, x_t: torch.Tensor, source: torch.Tensor, t: int) -> torch.Tensor:
        """x̂0 (puzzled) from the puzzled state and source at integer step ``t``."""
        steps = torch.full((x_t.shape[0],), int(t), device=x_t.device, dtype=torch.long)
        return self.bridge.predicted_x0(self.unet(torch.cat([x_t, source], dim=1), timesteps=steps).float(), x_t)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())


def load_translation_model(path, device: torch.device | str = "cpu") -> TranslationModel:
    """Load a translation package (ModelError for a package of another task)."""
    return load_package(path, "translation", TranslationModel, device)
