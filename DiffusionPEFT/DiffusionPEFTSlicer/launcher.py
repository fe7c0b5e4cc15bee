"""How the module starts the backend: ``PythonSlicer -m DiffusionPEFTLib …`` inside Slicer,
``sys.executable -m DiffusionPEFTLib …`` elsewhere (batch Python, tests)."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field

from .library_path import LIBRARY_PACKAGE, libraryRoot


@dataclass
class BackendLauncher:
    """``python``: the interpreter command; ``environment``: the process environment (PYTHONPATH
    includes the folder that holds DiffusionPEFTLib, so the job folder can be the working directory)."""

    python: list[str]
    environment: dict[str, str] = field(default_factory=dict, repr=False)

    def command(self, *arguments: str) -> list[str]:
        return [*self.python, "-m", LIBRARY_PACKAGE, *arguments]


def backendEnvironment() -> dict[str, str]:
    """The current environment with the library root first on PYTHONPATH and unbuffered output."""
    environment = dict(os.environ)
    paths = [str(libraryRoot())] + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def defaultLauncher() -> BackendLauncher:
    """``PythonSlicer`` (beside the running interpreter or on PATH, as inside Slicer), else this Python."""
    searchPath = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    pythonSlicer = shutil.which("PythonSlicer", path=searchPath)
    return BackendLauncher([pythonSlicer or sys.executable], backendEnvironment())
