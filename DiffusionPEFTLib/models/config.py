"""``model.json``: architecture, noise schedule, input spec and provenance of a model package.

Every field is checked on load; a missing or wrong field is a ModelError that names it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ModelError
from ..volumes.intensity import IntensityNormalisation

MODEL_FORMAT_VERSION = 1
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SCHEDULES = ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine")


@dataclass(frozen=True)
class ScheduleConfig:
    """DDPM forward process: ``num_train_timesteps`` steps of a MONAI beta schedule."""

    num_train_timesteps: int = 1000
    schedule: str = "scaled_linear_beta"
    beta_start: float = 0.0005
    beta_end: float = 0.0195
    prediction_type: str = "v_prediction"


@dataclass(frozen=True)
class InputSpec:
    """The grid and intensities the model works on.

    shape: voxels (X, Y, Z) along R, A, S; spacing: mm per voxel; intensity: normalisation spec;
    condition_classes: names of the class labels (``num_class_embeds``), or empty for unconditional.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    orientation: str = "RAS"
    intensity: dict = field(default_factory=lambda: IntensityNormalisation().to_dict())
    condition_classes: tuple[str, ...] = ()

    def normalisation(self) -> IntensityNormalisation:
        return IntensityNormalisation.from_dict(self.intensity)


@dataclass(frozen=True)
class ModelConfig:
    """Everything in model.json. ``unet`` holds DiffusionModelUNet keyword arguments."""

    unet: dict[str, Any]
    schedule: ScheduleConfig
    input: InputSpec
    provenance: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""

    def to_dict(self) -> dict:
        return {
            "format_version": MODEL_FORMAT_VERSION,
            "architecture": {"class": "monai.networks.nets.DiffusionModelUNet", "arguments": dict(self.unet)},
            "scheduler": asdict(self.schedule),
            "input": {**asdict(self.input), "shape": list(self.input.shape), "spacing": list(self.input.spacing),
                      "condition_classes": list(self.input.condition_classes)},
            "provenance": self.provenance,
            "weights_sha256": self.weights_sha256,
        }

    @classmethod
    def from_dict(cls, spec: dict, source: str = "model.json") -> "ModelConfig":
        version = _field(spec, "format_version", source)
        if version != MODEL_FORMAT_VERSION:
            raise ModelError(f"{source} has format_version {version}; this version reads {MODEL_FORMAT_VERSION}.",
                             hint="Update DiffusionPEFT or re-export the model.")
        arguments = _field(_field(spec, "architecture", source), "arguments", source, "architecture.")
        scheduler = _field(spec, "scheduler", source)
        schedule = ScheduleConfig(**{name: _field(scheduler, name, source, "scheduler.")
                                     for name in ScheduleConfig.__dataclass_fields__})
        if schedule.prediction_type not in PREDICTION_TYPES:
            raise ModelError(f"{source}: scheduler.prediction_type '{schedule.prediction_type}' is not supported.",
                             hint=f"Use one of {', '.join(PREDICTION_TYPES)}.")
        if schedule.schedule not in SCHEDULES:
            raise ModelError(f"{source}: scheduler.schedule '{schedule.schedule}' is not supported.",
                             hint=f"Use one of {', '.join(SCHEDULES)}.")
        inp = _field(spec, "input", source)
        input_spec = InputSpec(
            shape=tuple(int(v) for v in _field(inp, "shape", source, "input.")),
            spacing=tuple(float(v) for v in _field(inp, "spacing", source, "input.")),
            orientation=inp.get("orientation", "RAS"),
            intensity=_field(inp, "intensity", source, "input."),
            condition_classes=tuple(inp.get("condition_classes", ())),
        )
        for name in ("spatial_dims", "in_channels", "out_channels", "channels", "attention_levels"):
            _field(arguments, name, source, "architecture.arguments.")
        return cls(dict(arguments), schedule, input_spec, spec.get("provenance", {}), spec.get("weights_sha256", ""))


def _field(spec: Any, name: str, source: str, prefix: str = ""):
    if not isinstance(spec, dict) or name not in spec:
        raise ModelError(f"{source} is missing the field '{prefix}{name}'.",
                         hint="The model package is incomplete: re-export it, or add the field to model.json.")
    return spec[name]
