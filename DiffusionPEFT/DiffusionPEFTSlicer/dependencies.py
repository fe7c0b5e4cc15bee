"""Python dependencies of the backend inside Slicer: torch through the PyTorch extension
(PyTorchUtils, right CUDA build), the rest from ``Resources/requirements.txt`` through
``slicer.packaging.pip_ensure`` (Slicer 5.12+) or a confirmed ``slicer.util.pip_install`` (5.10).
Only ever called from a button, never at import time.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import slicer

from .library_path import MODULE_FOLDER

REQUIREMENTS_FILE = MODULE_FOLDER / "Resources" / "requirements.txt"
TORCH_REQUIREMENT = ">=2.4"


def requirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """Requirement lines of ``requirements.txt`` (comments and blanks dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line]


def distributionName(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def missingDistributions(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """Requirements whose distribution is not installed at all (versions are left to pip)."""
    missing = []
    for requirement in requirements(path) + [f"torch{TORCH_REQUIREMENT}"]:
        try:
            importlib.metadata.version(distributionName(requirement))
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing


def installDependencies() -> None:
    """Install what is missing, asking the user first; raises RuntimeError when they decline."""
    try:
        import PyTorchUtils
    except ImportError:
        raise RuntimeError("The PyTorch extension is needed. Install it from the Extensions Manager, "
                           "restart Slicer and try again.") from None
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not torchLogic.torchInstalled():
        torchLogic.installTorch(askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT)
    packaging = getattr(slicer, "packaging", None)
    if packaging is not None and hasattr(packaging, "pip_ensure"):
        packaging.pip_ensure(packaging.load_requirements(str(REQUIREMENTS_FILE)), requester="DiffusionPEFT")
        return
    missing = [r for r in missingDistributions() if distributionName(r) != "torch"]
    if missing and not slicer.util.confirmOkCancelDisplay(
            "DiffusionPEFT needs these Python packages:\n" + "\n".join(missing) + "\n\nInstall them now?"):
        raise RuntimeError("Installation declined: DiffusionPEFT cannot run jobs without its dependencies.")
    if missing:
        slicer.util.pip_install(missing)
