"""DiffusionModel: MONAI ``DiffusionModelUNet`` + ``NoiseSchedule`` + the model's input spec."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, ModelError
from .config import ModelConfig
from .schedule import NoiseSchedule


def build_unet(arguments: dict, initialise: bool = True, source: str = "model.json") -> nn.Module:
    """Construct a DiffusionModelUNet; bad arguments become a ModelError naming MONAI's complaint and ``source``.

    ``initialise=False``: uninitialised CPU tensors (built on the meta device, then allocated), for a network
    whose every tensor is about to be loaded — a 553 M-parameter UNet then skips seconds of random init."""
    from monai.networks.nets import DiffusionModelUNet

    return build_network(DiffusionModelUNet, arguments, initialise, source,
                         hint="Check architecture.arguments against MONAI's DiffusionModelUNet.")


def build_network(network_class: type, arguments: dict, initialise: bool = True, source: str = "model.json",
                  hint: str = "") -> nn.Module:
    """``network_class(**arguments)`` (JSON lists become tuples); ModelError naming ``source`` when it cannot be
    built. ``initialise``: see :func:`build_unet`."""
    arguments = {name: tuple(value) if isinstance(value, list) else value for name, value in arguments.items()}
    try:
        if initialise:
            return network_class(**arguments)
        with torch.device("meta"):
            network = network_class(**arguments)
        return network.to_empty(device="cpu")
    except (TypeError, ValueError) as exc:
        raise ModelError(f"The architecture in {source} cannot be built: {exc}",
                         hint=hint or f"Check its arguments against MONAI's {network_class.__name__}.") from None


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

    def sampling_condition(self, values: dict[str, float] | None, count: int) -> torch.Tensor | None:
        """The ``condition`` for sampling ``count`` volumes with named condition ``values`` (``--condition``):
        None here — a pixel model is conditioned by class only (InputError when values are given)."""
        if values:
            raise InputError("This model takes no --condition values.",
                             hint="Leave --condition out (a class-conditioned model takes --contrast or --class-label).")
        return None

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The sampled network-grid tensor as volumes on the model grid (the identity for a pixel-space model)."""
        return x

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        """The network output for x_t (B, C, X, Y, Z) at timesteps t (B,).

        condition: optional (B, C_cond, X, Y, Z) concatenated to x_t on the channel axis."""
        net_in = x_t if condition is None else torch.cat([x_t, condition], dim=1)
        return self.unet(net_in, timesteps=t, class_labels=class_labels)

    def loss(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
             class_labels: torch.Tensor | None = None, condition: torch.Tensor | None = None) -> torch.Tensor:
        """Mean squared error between the network output and its training target at timesteps ``t``
        (``condition``: see :meth:`forward`)."""
        x_t = self.schedule.add_noise(x0, noise, t)
        output = self(x_t, t, class_labels, condition)
        return F.mse_loss(output.float(), self.schedule.training_target(x0, noise, t).float())

    def denoise(self, x_t: torch.Tensor, t: int, class_labels: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One network evaluation at integer timestep ``t`` → (x̂0, ε̂)."""
        steps = torch.full((x_t.shape[0],), int(t), device=x_t.device, dtype=torch.long)
        return self.schedule.split(self(x_t, steps, class_labels, condition), x_t, steps)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())
