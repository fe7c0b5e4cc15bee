"""The study's figures: trainable parameters vs FID (``pareto.png``) and one sample montage per method.

Montages show the first seed's samples (the only ones kept, in ``OUT/samples/CELL``): held-out reals of
each class, the base model's samples, then each budget's samples per class, middle axial slices, each
row windowed to its own 1st–99th percentile (``plots.save_montage``).
"""

from __future__ import annotations

from pathlib import Path

from ..plots import save_montage, save_pareto
from ..training import find_volume_files
from ..volumes import read_volume
from .cohort import cohort_folder
from .study import CLASSES, Cell, finished

COLUMNS = 4  # volumes per montage row


def save_pareto_plot(rows: list[dict], path: Path, settings: dict) -> Path:
    """Every method × budget row at (trainable parameters, FID mean) with ± std bars; base as a band."""
    key = "assessment.fid_sample_real"
    points = [{"label": row["method"], "group": f"{row['budget']} steps", "x": row["trainable"]["mean"],
               "y": row[key]["mean"], "yerr": row[key]["std"]}
              for row in rows if row["method"] != "base" and key in row and row.get("trainable")]
    base = next((row[key] for row in rows if row["method"] == "base" and key in row), None)
    reference = ("base model (no fine-tuning)", base["mean"], base["std"]) if base else None
    return save_pareto(points, path, "trainable parameters per generator (log)",
                       "FID to held-out reals (lower is better)", reference,
                       title=f"{settings['model']} → {settings['target'].upper()}: mean ± std over seeds",
                       overwrite=True)


def sample_volumes(folder: Path, prefix: str) -> list:
    return [read_volume(path).data for path in sorted(folder.glob(f"{prefix}_*.nii.gz"))[:COLUMNS]]


def save_montages(out: Path, state: dict, seed: int) -> list[Path]:
    """``montages/METHOD.png`` for every method with a finished cell at ``seed``; return the paths."""
    settings = state["settings"]
    reals = {}
    for label, name in enumerate(CLASSES):
        files = find_volume_files([cohort_folder(out / "data", "heldout", label) / "manifest.json"],
                                  contrast=settings["target"])
        reals[f"held-out {name}"] = [read_volume(path).data for path in files[:COLUMNS]]
    cells = finished(state)
    base_folder = out / "samples" / Cell("base", "base", 0, seed).id
    base = {"base model": sample_volumes(base_folder, "sample")} if base_folder.is_dir() else {}
    by_method: dict[str, list[dict]] = {}
    for record in cells.values():
        if record["kind"] == "method" and record["seed"] == seed and (out / "samples" / record["id"]).is_dir():
            by_method.setdefault(record["method"], []).append(record)
    paths = []
    for method, records in sorted(by_method.items()):
        rows = {**reals, **base}
        for record in sorted(records, key=lambda r: r["budget"]):
            for name in CLASSES:
                folder = out / "samples" / record["id"]
                rows[f"{method}, {record['budget']} steps: {name}"] = sample_volumes(folder, name)
        paths.append(save_montage({k: v for k, v in rows.items() if v}, out / "montages" / f"{method}.png",
                                  title=f"{method}: samples of seed {seed}", overwrite=True))
    return paths
