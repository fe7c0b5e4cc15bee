"""``info PATH``: the card of a model package (or of an adapter package)."""

from __future__ import annotations

import json
from pathlib import Path

from ..models import read_model_config
from ..models.package import WEIGHTS_NAME

NAME = "info"
HELP = "Show what a model or adapter package holds."


def add_arguments(parser) -> None:
    parser.add_argument("path", help="model package (folder/.zip) or adapter package folder")
    parser.add_argument("--json", action="store_true", help="print the card as JSON on stdout")


def model_card(path: Path) -> dict:
    config = read_model_config(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    arguments = config.unet
    return {
        "type": "model",
        "path": str(path),
        "architecture": arguments,
        "parameters": _count_parameters(arguments),
        "size_mb": round(weights.stat().st_size / 1e6, 2) if weights.exists() else None,
        "grid": {"shape": list(config.input.shape), "spacing_mm": list(config.input.spacing),
                 "orientation": config.input.orientation},
        "intensity": config.input.intensity,
        "condition_classes": list(config.input.condition_classes),
        "task": config.task,
        "scheduler": config.schedule.__dict__ if config.schedule else None,
        "translation": config.translation,
        **({"latent": config.latent} if config.latent is not None else {}),
        "fingerprint": config.weights_sha256,
        "provenance": config.provenance,
    }


def _count_parameters(arguments: dict) -> int:
    import torch

    from ..models.diffusion_model import build_unet

    with torch.device("meta"):
        return sum(p.numel() for p in build_unet(arguments).parameters())


def paths(args):
    return [args.path], []


def run(args, context):
    path = Path(args.path)
    if path.is_dir() and (path / "adapter.json").exists():
        from ..adapters.package import describe

        card = describe(path)
    else:
        card = model_card(path)
    if args.json:
        context.events.document("card", card)
    else:
        for key, value in card.items():
            context.events.log(f"{key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}")
    return []
