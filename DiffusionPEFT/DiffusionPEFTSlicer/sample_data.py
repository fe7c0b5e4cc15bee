"""The simulated MRI volumes shipped in ``Resources/SampleData`` (whatever is there, found by glob)."""

from __future__ import annotations

from pathlib import Path

from .library_path import sharedResourcesFolder

SAMPLE_DATA_SUBFOLDER = "SampleData"
SAMPLE_DATA_CATEGORY = "DiffusionPEFT"
VOLUME_PATTERNS = ("*.nii.gz", "*.nii", "*.nrrd")


def volumeName(path: Path) -> str:
    """File name without its volume extension (``t1_001.nii.gz`` → ``t1_001``)."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def sampleVolumes(folder: Path | None = None) -> list[Path]:
    """The shipped sample volumes, sorted by name (none when the folder does not exist yet)."""
    folder = folder or sharedResourcesFolder() / SAMPLE_DATA_SUBFOLDER
    return sorted({path for pattern in VOLUME_PATTERNS for path in Path(folder).glob(pattern)})


def thumbnailFor(volume: Path, fallback: Path) -> Path:
    """``<name>.png`` beside the volume when shipped, else ``fallback`` (the module icon)."""
    thumbnail = volume.with_name(volumeName(volume) + ".png")
    return thumbnail if thumbnail.is_file() else fallback
