"""The simulated MRI volumes shipped in the module's ``Resources/SampleData`` (found by glob;
``scripts/make_sample_data.sh`` regenerates them)."""

from __future__ import annotations

from pathlib import Path

from .library_path import MODULE_FOLDER

SAMPLE_DATA_FOLDER = MODULE_FOLDER / "Resources" / "SampleData"
SAMPLE_DATA_CATEGORY = "DiffusionPEFT"
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd")


def volumeName(path: Path) -> str:
    """File name without its volume extension (``t1_001.nii.gz`` → ``t1_001``)."""
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def sampleVolumes(folder: Path = SAMPLE_DATA_FOLDER) -> list[Path]:
    """The shipped sample volumes, sorted by name."""
    return sorted({path for suffix in VOLUME_SUFFIXES for path in Path(folder).glob(f"*{suffix}")})


def thumbnailFor(volume: Path, fallback: Path) -> Path:
    """``<name>.png`` beside the volume when shipped, else ``fallback`` (the module icon)."""
    thumbnail = volume.with_name(volumeName(volume) + ".png")
    return thumbnail if thumbnail.is_file() else fallback
