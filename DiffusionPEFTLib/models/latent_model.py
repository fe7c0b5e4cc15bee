"""LatentDiffusionModel: a frozen MONAI ``AutoencoderKL`` + a ``DiffusionModelUNet`` that denoises its latents.

Its package is a model package with ``"task": "latent"`` and a ``latent`` section in model.json
(:class:`LatentSpec`); ``weights.safetensors`` holds the UNet as in every package (its sha256 is the fingerprint
adapters are tied to) and ``autoencoder.safetensors`` the autoencoder (checked against
``latent.autoencoder_sha256``).

A volume (B, 1, X, Y, Z) on the model grid, in the model's intensity range, is encoded to the latent
``scale_factor · z_mu`` (B, C, X/f, Y/f, Z/f), f = 2^(autoencoder levels − 1); a sampled latent is decoded from
``latent / scale_factor``. Conditions (e.g. the UK Biobank brain LDM's sex, age, ventricular and brain volume) are
one vector of n numbers per volume, (B, n), which the UNet receives concatenated as n constant channels and/or as
cross-attention context (B, 1, n), as the model was trained. A decode that does not fit in memory in one piece runs
in overlapping windows (tiled_decode.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, ModelError
from ..validation import validate_document
from .config import ModelConfig
from .diffusion_model import DiffusionModel, build_network
from .package import load_network_state, load_package, read_package_tensors, save_model, weights_fingerprint
from .tiled_decode import Decoding, tiled_decode, window_of

AUTOENCODER_NAME = "autoencoder.safetensors"
AUTOENCODER_CLASS = "monai.networks.nets.AutoencoderKL"
CONDITIONING_MODES = ("concat", "crossattn")

_NUMBER = {"type": "number", "description": "a number is needed"}
LATENT_SCHEMA = {
    "type": "object",
    "required": ["autoencoder", "scale_factor", "conditions", "conditioning"],
    "properties": {
        "autoencoder": {"type": "object", "required": ["arguments"], "properties": {"arguments": {
            "type": "object", "required": ["spatial_dims", "in_channels", "out_channels", "latent_channels", "channels"],
            "properties": {"spatial_dims": {"const": 3, "description": "only 3D autoencoders (3) are supported"}}}},
            "description": "an object with the AutoencoderKL arguments is needed"},
        "autoencoder_sha256": {"type": "string", "description": "a hex string is needed"},
        "scale_factor": {"type": "number", "exclusiveMinimum": 0, "description": "a number > 0 is needed"},
        "conditions": {"type": "array", "description": "a list of conditions is needed", "items": {
            "type": "object", "required": ["name", "default"], "properties": {
                "name": {"type": "string", "pattern": r"^[A-Za-z_]\w*$",
                         "description": "a name of letters, digits and _ is needed"},
                "label": {"type": "string"}, "default": _NUMBER,
                "range": {"anyOf": [{"type": "null"}, {"type": "array", "items": _NUMBER, "minItems": 2, "maxItems": 2}],
                          "description": "[low, high] or null is needed"}}}},
        "conditioning": {"type": "array", "items": {"enum": list(CONDITIONING_MODES)},
                         "description": f"a list of {', '.join(CONDITIONING_MODES)} is needed"},
    },
}


@dataclass(frozen=True)
class Condition:
    """One number a conditioned model takes: ``name`` (as in ``--condition name=value``), the bundle's ``label``,
    the ``default`` used when it is not given, and the ``range`` [low, high] the model was trained on (None: not
    stated)."""

    name: str
    default: float
    label: str = ""
    range: tuple[float, float] | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "default": self.default,
                "range": list(self.range) if self.range is not None else None}


@dataclass(frozen=True)
class LatentSpec:
    """model.json's ``latent`` section: ``autoencoder`` = AutoencoderKL keyword arguments, its weights' sha256,
    ``scale_factor``, the ``conditions`` (in the order of the condition vector) and how the UNet takes them
    (``conditioning``: "concat" and/or "crossattn")."""

    autoencoder: dict
    scale_factor: float = 1.0
    conditions: tuple[Condition, ...] = ()
    conditioning: tuple[str, ...] = ()
    autoencoder_sha256: str = ""

    @property
    def downsampling(self) -> int:
        """Image voxels per latent voxel along each axis."""
        return 2 ** (len(self.autoencoder["channels"]) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.autoencoder["latent_channels"])

    def latent_shape(self, image_shape) -> tuple[int, int, int]:
        return tuple(int(side) // self.downsampling for side in image_shape)

    def to_dict(self) -> dict:
        return {"autoencoder": {"class": AUTOENCODER_CLASS, "arguments": dict(self.autoencoder)},
                "autoencoder_sha256": self.autoencoder_sha256, "scale_factor": self.scale_factor,
                "conditions": [c.to_dict() for c in self.conditions], "conditioning": list(self.conditioning)}

    @classmethod
    def from_dict(cls, spec: dict, source: str = "model.json") -> "LatentSpec":
        validate_document(spec, LATENT_SCHEMA, f"{source} (latent)", ModelError,
                          hint="Re-import the bundle, or fix model.json's latent section.")
        conditions = tuple(Condition(c["name"], float(c["default"]), c.get("label", ""),
                                     tuple(c["range"]) if c.get("range") is not None else None)
                           for c in spec["conditions"])
        return cls(dict(spec["autoencoder"]["arguments"]), float(spec["scale_factor"]), conditions,
                   tuple(spec["conditioning"]), spec.get("autoencoder_sha256", ""))

    def check_fits(self, unet: dict, image_shape, source: str = "model.json") -> None:
        """ModelError unless the UNet takes the latents (+ concatenated conditions) and gives latents back, its
        cross-attention width is the number of conditions, and the grid divides down to whole latent voxels."""
        count, latent = len(self.conditions), self.latent_channels
        takes = latent + (count if "concat" in self.conditioning else 0)
        problems = []
        if int(unet["in_channels"]) != takes or int(unet["out_channels"]) != latent:
            problems.append(f"the UNet maps {unet['in_channels']} → {unet['out_channels']} channels; "
                            f"{latent} latent channels{f' + {count} conditions' if takes != latent else ''} "
                            f"need {takes} → {latent}")
        if ("crossattn" in self.conditioning) != bool(unet.get("with_conditioning")) or (
                "crossattn" in self.conditioning and int(unet.get("cross_attention_dim") or 0) != count):
            problems.append(f"cross-attention (cross_attention_dim {unet.get('cross_attention_dim')}) does not take "
                            f"the {count} conditions")
        if not self.conditioning and count:
            problems.append(f"{count} conditions are listed but the UNet takes none")
        multiple = self.downsampling * 2 ** (len(unet["channels"]) - 1)
        if any(int(side) % multiple for side in image_shape):
            problems.append(f"the grid {'×'.join(map(str, image_shape))} is not a multiple of {multiple} along "
                            "every axis (autoencoder and UNet downsampling)")
        if problems:
            raise ModelError(f"{source}: the latent model does not fit together: {'; '.join(problems)}.",
                             hint="Re-import the bundle (a different --shape must be a multiple of "
                             f"{multiple}).")


def build_autoencoder(arguments: dict, initialise: bool = True,
                      source: str = "model.json (latent.autoencoder)") -> nn.Module:
    """MONAI ``AutoencoderKL(**arguments)``; ``initialise=False`` as in :func:`build_unet`."""
    from monai.networks.nets import AutoencoderKL

    return build_network(AutoencoderKL, arguments, initialise, source)


class LatentDiffusionModel(DiffusionModel):
    """``unet`` + ``schedule`` on the latent grid (:class:`DiffusionModel`) + the frozen ``autoencoder``.

    ``grid_shape`` is the latent grid (what the sampler draws noise on); ``config.input`` stays the volume grid."""

    def __init__(self, config: ModelConfig, unet: nn.Module | None = None, autoencoder: nn.Module | None = None):
        if config.task != "latent" or config.latent is None:
            raise ModelError("This package is not a latent diffusion model.", hint="Give a latent model package.")
        super().__init__(config, unet)
        self.spec = LatentSpec.from_dict(config.latent)
        self.spec.check_fits(config.unet, config.input.shape)
        self.autoencoder = autoencoder if autoencoder is not None else build_autoencoder(self.spec.autoencoder)
        self.autoencoder.requires_grad_(False).eval()

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return self.spec.latent_shape(self.config.input.shape)

    def train(self, mode: bool = True) -> "LatentDiffusionModel":
        super().train(mode)
        self.autoencoder.eval()  # frozen: always in inference mode
        return self

    # --- conditions -------------------------------------------------------------------------
    def condition_values(self, values: dict[str, float] | None) -> dict[str, float]:
        """Every condition by name: the given ``values``, the defaults for the rest ({} for an unconditioned
        model). InputError for an unknown name (listing the model's) or a value out of the trained range."""
        values = dict(values or {})
        conditions = self.spec.conditions
        if not conditions and values:
            raise InputError("This model takes no --condition values.", hint="Leave --condition out.")
        unknown = [name for name in values if name not in [c.name for c in conditions]]
        if unknown:
            raise InputError(f"This model has no condition '{unknown[0]}'.",
                             hint=f"It takes: {describe_conditions(conditions)}.")
        resolved = {c.name: float(values.get(c.name, c.default)) for c in conditions}
        for condition in conditions:
            value, (low, high) = resolved[condition.name], condition.range or (-math.inf, math.inf)
            if not (math.isfinite(value) and low <= value <= high):
                raise InputError(f"{condition.name}={value:g} is outside the range this model was trained on "
                                 f"[{low:g}, {high:g}].",
                                 hint="The bundle's conditions are normalised: give a value in that range.")
        return resolved

    def condition_vector(self, values: dict[str, float] | None) -> torch.Tensor | None:
        """:meth:`condition_values` as an (n,) vector in the model's order; None for an unconditioned model."""
        resolved = self.condition_values(values)
        return torch.tensor(list(resolved.values())) if resolved else None

    def sampling_condition(self, values: dict[str, float] | None, count: int) -> torch.Tensor | None:
        vector = self.condition_vector(values)
        return None if vector is None else vector.to(self.device).expand(count, -1)

    # --- network ----------------------------------------------------------------------------
    def forward(self, x_t: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        """The UNet output for latents x_t (B, C, x, y, z). condition: (B, n) condition vectors (None: the
        defaults), concatenated as constant channels and/or given as cross-attention context (B, 1, n)."""
        net_in, context = x_t, None
        if self.spec.conditions:
            if condition is None:
                condition = self.sampling_condition(None, x_t.shape[0])
            condition = condition.to(x_t.dtype)
            if "concat" in self.spec.conditioning:
                grid = condition[:, :, None, None, None].expand(-1, -1, *x_t.shape[2:])
                net_in = torch.cat([x_t, grid], dim=1)
            if "crossattn" in self.spec.conditioning:
                context = condition[:, None, :]
        return self.unet(net_in, timesteps=t, context=context, class_labels=class_labels)

    # --- autoencoder ------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, volumes: torch.Tensor) -> torch.Tensor:
        """Volumes (B, 1, X, Y, Z) in the model range → latents ``scale_factor · z_mu`` (B, C, x, y, z).
        The mean is used (not a draw from the posterior), so a volume always gives the same latent."""
        z_mu, _ = self.autoencoder.encode(volumes.to(self.device))
        return z_mu * self.spec.scale_factor

    @torch.no_grad()
    def decode(self, x: torch.Tensor, decoding: Decoding | None = None) -> torch.Tensor:
        """Latents (B, C, x, y, z) → volumes (B, 1, X, Y, Z) in the model range, one volume at a time: whole, or in
        overlapping windows when ``decoding`` is tiled (tiled_decode.py). ``auto`` is whole here: the memory planner
        (memory.py) is what turns it into tiled when a whole decode does not fit the budget."""
        latents = x / self.spec.scale_factor
        if decoding is not None and decoding.tiled:
            window = window_of(decoding, latents.shape[2:])
            return tiled_decode(self.autoencoder.decode, latents, window, decoding.overlap, self.spec.downsampling)
        return torch.cat([self.autoencoder.decode(latent[None]) for latent in latents])

    def autoencoder_weights(self) -> bytes:
        from safetensors.torch import save as save_safetensors

        state = self.autoencoder.state_dict()
        return save_safetensors({name: tensor.detach().to("cpu").contiguous() for name, tensor in state.items()})


def describe_conditions(conditions) -> str:
    """'gender (Gender, default 0), age (Age, default 0.1), …'."""
    return ", ".join(f"{c.name} ({f'{c.label}, ' if c.label and c.label != c.name else ''}default {c.default:g}"
                     f"{f', range {c.range[0]:g}–{c.range[1]:g}' if c.range else ''})" for c in conditions)


def load_latent_model(path: str | Path, device: torch.device | str = "cpu") -> LatentDiffusionModel:
    """Load a latent model package (ModelError for a package of another task or a damaged autoencoder file)."""
    path = Path(path)

    def build(config: ModelConfig, unet: nn.Module) -> LatentDiffusionModel:
        spec = LatentSpec.from_dict(config.latent, f"{path.name}/model.json")
        state, _ = read_package_tensors(path, AUTOENCODER_NAME, spec.autoencoder_sha256)
        autoencoder = build_autoencoder(spec.autoencoder, initialise=False)
        load_network_state(autoencoder, state, f"{path.name}/{AUTOENCODER_NAME}", "model.json (latent.autoencoder)")
        return LatentDiffusionModel(config, unet, autoencoder)

    return load_package(path, "latent", build, device)


def save_latent_model(model: LatentDiffusionModel, path: str | Path, provenance: dict | None = None,
                      overwrite: bool = False) -> Path:
    """Write a latent package (see the module docstring) atomically, like :func:`save_model`."""
    weights = model.autoencoder_weights()
    spec = dataclasses.replace(model.spec, autoencoder_sha256=weights_fingerprint(weights))
    model.spec, model.config = spec, dataclasses.replace(model.config, latent=spec.to_dict())
    return save_model(model, path, provenance, overwrite, companions={AUTOENCODER_NAME: weights})
