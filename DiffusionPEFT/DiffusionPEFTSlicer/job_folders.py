"""The job folders this module made: subfolders of its jobs folder that hold a ``job.json``.

They keep NIfTI copies of the scans that went into each job (an audit trail, and patient data), so
the panel says where they are and offers to delete them; nothing else is ever deleted.
"""

from __future__ import annotations

from pathlib import Path

JOB_FILE = "job.json"


def jobFolders(root: Path, keep: list[Path] = ()) -> list[Path]:
    """Direct subfolders of ``root`` (no links) that hold a job.json, sorted by name (= by start time),
    without those that are or contain a path of ``keep``."""
    root = Path(root)
    if not root.is_dir():
        return []
    kept = [Path(path).resolve() for path in keep]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and (p / JOB_FILE).is_file())
    return [f for f in folders if not any(path == f.resolve() or f.resolve() in path.parents for path in kept)]


def folderBytes(folders: list[Path]) -> int:
    """Total size of the files in ``folders``."""
    return sum(f.stat().st_size for folder in folders for f in Path(folder).rglob("*") if f.is_file())
