"""A cohort of simulated subjects, in memory (``simulate_cohort``) or on disk (``write_cohort``).

Subject i gets its own seed derived from (cohort seed, i), recorded in the manifest, so any one
subject can be re-simulated alone with ``simulate_subject(seed=…)``. Atrophy may be a range, drawn
uniformly per subject. On disk: ``OUT/sub-000/{t1,t2,…}.nii.gz``, ``tissue_labels.nii.gz``,
``lesion_labels.nii.gz``, and ``OUT/manifest.json`` + ``OUT/manifest.csv`` (paths relative to OUT).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np

from ..cancel import CancelToken
from ..errors import InputError
from ..events import EventSink, ListSink
from ..files import staged
from ..volumes import write_volume
from .subject import Subject, check_subject_options, random_stream, simulate_subject

MANIFEST_VERSION = 1


def parse_atrophy(atrophy) -> tuple[float, float]:
    """0.3 → (0.3, 0.3); '0.2:0.6' or (0.2, 0.6) → (0.2, 0.6); both ends in [0, 1], low ≤ high."""
    try:
        if isinstance(atrophy, str):
            parts = [float(p) for p in atrophy.split(":")]
        else:
            parts = [float(p) for p in np.atleast_1d(atrophy)]
        low, high = (parts[0], parts[0]) if len(parts) == 1 else parts
    except (TypeError, ValueError):
        low = high = float("nan")
    if not (0.0 <= low <= high <= 1.0):
        raise InputError(f"Atrophy {atrophy!r} is not a value or LOW:HIGH range within [0, 1].",
                         hint="Use for example 0.3, or 0.2:0.6 to draw each subject's atrophy from that range.")
    return low, high


def subject_seed(cohort_seed: int, index: int) -> int:
    """Seed of subject ``index`` in a cohort: 32 bits derived from (cohort_seed, index)."""
    return int(np.random.SeedSequence([cohort_seed, index]).generate_state(1)[0])


def check_cohort_options(n, seed, atrophy, subject_options: dict) -> tuple[float, float]:
    """Check every option before any work; return the atrophy range."""
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"Number of subjects {n!r} is not a positive integer.", hint="Use for example --n 16.")
    check_subject_options(seed=seed, **subject_options)
    return parse_atrophy(atrophy)


def simulate_cohort(n: int, seed: int = 0, atrophy=0.0, **subject_options) -> Iterator[Subject]:
    """``n`` subjects, simulated lazily. atrophy: a value or (low, high) range drawn per subject;
    ``subject_options`` go to :func:`simulate_subject` (shape, spacing, contrasts, lesions, snr, …).
    Options are checked at once (InputError), before the first subject."""
    low, high = check_cohort_options(n, seed, atrophy, subject_options)

    def subject(index: int) -> Subject:
        own_seed = subject_seed(seed, index)
        value = low + (high - low) * random_stream(own_seed, "atrophy").random() if high > low else low
        return simulate_subject(own_seed, atrophy=value, **subject_options)

    return (subject(index) for index in range(int(n)))


def write_subject(subject: Subject, folder: Path) -> dict[str, Path]:
    """Write one subject's images and label maps into ``folder``; return role → path."""
    volumes = {**subject.images, "tissue_labels": subject.tissue_labels, "lesion_labels": subject.lesion_labels}
    return {role: write_volume(volume, folder / f"{role}.nii.gz") for role, volume in volumes.items()}


def write_cohort(out_dir, n: int, seed: int = 0, atrophy=0.0, events: EventSink | None = None,
                 cancel: CancelToken | None = None, overwrite: bool = False, **subject_options) -> list[Path]:
    """Simulate ``n`` subjects into the new folder ``out_dir``; return [manifest.json, manifest.csv].

    Options and the folder are checked before the first subject; one progress event per subject.
    The cohort is written into a staged folder that appears under ``out_dir`` only when complete: a
    cancel request (checked between subjects) or a failure leaves nothing.
    """
    events = events or ListSink()
    cancel = cancel or CancelToken()
    final = Path(out_dir)
    subjects = simulate_cohort(n, seed, atrophy, **subject_options)
    with staged(final, overwrite=overwrite, folder=True) as out_dir:
        manifest = _write_subjects(out_dir, subjects, n, seed, atrophy, events, cancel)
        (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
        (out_dir / "manifest.csv").write_text(manifest_csv(manifest["subjects"]))
    outputs = [final / "manifest.json", final / "manifest.csv"]
    for path in outputs:
        events.artifact("table", str(path), "manifest")
    return outputs


def _write_subjects(out_dir: Path, subjects, n: int, seed: int, atrophy, events: EventSink,
                    cancel: CancelToken) -> dict:
    """Write every subject's volumes into ``out_dir``; return the manifest."""
    records = []
    digits = max(3, len(str(n - 1)))
    events.progress("simulate", 0, n)
    for index, subject in enumerate(subjects):
        cancel.raise_if_requested("Simulation")
        subject_id = f"sub-{index:0{digits}d}"
        files = write_subject(subject, out_dir / subject_id)
        records.append({"id": subject_id, **subject.params,
                        "files": {role: path.relative_to(out_dir).as_posix() for role, path in files.items()}})
        events.progress("simulate", index + 1, n)
    return {"format_version": MANIFEST_VERSION, "generator": "DiffusionPEFTLib.simulate",
            "cohort_seed": seed, "n": n, "atrophy_range": list(parse_atrophy(atrophy)), "subjects": records}


def manifest_csv(records: list[dict]) -> str:
    """One row per subject: id, seed, atrophy, lesions, tissue volumes (mL) and file paths."""
    classes = sorted({name for record in records for name in record["volumes_ml"]})
    roles = list(records[0]["files"]) if records else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "seed", "atrophy", "lesions", *[f"{c}_ml" for c in classes], *roles])
    for record in records:
        writer.writerow([record["id"], record["seed"], round(record["atrophy"], 6), record["lesions"],
                         *[record["volumes_ml"].get(c, 0.0) for c in classes],
                         *[record["files"][role] for role in roles]])
    return buffer.getvalue()
