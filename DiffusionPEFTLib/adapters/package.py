"""Adapter package: a folder with ``adapter.json`` (what to rebuild) and ``adapter.safetensors`` (tensors).

adapter.json:
  format, format_version, method, options, targets, train_norms, train_bias,
  layers {module name: {kind, shape, rank, effective_rank, parameters, + method extras such as SeLoRA's
  rank_history or DyLoRA's inference_rank}}, counts {adapter, extra, base, total, share}, recipe,
  base_model {fingerprint (sha256 hex of the base weights, given by the caller), architecture},
  provenance (caller's dict: data, steps, seed, metrics, …), library_version.
adapter.safetensors: ``AdapterSet.state_dict()`` — θ, needed buffers (TenVOO θ0, AdaLoRA mask) and the
  trained norm/bias (or, for full fine-tuning, all) base tensors, under the base model's module names.

Saving goes through :func:`DiffusionPEFTLib.files.staged`: a temporary sibling folder renamed into place, so a
crash never leaves a half-written package, and an existing folder is replaced only with ``overwrite``.
Loading onto a base whose fingerprint differs is refused unless ``allow_fingerprint_mismatch=True``
(``--force``): the tensors would load but the result would be silent garbage.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from ..errors import AdapterError
from ..files import staged
from .adapter_set import AdapterSet
from .inject import inject
from .registry import get_method

FORMAT = "diffusion-peft-adapter"
FORMAT_VERSION = 1
MANIFEST_NAME = "adapter.json"
TENSORS_NAME = "adapter.safetensors"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def save_adapter(adapter_set: AdapterSet, folder: str | os.PathLike, *, base_fingerprint: str,
                 base_architecture: Mapping[str, Any], provenance: Mapping[str, Any] | None = None,
                 overwrite: bool = False) -> Path:
    """Write the package folder atomically; returns its path."""
    final = Path(folder)
    check_fingerprint_format(base_fingerprint)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": adapter_set.method.name,
        "options": adapter_set.options,
        "targets": list(adapter_set.targets),
        "train_norms": adapter_set.train_norms,
        "train_bias": adapter_set.train_bias,
        "layers": {s.name: {**vars(s), **adapter_set.layers[s.name].metadata()}
                   for s in adapter_set.layer_summaries()},
        "counts": adapter_set.counts().as_dict(),
        "recipe": adapter_set.recipe.as_dict(),
        "base_model": {"fingerprint": base_fingerprint, "architecture": dict(base_architecture)},
        "provenance": dict(provenance or {}),
        "library_version": __version__,
    }
    for layer in manifest["layers"].values():
        del layer["name"]
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in adapter_set.state_dict().items()}
    with staged(final, overwrite=overwrite, folder=True) as temp:
        (temp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        save_file(tensors, str(temp / TENSORS_NAME), metadata={"format": FORMAT})
    return final


def load_adapter(folder: str | os.PathLike, model: nn.Module, *, base_fingerprint: str,
                 allow_fingerprint_mismatch: bool = False) -> AdapterSet:
    """Inject the package's adapters into ``model`` (the base it was trained on) and load its tensors."""
    manifest = read_manifest(folder)
    try:
        saved = manifest["base_model"]["fingerprint"]
        method = get_method(manifest["method"])
        layers, options = manifest["layers"], manifest["options"]
        ranks = {name: layer["rank"] for name, layer in layers.items()}
        norms, bias, targets = manifest["train_norms"], manifest["train_bias"], tuple(manifest["targets"])
    except (KeyError, TypeError, AttributeError):
        raise AdapterError(f"{Path(folder) / MANIFEST_NAME} lacks fields an adapter package has.",
                           hint="The package is damaged or edited by hand; save it again.") from None
    if saved != base_fingerprint and not allow_fingerprint_mismatch:
        raise AdapterError(
            f"Adapter {Path(folder).name} was trained on another base model "
            f"(fingerprint {str(saved)[:12]}…, this model {str(base_fingerprint)[:12]}…).",
            hint="Load it onto the base model it was trained on; force it only if you know the weights are the same.")
    try:
        tensors = load_file(str(Path(folder) / TENSORS_NAME))
    except Exception:  # safetensors raises its own error types for truncated or foreign files
        raise AdapterError(f"{Path(folder) / TENSORS_NAME} is damaged (truncated or not a safetensors file).",
                           hint="Copy the adapter package again, or train it again.") from None
    if method.wraps_layers:
        adapter_set = inject(model, method.name, [re.escape(name) for name in layers], ranks=ranks,
                             train_norms=norms, train_bias=bias, **options)
        for name, layer in layers.items():
            adapter_set.layers[name].load_metadata(layer)
        adapter_set.targets = targets
    else:
        adapter_set = inject(model, method.name, **options)
    adapter_set.load_state_dict(tensors)
    return adapter_set


def read_manifest(folder: str | os.PathLike) -> dict:
    """adapter.json of a package, checked for format and version."""
    folder = Path(folder)
    for name in (MANIFEST_NAME, TENSORS_NAME):
        if not (folder / name).is_file():
            raise AdapterError(f"{folder} is not an adapter package: {name} is missing.",
                               hint="Point to the folder that holds adapter.json and adapter.safetensors.")
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdapterError(f"{folder / MANIFEST_NAME} is not valid JSON: {exc}.",
                           hint="The package is damaged; save it again.") from None
    if not isinstance(manifest, dict):
        raise AdapterError(f"{folder / MANIFEST_NAME} is not an adapter manifest.", hint="The package is damaged; save it again.")
    if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
        raise AdapterError(f"{folder} has format {manifest.get('format')!r} v{manifest.get('format_version')}, "
                           f"this library reads {FORMAT!r} up to v{FORMAT_VERSION}.",
                           hint="Update DiffusionPEFT to read this adapter.")
    return manifest


def describe(folder: str | os.PathLike) -> dict:
    """Card for ``diffusion-peft info ADAPTER``: the manifest's facts plus a rank summary; see ``format_card``."""
    manifest = read_manifest(folder)
    ranks = [layer["effective_rank"] for layer in manifest["layers"].values()]
    return {
        "path": str(folder),
        "method": manifest["method"],
        "options": manifest["options"],
        "targets": manifest["targets"],
        "layers": len(ranks),
        "ranks": {"min": min(ranks), "max": max(ranks), "sum": sum(ranks)} if ranks else None,
        "counts": manifest["counts"],
        "recipe": manifest["recipe"],
        "base_fingerprint": manifest["base_model"]["fingerprint"],
        "provenance": manifest["provenance"],
        "size_bytes": (Path(folder) / TENSORS_NAME).stat().st_size,
    }


def format_card(card: Mapping[str, Any]) -> str:
    counts = card["counts"]
    lines = [
        f"Adapter      {card['path']}",
        f"Method       {card['method']}  {json.dumps(card['options'])}",
        f"Targets      {', '.join(card['targets']) or '(selection)'}  ({card['layers']} layers)",
        f"Trainable    {counts['total']:,} = adapter {counts['adapter']:,} + norms/biases {counts['extra']:,} "
        f"({100 * counts['share']:.2f} % of {counts['base']:,})",
        f"Base model   sha256 {card['base_fingerprint']}",
        f"File size    {card['size_bytes'] / 1e6:.2f} MB",
    ]
    if card["ranks"]:
        lines.insert(3, f"Ranks        min {card['ranks']['min']}, max {card['ranks']['max']}, "
                        f"sum {card['ranks']['sum']}")
    lines += [f"Provenance   {key}: {value}" for key, value in card["provenance"].items()]
    return "\n".join(lines)


def check_fingerprint_format(fingerprint: str) -> None:
    if not isinstance(fingerprint, str) or not _SHA256.fullmatch(fingerprint):
        raise AdapterError(f"The base-model fingerprint must be a sha256 hex string, got {fingerprint!r}.",
                           hint="Pass the sha256 of the base weights from the model package.")
