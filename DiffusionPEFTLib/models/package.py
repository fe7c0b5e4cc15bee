"""Model packages: a folder (or one .zip of it) with ``model.json`` + ``weights.safetensors`` (the UNet; a latent
model adds ``autoencoder.safetensors``, see latent_model.py).

Loading never unpickles code. The sha256 of the weights file is recorded in model.json and
checked on load; it is also the base-model fingerprint adapters are tied to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import sys
import zipfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import ModelError
from ..files import staged
from .config import ModelConfig
from .diffusion_model import DiffusionModel, build_unet

CONFIG_NAME = "model.json"
TASK_COMMANDS = {"synthesis": "synthesize", "translation": "translate", "latent": "synthesize"}
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


def file_fingerprint(path: Path) -> str:
    """:func:`weights_fingerprint` of a file's bytes, read as a stream."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def load_model(path: str | Path, device: torch.device | str = "cpu") -> DiffusionModel:
    """Load a synthesis model package onto ``device`` in eval mode; the weights' sha256 must match model.json."""
    return load_package(path, "synthesis", DiffusionModel, device)


def load_package(path: str | Path, task: str, build: Callable[..., nn.Module],
                 device: torch.device | str = "cpu") -> nn.Module:
    """Load a package of ``task`` (ModelError naming the package's own task otherwise): ``build(config, unet=…)``
    makes the module around an uninitialised UNet, which then receives the checksum-verified weights."""
    path = Path(path)
    config = read_model_config(path)
    if config.task != task:
        raise ModelError(f"{path.name} is a {config.task} model, not a {task} model.",
                         hint=f"Give a {task} model here, or use this one with "
                         f"'diffusion-peft {TASK_COMMANDS[config.task]}'.")
    state, digest = read_package_tensors(path, WEIGHTS_NAME, config.weights_sha256)
    model = build(dataclasses.replace(config, weights_sha256=digest), unet=build_unet(config.unet, initialise=False))
    load_unet_state(model, state, path.name)
    return model.to(device).eval()


def read_package_tensors(path: Path, name: str, sha256: str) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of the safetensors file ``name`` in package ``path`` and its sha256; ModelError when the
    file is missing, damaged, or its checksum differs from ``sha256`` (when one is recorded). In a folder the
    file is hashed as a stream and its tensors are memory-mapped (no whole-file copy in memory)."""
    from safetensors.torch import load as load_safetensors, load_file

    member = path / name
    if path.is_dir() and member.is_file():
        digest, read = file_fingerprint(member), lambda: load_file(member)
    else:
        data = _read_member(path, name)
        digest, read = weights_fingerprint(data), lambda: load_safetensors(data)
    if sha256 and digest != sha256:
        raise ModelError(f"The weights of {path.name} do not match the checksum in model.json ({name}).",
                         hint="The file is damaged or was replaced: copy the package again.")
    try:
        return read(), digest
    except Exception as exc:
        raise ModelError(f"Cannot read {name} in {path.name}: {exc}", hint="Copy the package again.") from None


def load_unet_state(model: nn.Module, state: dict, source: str) -> None:
    load_network_state(model.unet, state, source)


def load_network_state(network: nn.Module, state: dict, source: str, where: str = "model.json",
                       hint: str = "The package's model.json and weights belong to different models.") -> None:
    """Load ``state`` into a MONAI network (DiffusionModelUNet, AutoencoderKL): current key names exactly,
    MONAI-Generative names through the network's ``load_old_state_dict``. ModelError naming a few missing,
    unexpected and resized tensors when they do not fit the architecture in ``where`` — also when an old-format
    file leaves a tensor of the network unset."""
    shapes = {name: tuple(tensor.shape) for name, tensor in network.state_dict().items()}
    old_format = not all(name in shapes for name in state) and hasattr(network, "load_old_state_dict")
    try:
        if old_format:
            _load_old_format(network, state)
        else:
            network.load_state_dict(state)
    except (KeyError, RuntimeError):
        raise ModelError(f"The weights in {source} do not fit the architecture in {where}: "
                         f"{_describe_mismatch(shapes, state)}.", hint=hint) from None
    if not old_format:
        return
    unset = [name for name, tensor in network.state_dict().items()
             if tensor.is_floating_point() and bool(torch.isnan(tensor.sum()))]
    if unset:
        raise ModelError(f"The old-format weights in {source} do not fit the architecture in {where}: {len(unset)} "
                         f"tensors are missing or NaN (e.g. {unset[0]}).", hint=hint)


def _load_old_format(network: nn.Module, state: dict) -> None:
    """MONAI's ``load_old_state_dict`` renames the tensors; it keeps the network's own value for a tensor the file
    lacks, so every tensor is NaN first: any NaN left afterwards (one sum per tensor) is then reported as missing."""
    with torch.no_grad():
        for tensor in network.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    with contextlib.redirect_stdout(sys.stderr):  # it may print; stdout carries the JSON events
        network.load_old_state_dict(dict(state))


def _describe_mismatch(shapes: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor]) -> str:
    """What differs between a network's tensors (name → shape) and a file's, each name looked up in MONAI's and
    in MONAI-Generative's spelling: '2 missing (a, b), 1 unexpected (c), 1 of another size (d: (4,) vs (8,))',
    at most three names each."""
    spelled = {name: name if name in state else generative_name(name) for name in shapes}
    known = set(spelled.values())
    found = {
        "missing": [name for name, key in spelled.items() if key not in state],
        "unexpected": [key for key in state if key not in known],
        "of another size": [f"{key}: {tuple(state[key].shape)} vs {shapes[name]}" for name, key in spelled.items()
                            if key in state and tuple(state[key].shape) != shapes[name]],
    }
    return ", ".join(f"{len(items)} {label} ({', '.join(items[:3])}{', …' if len(items) > 3 else ''})"
                     for label, items in found.items() if items) or "the tensors differ"


def generative_name(name: str) -> str:
    """MONAI-Generative's name of a MONAI-core DiffusionModelUNet/AutoencoderKL tensor (what
    ``load_old_state_dict`` renames back): ``….attn.to_q`` → ``….to_q``, ``attn.out_proj`` → ``proj_attn``, a
    cross-attention ``out_proj`` → ``to_out.0``, ``postconv`` → ``conv``."""
    if ".attn.to_" in name or ".attn.out_proj." in name:
        name = name.replace(".attn.to_", ".to_").replace(".attn.out_proj.", ".proj_attn.")
    elif "transformer_blocks" in name and ".out_proj." in name:
        name = name.replace(".out_proj.", ".to_out.0.")
    return name.replace("postconv", "conv")


def save_model(model: nn.Module, path: str | Path, provenance: dict | None = None,
               overwrite: bool = False, companions: dict[str, bytes] | None = None) -> Path:
    """Write a package folder (or a .zip when ``path`` ends in .zip) atomically; return its path.

    ``companions``: further files of the package by name (e.g. a latent model's autoencoder weights).
    An existing package is replaced only with ``overwrite`` and only if it holds nothing but a
    package this tool wrote (see :mod:`DiffusionPEFTLib.files`)."""
    from safetensors.torch import save as save_safetensors, save_file

    path = Path(path)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.unet.state_dict().items()}
    provenance = {**model.config.provenance, **(provenance or {})}
    if path.suffix == ".zip":
        weights = save_safetensors(state)
        config = dataclasses.replace(model.config, provenance=provenance, weights_sha256=weights_fingerprint(weights))
        with staged(path, overwrite=overwrite) as archive, zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(CONFIG_NAME, json.dumps(config.to_dict(), indent=2))
            for name, data in {WEIGHTS_NAME: weights, **(companions or {})}.items():
                zf.writestr(name, data)
    else:
        with staged(path, overwrite=overwrite, folder=True) as folder:
            save_file(state, folder / WEIGHTS_NAME)  # straight to the file: no second copy of a large model in memory
            config = dataclasses.replace(model.config, provenance=provenance,
                                         weights_sha256=file_fingerprint(folder / WEIGHTS_NAME))
            (folder / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2))
            for name, data in (companions or {}).items():
                (folder / name).write_bytes(data)
    model.config = config
    return path


def import_checkpoint(config: ModelConfig, checkpoint: str | Path, where: str = "model.json") -> DiffusionModel:
    """Build a model of ``config`` from a third-party ``.pt`` state dict (MONAI or MONAI-Generative key names,
    raw or under a ``state_dict``/``model``/``unet_state_dict`` key); ``where`` names the config in messages.

    Uses ``torch.load(weights_only=True)``: a file that needs code to unpickle is refused.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise ModelError(f"Checkpoint not found: {path}",
                         hint=f"Put the downloaded file here: {path.absolute()} (the .pt/.pth file), or give its path.")
    state = read_state_dict(path)
    model = DiffusionModel(config, unet=build_unet(config.unet, initialise=False, source=where))
    load_network_state(model.unet, state, path.name, where,
                       hint=f"This checkpoint holds another network than {where} describes: use the config "
                       "(model.json or --preset) of the network that saved it.")
    return model


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a third-party ``.pt``/``.pth`` file, by ``torch.load(weights_only=True)`` on the CPU;
    a ``state_dict``/``model``/``unet_state_dict`` entry is unwrapped. ModelError for pickled code or
    a file that is not a state dict."""
    import pickle

    try:
        state = _torch_load(path)
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


def _torch_load(path: Path):
    """``torch.load(weights_only=True)``, memory-mapped where the file's format allows (a 2 GB checkpoint then
    loads in a fraction of a second; its tensors are copied into the network later)."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:  # files of torch's legacy format cannot be mapped
        if "mmap" not in str(exc):
            raise
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _not_a_checkpoint(path: Path) -> ModelError:
    return ModelError(f"{path.name} is not a PyTorch checkpoint (or it is damaged).",
                      hint="Give the .pt/.pth file saved with torch.save(model.state_dict()).")
