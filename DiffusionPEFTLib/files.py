"""The output rule, in one place (DESIGN.md §3 *Outputs*); every command, the job runner and the API use it.

1. Before any work, :func:`check_outputs` refuses an output that is, contains or lies inside an input
   (or another output), a name that cannot be encoded, a location that cannot be written, and an
   existing output unless ``overwrite`` is asked *and* the existing thing is one this tool writes
   (:func:`check_replaceable`).
2. Outputs are written under a temporary sibling name (:func:`staged`) and renamed onto the final
   name only when complete. A failed or cancelled run removes its temporary output and any parent
   folder it created; it never removes anything else.
3. A folder output carries a marker (``.diffusion-peft-output.json``) listing every file written into
   it, so a later ``--overwrite`` can prove the folder holds nothing but this tool's files.
4. Checkpoint folders (:func:`work_folder`) survive a cancel (they are what ``--resume`` continues)
   but are removed when the run that created them fails before writing a checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .errors import InputError, JobCancelled

MARKER_NAME = ".diffusion-peft-output.json"
# folders written before markers existed are recognised by their own manifest and hold only these files
LEGACY_PACKAGES = {"model.json": {"model.json", "weights.safetensors"},
                   "adapter.json": {"adapter.json", "adapter.safetensors"}}
WORK_FILES = ("checkpoint.pt", "history.json", "loss_curve.png")  # what a training run keeps in its work folder


@dataclass(frozen=True)
class Output:
    """A path a command will write: a file, or a folder (``folder=True``)."""

    path: Path
    folder: bool = False

    @classmethod
    def of(cls, path: str | os.PathLike, folder: bool = False) -> "Output":
        return cls(Path(path), folder)


def check_outputs(outputs: Iterable[Output], inputs: Iterable[str | os.PathLike], overwrite: bool) -> None:
    """Apply the output rule before any work (see the module docstring); raise InputError on the first breach."""
    outputs = list(outputs)
    for index, output in enumerate(outputs):
        check_apart(output.path, inputs)
        check_apart(output.path, [other.path for other in outputs[index + 1:]], role="output")
        check_name(output.path)
        if os.path.lexists(output.path):
            if not overwrite and not _is_empty_folder(output.path, output.folder):
                raise InputError(f"{output.path} already exists.",
                                 hint="Choose another output name, or add --overwrite to replace it.")
            check_replaceable(output)
        check_location(output.path)


def check_apart(path: Path, others: Iterable[str | os.PathLike | None], role: str = "input") -> None:
    """Refuse ``path`` when it is, contains or lies inside one of ``others`` (symlinks resolved)."""
    target = _absolute(Path(path))
    for other in others:
        if other is not None:
            _refuse_overlap(Path(path), target, Path(other), role)


def check_name(path: Path) -> None:
    """Refuse a name the file system or the libraries writing it cannot encode (e.g. invalid UTF-8)."""
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise InputError(f"The output name {shown} is not valid UTF-8.",
                         hint="Rename it with plain letters, digits, '-', '_' and '.'.") from None
    if not Path(text).name or Path(text).name in (".", ".."):
        raise InputError(f"'{text}' is not a name for an output.", hint="Give a file or folder name, e.g. --out result.")


def check_location(path: Path) -> None:
    """The nearest existing parent of ``path`` must be a folder that accepts new files (nothing is left there)."""
    parent = _absolute(path).parent
    while not os.path.lexists(parent):
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"Cannot write {path}: {parent} is a file, not a folder.",
                         hint="Choose an output path in a folder you can write to.")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"Cannot write to the output folder {parent}: {exc.strerror or exc}.",
                         hint="Choose an output path in a folder you can write to.") from None


def check_replaceable(output: Output) -> None:
    """Refuse to replace anything this tool would not have written at that path."""
    path = output.path
    if path.is_symlink() or path.is_dir() != output.folder:
        what = "a link" if path.is_symlink() else ("a folder" if path.is_dir() else "a file")
        raise InputError(f"{path} is {what}; this output would replace it with "
                         f"{'a folder' if output.folder else 'a file'}.", hint="Choose another output name.")
    foreign = _foreign_files(path) if output.folder else ([] if _looks_written_here(path) else [path.name])
    if foreign:
        listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise InputError(f"{path} holds files DiffusionPEFT did not write ({listed}); it is never replaced.",
                         hint="Choose another output name, or move those files away first.")


@contextlib.contextmanager
def staged(path: str | os.PathLike, *, overwrite: bool = False, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; rename it onto ``path`` when the block succeeds.

    On any exception the temporary output and the parent folders this call created are removed.
    """
    final = Path(path)
    check_outputs([Output(final, folder)], (), overwrite)
    created = _make_parents(final.parent)
    temporary = partial_name(final)
    try:
        if folder:
            temporary.mkdir()
        yield temporary
        if folder:
            _write_marker(temporary)
        _move_into_place(temporary, final, folder)
    except BaseException:
        _remove_created(temporary)
        for parent in reversed(created):
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


@contextlib.contextmanager
def work_folder(path: str | os.PathLike, keep_if: str, kind: str = "work") -> Iterator[Path]:
    """A folder for checkpoints and logs, made (with a marker of ``kind``) if missing.

    When the block fails and this call made the folder, it is removed unless it now holds ``keep_if``
    (the checkpoint a later ``--resume`` continues); a cancel always keeps it. A ``kind`` other than
    "work" (e.g. a resumable study) lists no files in its marker, so no other output ever replaces it.
    """
    path = Path(path)
    existed = path.exists()
    created = [] if existed else _make_parents(path)
    try:
        if not existed:
            (path / MARKER_NAME).write_text(json.dumps({"written_by": "DiffusionPEFT", "kind": kind}) + "\n")
        yield path
    except JobCancelled:
        raise
    except BaseException:
        if not existed and not (path / keep_if).exists():
            shutil.rmtree(path, ignore_errors=True)
            for parent in reversed(created):
                with contextlib.suppress(OSError):
                    parent.rmdir()
        raise


def is_work_folder(path: Path) -> bool:
    """Marked as a work folder, or (made before markers existed) holding only a run's work files."""
    if _marker(path).get("kind") == "work":
        return True
    names = _files_under(path)
    return bool(names) and all(name in WORK_FILES for name in names)


def partial_name(path: Path) -> Path:
    """Temporary sibling of ``path`` that keeps its full extension (``.nii.gz`` stays last)."""
    suffix = "".join(path.suffixes) if not path.name.startswith(".") else ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.partial-{os.getpid()}{suffix}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """:func:`staged` for one file."""
    with staged(path, overwrite=overwrite) as temporary:
        yield temporary


def write_text_atomic(path: str | os.PathLike, text: str, overwrite: bool = False) -> Path:
    with atomic_output(path, overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


# --- helpers -----------------------------------------------------------------------------------

def _absolute(path: Path) -> Path:
    """Absolute, symlinks resolved (so a link to an input counts as that input)."""
    return Path(os.path.realpath(path))


def _refuse_overlap(shown: Path, target: Path, other: Path, role: str) -> None:
    other_abs = _absolute(other)
    if target == other_abs:
        relation = f"is the {role} {other}"
    elif other_abs.is_relative_to(target):
        relation = f"contains the {role} {other}"
    elif target.is_relative_to(other_abs):
        relation = f"lies inside the {role} {other}"
    else:
        return
    raise InputError(f"The output {shown} {relation}; it would be overwritten or deleted.",
                     hint="Write outputs to a new path outside every input, e.g. --out results/new_name.")


def _is_empty_folder(path: Path, folder: bool) -> bool:
    return folder and path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _marker(path: Path) -> dict:
    try:
        marker = json.loads((path / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) and marker.get("written_by") == "DiffusionPEFT" else {}


def _files_under(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def _foreign_files(path: Path) -> list[str]:
    """Files inside folder ``path`` that this tool did not list as written there."""
    present = [name for name in _files_under(path) if name != MARKER_NAME]
    marker = _marker(path)
    if marker.get("kind") == "work":
        return [name for name in present if name not in WORK_FILES]
    if marker:
        written = set(marker.get("files", []))
    else:
        written = next((files for manifest, files in LEGACY_PACKAGES.items() if manifest in present), set())
    return [name for name in present if name not in written]


def _looks_written_here(path: Path) -> bool:
    """Whether the existing file is of the kind its name says, i.e. one this tool could have written."""
    name = path.name.lower()
    magic = {".png": b"\x89PNG", ".npy": b"\x93NUMPY"}
    try:
        if name.endswith(tuple(magic)):
            with path.open("rb") as handle:
                return handle.read(8).startswith(magic[path.suffix.lower()])
        if name.endswith(".json"):
            json.loads(path.read_text())
            return True
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                return any(Path(m).name == "model.json" for m in archive.namelist())
        from .volumes.io import VOLUME_SUFFIXES, read_volume_header  # here: volumes.io writes through this module

        if name.endswith(VOLUME_SUFFIXES):
            read_volume_header(path)
            return True
    except Exception:  # unreadable or of another kind: not ours to replace
        return False
    return False


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and missing parents; return those created, outermost first."""
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    for parent in reversed(missing):
        parent.mkdir()
    return list(reversed(missing))


def _write_marker(folder: Path) -> None:
    files = [name for name in _files_under(folder) if name != MARKER_NAME]
    (folder / MARKER_NAME).write_text(json.dumps({"written_by": "DiffusionPEFT", "files": files}, indent=1) + "\n")


def _move_into_place(temporary: Path, final: Path, folder: bool) -> None:
    """Rename ``temporary`` onto ``final``; an existing folder is moved aside first and removed after."""
    if not (folder and os.path.lexists(final)):
        os.replace(temporary, final)
        return
    check_replaceable(Output(final, folder=True))  # again, right before it goes
    aside = final.with_name(f".{final.name}.replaced-{os.getpid()}")
    os.replace(final, aside)
    os.replace(temporary, final)
    shutil.rmtree(aside, ignore_errors=True)


def _remove_created(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        path.unlink()
