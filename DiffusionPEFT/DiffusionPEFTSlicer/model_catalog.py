"""Which model packages the panel offers: those shipped in ``Resources/Models`` and a user folder.

A model package is a folder with ``model.json`` (+ weights) or a ``.zip`` of one (DESIGN.md §3).
Importing a model or saving an adapter copies its package into a folder, never over an existing one.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .library_path import sharedResourcesFolder

SHIPPED_MODELS_SUBFOLDER = "Models"
DEFAULT_USER_MODELS_FOLDER = Path.home() / "DiffusionPEFT" / "models"
USER_MODELS_SETTING = "DiffusionPEFT/userModelsFolder"
MODEL_DESCRIPTION_FILE = "model.json"
ADAPTER_DESCRIPTION_FILE = "adapter.json"


@dataclass(frozen=True)
class ModelEntry:
    """A model the user can pick: a display name, where it comes from, and its package path."""

    name: str
    origin: str
    path: Path


def isModelPackage(path: Path) -> bool:
    return (path.is_dir() and (path / MODEL_DESCRIPTION_FILE).is_file()) or (path.is_file() and path.suffix == ".zip")


def isAdapterPackage(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / ADAPTER_DESCRIPTION_FILE).is_file()


def listModels(userFolder: Path | None) -> list[ModelEntry]:
    """Shipped models first, then the user's, each sorted by name; missing folders are skipped."""
    entries = []
    for origin, folder in (("shipped", sharedResourcesFolder() / SHIPPED_MODELS_SUBFOLDER), ("user", userFolder)):
        if folder is None or not Path(folder).is_dir():
            continue
        for path in sorted(Path(folder).iterdir()):
            if isModelPackage(path):
                entries.append(ModelEntry(path.stem if path.is_file() else path.name, origin, path))
    return entries


def copyPackage(source: Path, folder: Path) -> Path:
    """Copy a package (folder or file) into ``folder`` under a free name; return the copy."""
    source, folder = Path(source), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / source.name
    counter = 2
    while target.exists():
        target = folder / f"{source.stem}-{counter}{source.suffix if source.is_file() else ''}"
        counter += 1
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target


def importModelPackage(source: Path, userFolder: Path) -> Path:
    """Copy a model package (folder, its model.json, or a .zip) into the user models folder."""
    source = Path(source)
    if source.name == MODEL_DESCRIPTION_FILE:
        source = source.parent
    if not isModelPackage(source):
        raise ValueError(f"{source} is not a model package: a folder with {MODEL_DESCRIPTION_FILE} or a .zip of one.")
    return copyPackage(source, userFolder)
