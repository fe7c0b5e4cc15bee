"""Model packages: a folder (or one .zip of it) with ``model.json`` + ``weights.safetensors``.

Loading never unpickles code. The sha256 of the weights file is recorded in model.json and
checked on load; it is also the base-model fingerprint adapters are tied to.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ModelError
from ..files import staged
from .config import ModelConfig
from .diffusion_model import DiffusionModel

CONFIG_NAME = "model.json"
TASK_COMMANDS = {"synthesis": "synthesize", "translation": "translate"}
WEIGHTS_NAME = "weights.safetensors"


def _read_member(path: Path, name: str) -> bytes:
    """Bytes of ``name`` inside a package folder or .zip; ModelError when it is not there."""
    if not path.exists():
        raise ModelError(f"Model not found: {path}",
                         hint="Give the path of a model package folder (with model.json) or its .zip. "
                         "Models are never downloaded: put the package there first.")
    try:
        if path.is_dir():
            return (path / name).read_bytes()
        with zipfile.ZipFile(path) as archive:
            members = {Path(m).name: m for m in archive.namelist()}
            return archive.read(members[name])
    except (FileNotFoundError, KeyError):
        raise ModelError(f"{path} is not a model package: {name} is missing.",
                         hint="A model package holds model.json and weights.safetensors.") from None
    except zipfile.BadZipFile:
        raise ModelError(f"{path} is neither a model folder nor a valid .zip.", hint="Re-export the model package.") from None


def read_model_config(path: str | Path) -> ModelConfig:
    """Parse and check model.json only (no weights needed: enough for planning and dry runs)."""
    path = Path(path)
    if path.is_file() and path.name == CONFIG_NAME:
        path = path.parent
    raw = _read_member(path, CONFIG_NAME)
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path / CONFIG_NAME} is not valid JSON ({exc.msg}, line {exc.lineno}).",
                         hint="Fix or re-export model.json.") from None
    return ModelConfig.from_dict(spec, source=f"{path.name}/{CONFIG_NAME}")


def weights_fingerprint(weights: bytes) -> str:
    return hashlib.sha256(weights).hexdigest()


def load_model(path: str | Path, device: torch.device | str = "cpu") -> DiffusionModel:
    """Load a synthesis model package onto ``device`` in eval mode; the weights' sha256 must match model.json."""
    return load_package(path, "synthesis", DiffusionModel, device)


def load_package(path: str | Path, task: str, build: Callable[[ModelConfig], nn.Module],
                 device: torch.device | str = "cpu") -> nn.Module:
    """Load a package of ``task`` (ModelError naming the package's own task otherwise): ``build(config)``
    makes the module, whose ``.unet`` receives the checksum-verified weights."""
    from safetensors.torch import load as load_safetensors

    path = Path(path)
    config = read_model_config(path)
    if config.task != task:
        raise ModelError(f"{path.name} is a {config.task} model, not a {task} model.",
                         hint=f"Give a {task} model here, or use this one with "
                         f"'diffusion-peft {TASK_COMMANDS[config.task]}'.")
    weights = _read_member(path, WEIGHTS_NAME)
    digest = weights_fingerprint(weights)
    if config.weights_sha256 and digest != config.weights_sha256:
        raise ModelError(f"The weights of {path.name} do not match the checksum in model.json.",
                         hint="The file is damaged or was replaced: copy the package again.")
    try:
        state = load_safetensors(weights)
    except Exception as exc:
        raise ModelError(f"Cannot read {WEIGHTS_NAME} in {path.name}: {exc}", hint="Copy the package again.") from None
    model = build(dataclasses.replace(config, weights_sha256=digest))
    load_unet_state(model, state, path.name)
    return model.to(device).eval()


def load_unet_state(model: nn.Module, state: dict, source: str) -> None:
    own = model.unet.state_dict()
    resized = [name for name, tensor in state.items() if name in own and tuple(own[name].shape) != tuple(tensor.shape)]
    if resized:
        raise ModelError(f"The weights in {source} do not fit the architecture in model.json ({len(resized)} tensors "
                         f"have other sizes, e.g. {resized[0]}: {tuple(state[resized[0]].shape)} vs "
                         f"{tuple(own[resized[0]].shape)}).",
                         hint="The package's model.json and weights belong to different models.")
    missing, unexpected = model.unet.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"The weights in {source} do not fit the architecture in model.json "
            f"({len(missing)} missing, {len(unexpected)} unexpected tensors, e.g. {(missing or unexpected)[0]}).",
            hint="The package's model.json and weights belong to different models.",
        )


def save_model(model: nn.Module, path: str | Path, provenance: dict | None = None,
               overwrite: bool = False) -> Path:
    """Write a package folder (or a .zip when ``path`` ends in .zip) atomically; return its path.

    An existing package is replaced only with ``overwrite`` and only if it holds nothing but a
    package this tool wrote (see :mod:`DiffusionPEFTLib.files`)."""
    from safetensors.torch import save as save_safetensors

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.unet.state_dict().items()}
    weights = save_safetensors(state)
    config = dataclasses.replace(model.config, provenance={**model.config.provenance, **(provenance or {})},
                                 weights_sha256=weights_fingerprint(weights))
    text = json.dumps(config.to_dict(), indent=2)
    if path.suffix == ".zip":
        with staged(path, overwrite=overwrite) as archive, zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(CONFIG_NAME, text)
            zf.writestr(WEIGHTS_NAME, weights)
    else:
        with staged(path, overwrite=overwrite, folder=True) as folder:
            (folder / CONFIG_NAME).write_text(text)
            (folder / WEIGHTS_NAME).write_bytes(weights)
    model.config = config
    return path


def import_checkpoint(config_path: str | Path, checkpoint: str | Path) -> DiffusionModel:
    """Build a model from a third-party ``.pt`` state dict (MONAI or MONAI-Generative key names).

    Uses ``torch.load(weights_only=True)``: a file that needs code to unpickle is refused.
    """
    config = read_model_config(config_path)
    path = Path(checkpoint)
    if not path.is_file():
        raise ModelError(f"Checkpoint not found: {path}", hint="Give the path of a .pt/.pth file.")
    state = read_state_dict(path)
    model = DiffusionModel(config)
    if any(".to_q." in k and ".attn." not in k for k in state) or any("proj_attn" in k for k in state):
        try:
            model.unet.load_old_state_dict(state)
        except (KeyError, RuntimeError) as exc:
            raise ModelError(f"The old-format weights in {path.name} do not fit the architecture in model.json "
                             f"({type(exc).__name__}: {str(exc)[:200]}).",
                             hint="Use the model.json of the network that saved this checkpoint.") from None
    else:
        load_unet_state(model, state, Path(checkpoint).name)
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a third-party ``.pt``/``.pth`` file, by ``torch.load(weights_only=True)`` on the CPU;
    a ``state_dict``/``model``/``unet_state_dict`` entry is unwrapped. ModelError for pickled code or
    a file that is not a state dict."""
    import pickle

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise ModelError(f"{path.name} contains pickled code, which is never executed.",
                             hint="Export a plain state_dict (torch.save(model.state_dict())) or safetensors.") from None
        raise _not_a_checkpoint(path) from None
    except Exception:  # torch raises KeyError, RuntimeError, EOFError … for files of another kind
        raise _not_a_checkpoint(path) from None
    for key in ("state_dict", "model", "unet_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path.name} does not hold a state_dict of tensors.", hint="Export the network's state_dict.")
    return state


def _not_a_checkpoint(path: Path) -> ModelError:
    return ModelError(f"{path.name} is not a PyTorch checkpoint (or it is damaged).",
                      hint="Give the .pt/.pth file saved with torch.save(model.state_dict()).")
