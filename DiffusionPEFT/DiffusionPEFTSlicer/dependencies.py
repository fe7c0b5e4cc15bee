"""Python dependencies of the backend inside Slicer, checked as SlicerMONAIAuto3DSeg does.

torch first, through the PyTorch extension (PyTorchUtils picks the CUDA build for the GPU) and with
a minimum version; then the rest of ``Resources/requirements.txt`` with torch pinned to the
installed build, so that pip cannot replace a CUDA torch by a CPU wheel from PyPI. The rest goes
through ``slicer.packaging.pip_ensure`` (Slicer 5.12+) or a confirmed ``slicer.util.pip_install``
(5.10). Versions are read from package metadata: torch is never imported here. Only ever called
from a button, never at import time.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import tempfile
from pathlib import Path

import slicer

from .library_path import MODULE_FOLDER

REQUIREMENTS_FILE = MODULE_FOLDER / "Resources" / "requirements.txt"
MINIMUM_TORCH = "2.8"  # MONAI 1.6 needs torch 2.8
TORCH_REQUIREMENT = f">={MINIMUM_TORCH}"
REQUESTER = "DiffusionPEFT"


def requirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """Requirement lines of ``requirements.txt`` (comments and blanks dropped)."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [line for line in lines if line]


def distributionName(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]


def installedVersion(distribution: str) -> str | None:
    """The installed version of ``distribution`` (from its metadata, nothing imported), or None."""
    importlib.invalidate_caches()
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def releaseOf(version: str) -> tuple[int, ...]:
    """The numeric release of a version: ``2.13.0+cu128`` → (2, 13, 0)."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0].split("rc")[0])[:3])


def missingRequirements(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """Requirements of ``requirements.txt`` whose distribution is not installed (versions are left to pip)."""
    return [r for r in requirements(path) if installedVersion(distributionName(r)) is None]


def missingDistributions(path: Path = REQUIREMENTS_FILE) -> list[str]:
    """:func:`missingRequirements`, and torch when it is missing or too old."""
    missing = missingRequirements(path)
    torch = installedVersion("torch")
    if torch is None:
        missing.append(f"torch{TORCH_REQUIREMENT}")
    elif releaseOf(torch) < releaseOf(MINIMUM_TORCH):
        missing.append(f"torch{TORCH_REQUIREMENT} (installed: {torch})")
    return missing


def ensureTorch() -> str:
    """The installed torch version; installs torch through PyTorchUtils (it asks first) when missing.

    RuntimeError when the PyTorch extension is absent, the user declines, or torch is too old.
    """
    try:
        import PyTorchUtils
    except ImportError:
        raise RuntimeError("The PyTorch extension is needed. Install it from the Extensions Manager, "
                           "restart Slicer and try again.") from None
    version = installedVersion("torch")
    if version is None:
        installed = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=True,
                                                                  torchVersionRequirement=TORCH_REQUIREMENT)
        version = installedVersion("torch") if installed is not None else None
        if version is None:
            raise RuntimeError("PyTorch was not installed: DiffusionPEFT cannot run jobs without it.")
    if releaseOf(version) < releaseOf(MINIMUM_TORCH):
        raise RuntimeError(f"PyTorch {version} is too old: DiffusionPEFT needs torch {TORCH_REQUIREMENT}. In the "
                           f"PyTorch Utils module set the version requirement to {TORCH_REQUIREMENT}, reinstall "
                           "PyTorch and restart Slicer.")
    return version


def torchConstraintFile(version: str) -> Path:
    """A pip constraints file that pins torch to ``version`` (pip then never touches torch)."""
    folder = Path(tempfile.mkdtemp(prefix="DiffusionPEFT-pip-", dir=slicer.app.temporaryPath))
    path = folder / "constraints.txt"
    path.write_text(f"torch=={version}\n")
    return path


def slicerPackaging():
    """``slicer.packaging`` (Slicer 5.12+; a submodule, imported explicitly), or None on 5.10."""
    try:
        return importlib.import_module("slicer.packaging")
    except ImportError:
        return None


def installDependencies() -> None:
    """Install what is missing, asking the user first; RuntimeError when they decline."""
    constraints = torchConstraintFile(ensureTorch())
    packaging = slicerPackaging()
    if packaging is not None:
        packaging.pip_ensure(packaging.load_requirements(str(REQUIREMENTS_FILE)), constraints=str(constraints),
                             requester=REQUESTER)
        return
    missing = missingRequirements()
    if not missing:
        return
    if not slicer.util.confirmOkCancelDisplay(
            "DiffusionPEFT needs these Python packages:\n" + "\n".join(missing) + "\n\nInstall them now?"):
        raise RuntimeError("Installation declined: DiffusionPEFT cannot run jobs without its dependencies.")
    slicer.util.pip_install([*missing, "--constraint", str(constraints)])
