"""``model.json``: architecture, noise schedule, input spec and provenance of a model package.

Every field is checked on load against :data:`MODEL_SCHEMA` (JSON Schema); a missing or wrong
field is a ModelError that names it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ModelError
from ..validation import validate_document
from ..volumes.intensity import IntensityNormalisation

MODEL_FORMAT_VERSION = 1
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SCHEDULES = ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine")
TASKS = ("synthesis", "translation", "latent")  # what a package is for; a command given the wrong kind says so

_POSITIVE_INT = {"type": "integer", "minimum": 1, "description": "a whole number ≥ 1 is needed"}
_POSITIVE_NUMBER = {"type": "number", "exclusiveMinimum": 0, "description": "a number > 0 is needed"}
_INTS = {"type": "array", "items": _POSITIVE_INT, "minItems": 1, "description": "a list of whole numbers ≥ 1 is needed"}
_NUMBER_PAIR = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2,
                "description": "two numbers [low, high] are needed"}
# optional: packages written before it existed have none, and translate then skips the contrast check
_SOURCE_SIGNATURE = {
    "type": "object", "required": ["bins", "range", "smoothing_mm", "foreground", "threshold"],
    "additionalProperties": False, "description": "an object with bins, range, smoothing_mm, foreground, threshold",
    "properties": {
        "bins": {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 2,
                 "description": "a list of at least two numbers ≥ 0 is needed"},
        "range": _NUMBER_PAIR, "smoothing_mm": _POSITIVE_NUMBER, "threshold": _POSITIVE_NUMBER,
        "foreground": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "description": "a number in [0, 1) is needed"},
    }}
MODEL_SCHEMA = {
    "type": "object",
    "required": ["format_version", "architecture", "input"],
    # a synthesis model has a noise schedule; a translation model its bridge (checked by translation/); a latent
    # model a noise schedule and its autoencoder (checked by models/latent_model.py)
    "if": {"properties": {"task": {"const": "translation"}}, "required": ["task"]},
    "then": {"required": ["translation"]},
    "else": {"required": ["scheduler"]},
    "allOf": [{"if": {"properties": {"task": {"const": "latent"}}, "required": ["task"]},
               "then": {"required": ["latent"]}}],
    "properties": {
        "format_version": {"type": "integer", "description": "a whole number is needed"},
        "task": {"enum": list(TASKS), "description": f"one of {', '.join(TASKS)} is needed"},
        "translation": {"type": "object", "description": "an object with the translation settings is needed",
                        "properties": {"source_signature": _SOURCE_SIGNATURE}},
        "latent": {"type": "object", "description": "an object with the autoencoder and conditions is needed"},
        "architecture": {"type": "object", "required": ["arguments"], "properties": {"arguments": {
            "type": "object",
            "required": ["spatial_dims", "in_channels", "out_channels", "channels", "attention_levels"],
            "properties": {
                "spatial_dims": {"const": 3, "description": "only 3D models (3) are supported"},
                "in_channels": _POSITIVE_INT, "out_channels": _POSITIVE_INT, "channels": _INTS,
                "attention_levels": {"type": "array", "items": {"type": "boolean"}, "minItems": 1,
                                     "description": "a list of true/false, one per level, is needed"},
                "num_res_blocks": {"anyOf": [_POSITIVE_INT, _INTS], "description": "a number or list ≥ 1 is needed"},
                "num_head_channels": {"anyOf": [_POSITIVE_INT, {"type": "array", "items": {"type": "integer",
                                      "minimum": 0}}], "description": "a number ≥ 1 or a list of numbers ≥ 0 is needed"},
                "norm_num_groups": _POSITIVE_INT,
                "num_class_embeds": {"anyOf": [_POSITIVE_INT, {"type": "null"}],
                                     "description": "a number of classes ≥ 1, or null, is needed"},
                "with_conditioning": {"type": "boolean", "description": "true or false is needed"},
            }}}},
        "scheduler": {
            "type": "object",
            "required": ["num_train_timesteps", "schedule", "beta_start", "beta_end", "prediction_type"],
            "properties": {
                "num_train_timesteps": _POSITIVE_INT,
                "schedule": {"enum": list(SCHEDULES), "description": f"one of {', '.join(SCHEDULES)} is needed"},
                "beta_start": _POSITIVE_NUMBER, "beta_end": _POSITIVE_NUMBER,
                "prediction_type": {"enum": list(PREDICTION_TYPES),
                                    "description": f"one of {', '.join(PREDICTION_TYPES)} is needed"},
            }},
        "input": {
            "type": "object",
            "required": ["shape", "spacing", "intensity"],
            "properties": {
                "shape": {**_INTS, "minItems": 3, "maxItems": 3, "description": "three whole numbers ≥ 1 are needed"},
                "spacing": {"type": "array", "items": _POSITIVE_NUMBER, "minItems": 3, "maxItems": 3,
                            "description": "three voxel sizes in mm (> 0) are needed"},
                "orientation": {"const": "RAS", "description": "only RAS is supported"},
                "intensity": {"type": "object", "required": ["lower", "upper", "range"], "properties": {
                    "lower": {"type": "number", "minimum": 0, "maximum": 100, "description": "a percentile 0–100 is needed"},
                    "upper": {"type": "number", "minimum": 0, "maximum": 100, "description": "a percentile 0–100 is needed"},
                    "range": _NUMBER_PAIR}},
                "condition_classes": {"type": "array", "items": {"type": "string"},
                                      "description": "a list of class names is needed"},
            }},
        "provenance": {"type": "object", "description": "an object is needed"},
        "weights_sha256": {"type": "string", "description": "a hex string is needed"},
    },
}


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
    """Everything in model.json. ``unet`` holds DiffusionModelUNet keyword arguments; ``task`` says what the
    package is for: ``synthesis`` (``schedule`` = its DDPM noise schedule), ``translation`` (``schedule``
    None; ``translation`` = source/target contrasts, puzzle factor and bridge, read by translation/) or
    ``latent`` (``schedule`` of the UNet on the latent grid; ``latent`` = autoencoder, scale factor and
    conditions, read by models/latent_model.py)."""

    unet: dict[str, Any]
    schedule: ScheduleConfig | None
    input: InputSpec
    provenance: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    task: str = "synthesis"
    translation: dict[str, Any] | None = None
    latent: dict[str, Any] | None = None

    def to_dict(self) -> dict:
        spec = {
            "format_version": MODEL_FORMAT_VERSION,
            "task": self.task,
            "architecture": {"class": "monai.networks.nets.DiffusionModelUNet", "arguments": dict(self.unet)},
            "input": {**asdict(self.input), "shape": list(self.input.shape), "spacing": list(self.input.spacing),
                      "condition_classes": list(self.input.condition_classes)},
            "provenance": self.provenance,
            "weights_sha256": self.weights_sha256,
        }
        if self.schedule is not None:
            spec["scheduler"] = asdict(self.schedule)
        if self.translation is not None:
            spec["translation"] = dict(self.translation)
        if self.latent is not None:
            spec["latent"] = dict(self.latent)
        return spec

    @classmethod
    def from_dict(cls, spec: dict, source: str = "model.json") -> "ModelConfig":
        validate_document(spec, MODEL_SCHEMA, source, ModelError,
                          hint="The model package is incomplete or edited by hand: re-export it, or fix that "
                          "field of model.json.")
        version = spec["format_version"]
        if version != MODEL_FORMAT_VERSION:
            raise ModelError(f"{source} has format_version {version}; this version reads {MODEL_FORMAT_VERSION}.",
                             hint="Update DiffusionPEFT or re-export the model.")
        scheduler, inp = spec.get("scheduler"), spec["input"]
        schedule = (ScheduleConfig(**{name: scheduler[name] for name in ScheduleConfig.__dataclass_fields__})
                    if scheduler is not None else None)
        input_spec = InputSpec(
            shape=tuple(int(v) for v in inp["shape"]),
            spacing=tuple(float(v) for v in inp["spacing"]),
            orientation=inp.get("orientation", "RAS"),
            intensity=inp["intensity"],
            condition_classes=tuple(inp.get("condition_classes", ())),
        )
        arguments = dict(spec["architecture"]["arguments"])
        return cls(arguments, schedule, input_spec, spec.get("provenance", {}), spec.get("weights_sha256", ""),
                   spec.get("task", "synthesis"), spec.get("translation"), spec.get("latent"))
