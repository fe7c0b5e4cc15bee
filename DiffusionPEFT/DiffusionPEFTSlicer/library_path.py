"""Where DiffusionPEFTLib lives: next to the module (installed extension) or one folder up (source tree)."""

from __future__ import annotations

import sys
from pathlib import Path

MODULE_FOLDER = Path(__file__).resolve().parents[1]
LIBRARY_PACKAGE = "DiffusionPEFTLib"


def libraryRoot() -> Path:
    """The folder that holds ``DiffusionPEFTLib/`` (goes on ``sys.path`` and on the backend's PYTHONPATH).

    An installed extension has it beside ``DiffusionPEFT.py`` in ``qt-scripted-modules/``; a source
    checkout added with "Add module path" has it in the repository root.
    """
    for candidate in (MODULE_FOLDER, MODULE_FOLDER.parent):
        if (candidate / LIBRARY_PACKAGE / "__init__.py").is_file():
            return candidate
    raise ImportError(f"{LIBRARY_PACKAGE} was found neither in {MODULE_FOLDER} nor in {MODULE_FOLDER.parent}.")


def sharedResourcesFolder() -> Path:
    """``Resources/`` beside DiffusionPEFTLib: the shipped models and the simulator's anatomy.

    In an installed extension this is the module's own Resources folder (all resources share one tree).
    """
    return libraryRoot() / "Resources"


def ensureLibraryImportable() -> Path:
    """Put :func:`libraryRoot` on ``sys.path`` (needed when the module runs from the source tree)."""
    root = libraryRoot()
    if str(root) not in sys.path:
        sys.path.append(str(root))
    return root
