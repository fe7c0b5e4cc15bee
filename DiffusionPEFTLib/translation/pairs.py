"""Paired training data for translation: which source volume goes with which target volume.

Three ways to say it (``find_pairs``):
- one **simulator manifest** (``cohort/manifest.json``) with the two contrast keys, e.g. ``t1`` → ``flair``;
- one **pairs manifest**: a ``.csv`` with columns ``source,target`` (paths relative to the manifest), or a
  ``.json`` ``{"pairs": [{"source": …, "target": …}, …]}``;
- **two folders** of sources and targets, matched by subject: a volume's subject is the first part of its
  path inside its folder (``sub-001.nii.gz`` → ``sub-001``; ``sub-001/t1.nii.gz`` → ``sub-001``).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..errors import InputError
from ..training import find_volume_files
from ..volumes.io import volume_suffix

PAIRS_HINT = ("Give a simulator manifest with --source/--target (e.g. cohort/manifest.json --source t1 --target "
              "flair), a pairs manifest (.csv with columns source,target), or two folders SOURCES TARGETS.")


def find_pairs(given: list[str | Path], source_key: str | None = None,
               target_key: str | None = None) -> tuple[list[Path], list[Path]]:
    """(sources, targets), equally long and in matching order."""
    given = [Path(p) for p in given]
    if len(given) == 2 and all(p.is_dir() for p in given):
        return _folder_pairs(*given)
    if len(given) == 1 and given[0].is_file() and given[0].suffix.lower() in (".json", ".csv"):
        manifest = given[0]
        if _is_simulator_manifest(manifest):
            if not (source_key and target_key):
                raise InputError(f"{manifest.name} is a simulator manifest: say which contrasts to pair.",
                                 hint="Add --source t1 --target flair (any two of the manifest's contrasts).")
            return (find_volume_files([manifest], contrast=source_key),
                    find_volume_files([manifest], contrast=target_key))
        return _manifest_pairs(manifest)
    missing = [str(p) for p in given if not p.exists()]
    raise InputError(f"Paired data not found: {', '.join(missing)}." if missing else
                     "These sources do not describe (source, target) pairs.", hint=PAIRS_HINT)


def _is_simulator_manifest(path: Path) -> bool:
    if path.suffix.lower() != ".json":
        return False
    try:
        spec = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"Manifest {path.name} is not valid UTF-8 JSON.", hint=PAIRS_HINT) from None
    return isinstance(spec, dict) and "subjects" in spec


def _manifest_pairs(path: Path) -> tuple[list[Path], list[Path]]:
    try:
        text = path.read_bytes().decode("utf-8")
        if path.suffix.lower() == ".csv":
            rows = list(csv.DictReader(io.StringIO(text)))
            pairs = [(row["source"], row["target"]) for row in rows]
        else:
            pairs = [(entry["source"], entry["target"]) for entry in json.loads(text)["pairs"]]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise InputError(f"{path.name} is not a pairs manifest.", hint=PAIRS_HINT) from None
    if not pairs or not all(isinstance(v, str) and v for pair in pairs for v in pair):
        raise InputError(f"{path.name} lists no (source, target) pairs.", hint=PAIRS_HINT)
    resolved = [[(path.parent / v) if not Path(v).is_absolute() else Path(v) for v in pair] for pair in pairs]
    return [s for s, _ in resolved], [t for _, t in resolved]


def _folder_pairs(sources: Path, targets: Path) -> tuple[list[Path], list[Path]]:
    by_subject = [_subjects(folder) for folder in (sources, targets)]
    unmatched = sorted(set(by_subject[0]) ^ set(by_subject[1]))
    if unmatched:
        raise InputError(f"{len(unmatched)} subjects are in only one of {sources} and {targets} "
                         f"(e.g. {', '.join(unmatched[:3])}).",
                         hint="Each subject needs one source and one target volume with the same file or folder name.")
    subjects = sorted(by_subject[0])
    return [by_subject[0][s] for s in subjects], [by_subject[1][s] for s in subjects]


def _subjects(folder: Path) -> dict[str, Path]:
    """Subject → volume in ``folder``; InputError when a subject has several volumes."""
    found: dict[str, Path] = {}
    for path in find_volume_files([folder]):
        first = path.relative_to(folder.resolve()).parts[0]
        subject = first[: -len(volume_suffix(first))] if len(path.relative_to(folder.resolve()).parts) == 1 else first
        if subject in found:
            raise InputError(f"Subject {subject} has several volumes in {folder} ({found[subject].name}, {path.name}).",
                             hint="Keep one volume per subject in each folder, or use a pairs manifest.")
        found[subject] = path
    return found
