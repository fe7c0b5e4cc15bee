"""DiffusionModel: MONAI ``DiffusionModelUNet`` + ``NoiseSchedule`` + the model's input spec."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, ModelError
from .config import ModelConfig
from .schedule import NoiseSchedule


def build_unet(arguments: dict) -> nn.Module:
    """Construct a DiffusionModelUNet; bad arguments become a ModelError naming MONAI's complaint."""
    from monai.networks.nets import DiffusionModelUNet

    arguments = {**arguments}
    for name in ("channels", "attention_levels", "num_head_channels", "num_res_blocks"):
        if isinstance(arguments.get(name), list):
            arguments[name] = tuple(arguments[name])
    try:
        return DiffusionModelUNet(**arguments)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"The architecture in model.json cannot be built: {exc}",
                         hint="Check architecture.arguments against MONAI's DiffusionModelUNet.") from None


class DiffusionModel(nn.Module):
    """A 3D DDPM. ``unet`` maps (x_t (B, C, X, Y, Z), t (B,), class_labels (B,)) to the prediction
    named by ``config.schedule.prediction_type``; ``schedule`` turns that into x̂0 and ε̂."""

    def __init__(self, config: ModelConfig, unet: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.unet = unet if unet is not None else build_unet(config.unet)
        self.schedule = NoiseSchedule(config.schedule)

    @property
    def in_channels(self) -> int:
        return int(self.config.unet["in_channels"])

    @property
    def out_channels(self) -> int:
        return int(self.config.unet["out_channels"])

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return tuple(self.config.input.shape)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def num_train_timesteps(self) -> int:
        return self.schedule.num_train_timesteps

    def training_timesteps(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Uniform timesteps t ∈ [0, T) for a training batch."""
        return torch.randint(0, self.num_train_timesteps, (count,), generator=generator)

    def check_class_label(self, label: int | None) -> None:
        """A class label must be one of the model's ``num_class_embeds`` classes, and a class-conditioned model
        needs one; InputError otherwise."""
        count = self.config.unet.get("num_class_embeds") or 0
        if (label is None and not count) or (label is not None and 0 <= label < count):
            return
        names = self.config.input.condition_classes
        known = ", ".join(f"{i} = {names[i]}" if i < len(names) else str(i) for i in range(count))
        if label is None:
            raise InputError("This model is class-conditioned: say which class to use.",
                             hint=f"Give --contrast NAME or --class-label N; this model knows: {known}.")
        raise InputError(f"Class label {label} does not exist for this model.",
                         hint=f"This model knows: {known}." if count else
                         "This model is unconditional: leave the class label out.")

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x_t, timesteps=t, class_labels=class_labels)

    def loss(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
             class_labels: torch.Tensor | None = None, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared error between the network output and its training target at timesteps ``t``.

        condition: optional (B, C_cond, X, Y, Z) concatenated to x_t on the channel axis.
        """
        x_t = self.schedule.add_noise(x0, noise, t)
        net_in = x_t if condition is None else torch.cat([x_t, condition], dim=1)
        output = self(net_in, t, class_labels)
        return F.mse_loss(output.float(), self.schedule.training_target(x0, noise, t).float())

    def denoise(self, x_t: torch.Tensor, t: int, class_labels: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One network evaluation at integer timestep ``t`` → (x̂0, ε̂)."""
        steps = torch.full((x_t.shape[0],), int(t), device=x_t.device, dtype=torch.long)
        net_in = x_t if condition is None else torch.cat([x_t, condition], dim=1)
        return self.schedule.split(self(net_in, steps, class_labels), x_t, steps)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())
