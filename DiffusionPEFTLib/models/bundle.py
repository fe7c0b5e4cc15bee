"""Import a MONAI model-zoo latent diffusion bundle as a latent model package, reading its configs as data.

A bundle folder holds ``configs/inference.json``, ``configs/metadata.json`` and ``models/*.pt``. What is taken
from where (``configs/inference.json`` unless said otherwise; never by running an expression, see
:mod:`.bundle_config`):

- **networks**: the entries whose ``_target_`` is ``AutoencoderKL`` and ``DiffusionModelUNet`` (MONAI core or
  MONAI-Generative, whose ``num_channels`` is MONAI's ``channels``), built as MONAI core classes;
- **noise schedule**: the ``DDPMScheduler`` / ``DDIMScheduler`` / ``PNDMScheduler`` entry (MONAI's defaults
  for what it leaves out; ``prediction_type`` epsilon);
- **grid**: ``--shape``, else a literal ``latent_shape`` × the autoencoder's downsampling, else the metadata's
  image ``spatial_shape``; **spacing**: ``--spacing``, else a ``spacing`` entry, else "A×B×C mm" in the
  metadata's ``image_classes``;
- **intensities**: the metadata's ``value_range`` (default [0, 1]) for the percentiles of ``--percentiles``,
  else of a ``ScaleIntensityRangePercentiles(d)`` in any ``configs/*.json``, else 0 and 99.5;
- **conditions**: the UNet takes n numbers (``cross_attention_dim`` and/or its input channels beyond the
  latent channels); their names, order and defaults are the ``@`` entries holding numbers that the
  ``conditioning`` entry refers to (brain LDM: gender, age, ventricular_vol, brain_vol = 0, 0.1, 0.2, 0.4), their
  labels and range the metadata's ``channel_def`` / ``value_range``; without those, ``c0``, ``c1``, … = 0;
- **scale factor**: ``--scale-factor``, else a literal ``scale_factor`` entry, else 1.0 (both zoo LDM samplers
  decode their latents unscaled);
- **weights**: the ``.pt`` files named in the config (``autoencoder.pt`` / ``model_autoencoder.pt`` and
  ``model.pt`` otherwise) in ``models/``, by ``torch.load(weights_only=True)``; MONAI-Generative key names through
  MONAI's ``load_old_state_dict``. A missing file: "put the downloaded file here: …".
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, ModelError
from ..volumes.intensity import IntensityNormalisation
from .bundle_config import BundleConfig, find_definitions
from .config import SCHEDULES, InputSpec, ModelConfig, ScheduleConfig
from .diffusion_model import build_unet
from .latent_model import CONDITIONING_MODES, Condition, LatentDiffusionModel, LatentSpec, build_autoencoder
from .package import file_fingerprint, load_network_state, read_state_dict

AUTOENCODER = "AutoencoderKL"
UNET = "DiffusionModelUNet"
SCHEDULERS = ("DDPMScheduler", "DDIMScheduler", "PNDMScheduler")
RENAMED = {"num_channels": "channels", "use_checkpointing": "use_checkpoint"}  # MONAI-Generative → MONAI names
MONAI_BETAS = (1e-4, 2e-2)  # MONAI's beta_start / beta_end when a scheduler entry gives none
DEFAULT_PERCENTILES = (0.0, 99.5)
SPACING_TEXT = re.compile(r"(\d+(?:\.\d+)?)\s*[x×]\s*(\d+(?:\.\d+)?)\s*[x×]\s*(\d+(?:\.\d+)?)\s*mm")
WEIGHT_NAME = re.compile(r"([\w.\-]+\.pth?)\b")
NOT_SUPPORTED = ("import-bundle reads latent diffusion bundles (a MONAI AutoencoderKL + DiffusionModelUNet, e.g. "
                 "brain_image_synthesis_latent_diffusion_model, brats_mri_generative_diffusion); MAISI and pixel-space "
                 "bundles are not supported (a pixel-space checkpoint goes through 'diffusion-peft import').")


@dataclass(frozen=True)
class BundleOverrides:
    """What the command line may set instead of the bundle: grid ``shape`` (voxels), ``spacing`` (mm),
    ``scale_factor`` and intensity ``percentiles``; None = from the bundle."""

    shape: tuple[int, int, int] | None = None
    spacing: tuple[float, float, float] | None = None
    scale_factor: float | None = None
    percentiles: tuple[float, float] | None = None


@dataclass(frozen=True)
class BundleContents:
    """What :func:`read_bundle` found in the configs: the package's ``config`` (model.json; provenance with the
    bundle's card), the inference config's entries that define the networks by role ("autoencoder", "unet"),
    its name for messages and its JSON ``document`` (which names the weight files)."""

    folder: Path
    config: ModelConfig
    entries: dict[str, str]
    source: str
    document: dict


def read_bundle(folder: str | Path, overrides: BundleOverrides = BundleOverrides()) -> BundleContents:
    """Everything the bundle's configs say about the model (no weights needed); InputError for what is missing or
    cannot be read as data."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"Bundle folder not found: {folder}",
                         hint="Give the folder of a downloaded MONAI bundle (with configs/ and models/).")
    config = BundleConfig.read(folder / "configs" / "inference.json")
    metadata = BundleConfig.read(folder / "configs" / "metadata.json").document
    autoencoder_key, unet_key = _network_keys(config)
    autoencoder = network_arguments(config, autoencoder_key, AUTOENCODER)
    unet = network_arguments(config, unet_key, UNET)
    shape = overrides.shape or _image_shape(config, metadata, autoencoder)
    conditions, modes = _conditions(config, metadata, unet, autoencoder)
    spec = LatentSpec(autoencoder, _scale_factor(config, overrides.scale_factor), conditions, modes)
    multiple = spec.downsampling * 2 ** (len(unet["channels"]) - 1)
    if any(side % multiple for side in shape):
        raise InputError(f"The grid {'×'.join(map(str, shape))} does not divide into this bundle's latent grid: every "
                         f"side must be a multiple of {multiple} (autoencoder and UNet downsampling).",
                         hint=f"Give --shape with multiples of {multiple}, e.g. "
                         f"{' '.join(str(max(multiple, side // multiple * multiple)) for side in shape)}.")
    spec.check_fits(unet, shape, source=config.source)
    low, high = overrides.percentiles or _percentiles(folder)
    inputs = InputSpec(shape=shape, spacing=overrides.spacing or _spacing(config, metadata),
                       intensity=IntensityNormalisation(low, high, _value_range(metadata)).to_dict())
    provenance = {"imported_from": str(folder.resolve()), "bundle": bundle_card(folder, metadata)}
    return BundleContents(folder, ModelConfig(unet=unet, schedule=_schedule(config), input=inputs,
                                              provenance=provenance, task="latent", latent=spec.to_dict()),
                          {"autoencoder": autoencoder_key, "unet": unet_key}, config.source, config.document)


def import_bundle(folder: str | Path, overrides: BundleOverrides = BundleOverrides()) -> LatentDiffusionModel:
    """The bundle at ``folder`` as a :class:`LatentDiffusionModel` with its weights loaded
    (``torch.load(weights_only=True)``; MONAI-Generative key names through ``load_old_state_dict``); the card in
    ``config.provenance["bundle"]`` lists the weight files (name, size, sha256)."""
    contents = read_bundle(folder, overrides)
    config = contents.config
    files = {role: _weight_file(contents.folder, contents.document, role == "autoencoder")
             for role in ("autoencoder", "unet")}
    where = {role: f"{contents.source} ({entry})" for role, entry in contents.entries.items()}
    model = LatentDiffusionModel(config, build_unet(config.unet, False, where["unet"]),
                                 build_autoencoder(LatentSpec.from_dict(config.latent).autoencoder, False,
                                                   where["autoencoder"]))
    hint = f"Use the weights downloaded for this bundle (its {contents.source} describes other networks)."
    for role, network in (("autoencoder", model.autoencoder), ("unet", model.unet)):
        load_network_state(network, read_state_dict(files[role]), files[role].name, where[role], hint)
    card = {**config.provenance["bundle"], "weights": {
        role: {"file": path.relative_to(contents.folder).as_posix(), "bytes": path.stat().st_size,
               "sha256": file_fingerprint(path)} for role, path in files.items()}}
    model.config = dataclasses.replace(config, provenance={**config.provenance, "bundle": card})
    return model.eval()


def network_arguments(config: BundleConfig, key: str, class_name: str) -> dict:
    """The keyword arguments of the network defined at ``key``, as MONAI's ``class_name`` takes them."""
    from monai.networks import nets

    accepted = inspect.signature(getattr(nets, class_name)).parameters
    arguments = {RENAMED.get(name, name): value for name, value in config.arguments(key).items()}
    unknown = [name for name in arguments if name not in accepted]
    if unknown:
        raise InputError(f"{config.source}: '{key}' has the argument '{unknown[0]}', which MONAI's {class_name} "
                         "does not take.", hint=NOT_SUPPORTED)
    if arguments.get("spatial_dims") != 3:
        raise InputError(f"{config.source}: '{key}' is a {arguments.get('spatial_dims')}D network; only 3D "
                         "(spatial_dims 3) networks are imported.", hint=NOT_SUPPORTED)
    for name in ("channels", "attention_levels", "num_res_blocks", "num_head_channels", "norm_num_groups"):
        if name in accepted and name not in arguments:  # written out: model.json states the whole architecture
            default = accepted[name].default
            arguments[name] = list(default) if isinstance(default, tuple) else default
    return arguments


def bundle_card(folder: Path, metadata: dict) -> dict:
    """What the package's card keeps of the bundle: name, version, task, authors, copyright and licences,
    intended use, references."""
    keys = ("version", "task", "description", "authors", "copyright", "license", "data_source", "data_type",
            "image_classes", "intended_use", "references", "eval_metrics", "monai_version")
    card = {"name": metadata.get("name") or folder.name, "folder": folder.name,
            **{key: metadata[key] for key in keys if key in metadata}}
    for key, relative in (("licence_file", "LICENSE"), ("data_licence", "docs/data_license.txt")):
        first_line = _first_line(folder / relative)
        if first_line:
            card[key] = f"{relative}: {first_line}"
    return card


# --- what the bundle says, read as data ------------------------------------------------------------

def _network_keys(config: BundleConfig) -> tuple[str, str]:
    keys = []
    for class_name, preferred in ((AUTOENCODER, "autoencoder_def"), (UNET, "diffusion_def")):
        found = config.definitions(class_name)
        if not found:
            targets = ", ".join(config.targets()) or "none"
            raise InputError(f"{config.source} defines no {class_name} (its _target_ entries: {targets}).",
                             hint=NOT_SUPPORTED)
        keys.append(preferred if preferred in found else "network_def" if "network_def" in found else found[0])
    return keys[0], keys[1]


def _image_shape(config: BundleConfig, metadata: dict, autoencoder: dict) -> tuple[int, int, int]:
    factor = 2 ** (len(autoencoder["channels"]) - 1)
    if config.is_literal("latent_shape"):
        latent = config.resolve_entry("latent_shape")
        if isinstance(latent, list) and len(latent) == 4 and all(isinstance(v, int) for v in latent):
            return tuple(side * factor for side in latent[1:])
    for item in _data_formats(metadata):
        shape = item.get("spatial_shape")
        if item.get("num_channels") == autoencoder.get("in_channels", 1) and isinstance(shape, list) and len(shape) == 3:
            return tuple(int(side) for side in shape)
    raise InputError(f"{config.source} and metadata.json do not state the volume grid as data.",
                     hint="Give it with --shape X Y Z (the voxels the bundle's volumes have, e.g. 160 224 160).")


def _spacing(config: BundleConfig, metadata: dict) -> tuple[float, float, float]:
    if config.is_literal("spacing"):
        spacing = config.resolve_entry("spacing")
        if isinstance(spacing, list) and len(spacing) == 3 and all(isinstance(v, (int, float)) for v in spacing):
            return tuple(float(v) for v in spacing)
    match = SPACING_TEXT.search(str(metadata.get("image_classes", "")))
    if match:
        return tuple(float(v) for v in match.groups())
    raise InputError("The bundle does not state its voxel size as data.",
                     hint="Give it with --spacing (mm; one value or three).")


def _value_range(metadata: dict) -> tuple[float, float]:
    for item in _data_formats(metadata):
        value_range = item.get("value_range")
        if item.get("type") == "image" and isinstance(value_range, list) and len(value_range) == 2:
            return float(value_range[0]), float(value_range[1])
    return 0.0, 1.0


def _percentiles(folder: Path) -> tuple[float, float]:
    names = ("ScaleIntensityRangePercentiles", "ScaleIntensityRangePercentilesd")
    for path in sorted((folder / "configs").glob("*.json")):
        try:
            config = BundleConfig.read(path)
        except InputError:
            continue
        for definition in find_definitions(config.document, names):
            try:
                low, high = (config.resolve(definition.get(k), k) for k in ("lower", "upper"))
            except InputError:
                continue
            if all(isinstance(v, (int, float)) and 0 <= v <= 100 for v in (low, high)) and low < high:
                return float(low), float(high)
    return DEFAULT_PERCENTILES


def _scale_factor(config: BundleConfig, given: float | None) -> float:
    if given is not None:
        return float(given)
    if config.get("scale_factor") is None:
        return 1.0
    try:
        value = config.resolve_entry("scale_factor")
    except InputError as error:
        raise InputError(error.message, hint="Give the scale factor the model was trained with as --scale-factor "
                         "(the value its training printed).") from None
    if not isinstance(value, (int, float)) or not value > 0:
        raise InputError(f"{config.source}: scale_factor is {value!r}; a number > 0 is needed.",
                         hint="Give it as --scale-factor.")
    return float(value)


def _schedule(config: BundleConfig) -> ScheduleConfig:
    found = config.definitions(*SCHEDULERS)
    if not found:
        other = [t for t in config.targets() if "Scheduler" in t]
        raise InputError(f"{config.source} defines no DDPM/DDIM/PNDM noise scheduler"
                         f"{f' (it has {other[0]})' if other else ''}.",
                         hint="Rectified-flow (RFlowScheduler) bundles are not supported yet.")
    arguments = config.arguments(found[0])
    schedule = arguments.get("schedule", "linear_beta")
    if schedule not in SCHEDULES or str(arguments.get("variance_type", "fixed_small")).startswith("learned"):
        raise InputError(f"{config.source}: the scheduler '{found[0]}' uses schedule {schedule!r} / variance "
                         f"{arguments.get('variance_type', 'fixed_small')!r}.",
                         hint=f"Supported: schedules {', '.join(SCHEDULES)} with a fixed variance.")
    return ScheduleConfig(num_train_timesteps=int(arguments.get("num_train_timesteps", 1000)), schedule=schedule,
                          beta_start=float(arguments.get("beta_start", MONAI_BETAS[0])),
                          beta_end=float(arguments.get("beta_end", MONAI_BETAS[1])),
                          prediction_type=arguments.get("prediction_type", "epsilon"))


def _conditions(config: BundleConfig, metadata: dict, unet: dict,
                autoencoder: dict) -> tuple[tuple[Condition, ...], tuple[str, ...]]:
    """The conditions the UNet takes and how (see the module docstring)."""
    concat = int(unet["in_channels"]) - int(autoencoder["latent_channels"])
    crossattn = int(unet.get("cross_attention_dim") or 0) if unet.get("with_conditioning") else 0
    count = max(concat, crossattn)
    if concat < 0 or (concat and crossattn and concat != crossattn):
        raise InputError(f"{config.source}: the UNet takes {unet['in_channels']} channels and cross-attention of "
                         f"width {crossattn} for {autoencoder['latent_channels']} latent channels; this conditioning "
                         "is not understood.", hint=NOT_SUPPORTED)
    modes = tuple(mode for mode, used in zip(CONDITIONING_MODES, (concat, crossattn)) if used)
    if not count:
        return (), modes
    named = [reference for reference in config.references_in("conditioning")
             if isinstance(config.get(reference), (int, float)) and not isinstance(config.get(reference), bool)]
    labels, value_range = _condition_labels(metadata, count)
    names = list(dict.fromkeys(re.split(r"::|#", reference)[-1] for reference in named))  # "a::age" → "age"
    if len(named) == count and len(names) == count:
        defaults = [float(config.get(reference)) for reference in named]
    else:
        names, defaults = [f"c{i}" for i in range(count)], [0.0] * count
    return tuple(Condition(name, default, label, value_range)
                 for name, default, label in zip(names, defaults, labels)), modes


def _condition_labels(metadata: dict, count: int) -> tuple[list[str], tuple[float, float] | None]:
    """Labels of the n conditions from a metadata ``channel_def`` with n entries, and that item's value range."""
    for item in _data_formats(metadata, inputs_only=True):
        channels = item.get("channel_def")
        if isinstance(channels, dict) and len(channels) == count:
            value_range = item.get("value_range")
            ok = isinstance(value_range, list) and len(value_range) == 2
            return ([str(channels.get(str(i), "")) for i in range(count)],
                    (float(value_range[0]), float(value_range[1])) if ok else None)
    return [""] * count, None


def _data_formats(metadata: dict, inputs_only: bool = False) -> list[dict]:
    """The input (then output) items of the metadata's ``network_data_format``."""
    data_format = metadata.get("network_data_format") if isinstance(metadata.get("network_data_format"), dict) else {}
    parts = ("inputs",) if inputs_only else ("inputs", "outputs")
    return [item for part in parts for item in (data_format.get(part) or {}).values() if isinstance(item, dict)]


def _weight_file(folder: Path, document: dict, autoencoder: bool) -> Path:
    """models/<file> of the autoencoder or the UNet; ModelError "put the downloaded file here" when it is absent."""
    mentioned = [name for text in _strings(document) for name in WEIGHT_NAME.findall(text)]
    mentioned = [Path(name).name for name in mentioned if ("autoencoder" in name) == autoencoder]
    candidates = list(dict.fromkeys(mentioned + (["autoencoder.pt", "model_autoencoder.pt"] if autoencoder
                                                 else ["model.pt"])))
    for name in candidates:
        if (folder / "models" / name).is_file():
            return folder / "models" / name
    expected = folder / "models" / candidates[0]
    role = "autoencoder" if autoencoder else "diffusion UNet"
    url = _download_url(folder, candidates[0])
    raise ModelError(f"The bundle's {role} weights are not available locally: put the downloaded file here: {expected}",
                     hint=(f"Download it from {url}" if url else "Download the bundle's weights (its large_files.yml "
                           "lists them; e.g. 'python -m monai.bundle download NAME')") +
                     f" and save it as {expected}; nothing is downloaded at run time.")


def _download_url(folder: Path, name: str) -> str | None:
    """The URL large_files.yml gives for models/<name>, if the file and PyYAML are there."""
    try:
        import yaml

        entries = yaml.safe_load((folder / "large_files.yml").read_text()).get("large_files", [])
        return next(entry["url"] for entry in entries if Path(str(entry.get("path", ""))).name == name)
    except Exception:  # no file, no PyYAML, another layout: the hint says it in general terms
        return None


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    values = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    return [text for value in values for text in _strings(value)]


def _first_line(path: Path) -> str:
    try:
        return next((line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()), "")[:200]
    except OSError:
        return ""

