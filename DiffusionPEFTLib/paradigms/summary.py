"""The study's summary: one row per method × budget with mean ± std over seeds, as a table and a figure.

std is the sample standard deviation (n − 1) over the generator seeds; with one seed it is unknown and
no difference is called inside or outside the noise. A generation metric's difference from the base
model is *inside the noise* when the two mean ± std intervals overlap; a downstream gain is inside the
noise when its interval includes 0. Between methods the same rule names, per budget, the best method of a
ranked column and every method the seeds cannot tell from it. The gain of a cell is the mean over classifier seeds of (accuracy with
synthetic volumes − accuracy of the real-only classifier of the same classifier seed), i.e. paired by seed.
Outputs: ``paradigms.md``, the ``summary`` of ``paradigms.json``, ``pareto.png`` and ``montages/METHOD.png``.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..adapters.registry import METHODS
from ..errors import InputError
from ..files import partial_name, write_text_atomic
from .figures import save_montages, save_pareto_plot
from .study import CLASSES, STATE_NAME, finished


@dataclass(frozen=True)
class Column:
    """A summarised number: ``key`` is a path into a cell record ("assessment.fid_sample_real")."""

    key: str
    label: str
    digits: str
    baseline: str = "base"  # "base": compare with the base model's row; "zero": with 0 (a gain)
    better: str = ""  # "lower" or "higher" for a column methods are ranked by; "" for one they are not

    def value(self, record: dict):
        for part in self.key.split("."):
            record = record.get(part) if isinstance(record, dict) else None
        return record


QUALITY = [
    Column("heldout_loss", "held-out loss ↓", ".4f", better="lower"),
    Column("assessment.fid_sample_real", "FID ↓", ".2f", better="lower"),
    Column("assessment.feature_mmd_sample_real", "feature MMD² ↓", ".4f"),
    Column("assessment.precision", "precision ↑", ".3f"),
    Column("assessment.recall", "recall ↑", ".3f"),
    Column("assessment.coverage", "coverage ↑", ".3f"),
    Column("assessment.vendi_features_samples", "Vendi (features)", ".2f"),
    Column("assessment.vendi_ms_ssim_samples", "Vendi (MS-SSIM)", ".2f"),
    Column("assessment.ms_ssim_sample_real", "MS-SSIM to reals", ".3f"),
]
COST = [
    Column("trainable", "trainable", ",.0f", baseline="none"),
    Column("share_percent", "% of base", ".3f", baseline="none"),
    Column("step_s", "step (s)", ".3f", baseline="none"),
    Column("peak_mb", "peak MB", ".0f", baseline="none"),
    Column("sampling_s", "sampling (s/volume)", ".3f", baseline="none"),
    Column("accuracy", "accuracy", ".3f", baseline="none"),
    Column("accuracy_gain", "Δ accuracy", ".3f", baseline="zero", better="higher"),
    Column("auc", "AUC", ".3f", baseline="none"),
    Column("auc_gain", "Δ AUC", ".3f", baseline="zero"),
]
INSIDE = "≈"
HEADING = "# Fine-tuning paradigms"


def spread(values: list[float]) -> dict:
    """{"mean", "std", "n"} of the values (std None for one value)."""
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else None,
            "n": len(values)}


def derived(record: dict, reference: dict | None) -> dict:
    """A cell record with the per-cell numbers the summary needs: % of base, accuracy/AUC means and gains."""
    record = dict(record)
    if "share" in record:
        record["share_percent"] = 100 * record["share"]
    scores = record.get("downstream")
    if scores:
        for name in ("accuracy", "auc"):
            record[name] = statistics.mean(scores[name])
            if reference and reference.get("downstream"):
                pairs = zip(scores[name], reference["downstream"][name])
                record[f"{name}_gain"] = statistics.mean(mine - real for mine, real in pairs)
    return record


def summarise(state: dict) -> list[dict]:
    """One row per (method, budget), base first, then by budget and registry order: every column's spread."""
    cells = finished(state)
    reference = cells.get("real-only")
    groups: dict[tuple[str, int], list[dict]] = {}
    for record in cells.values():
        if record["kind"] != "reference":
            groups.setdefault((record["method"], record["budget"]), []).append(derived(record, reference))
    order = {name: index for index, name in enumerate(METHODS)}
    rows = []
    for (method, budget), records in sorted(groups.items(), key=lambda item: (item[0][0] != "base", item[0][1],
                                                                              order.get(item[0][0], len(order)))):
        row = {"method": method, "budget": budget, "seeds": sorted(r["seed"] for r in records),
               "steps_run": sorted({r["steps"] for r in records if "steps" in r})}
        for column in QUALITY + COST:
            values = [v for v in (column.value(r) for r in records) if v is not None]
            if values:
                row[column.key] = spread(values)
        rows.append(row)
    return rows


def overlaps(a: dict, b: dict) -> bool:
    """Whether two spreads' mean ± std intervals overlap (both stds known)."""
    return abs(a["mean"] - b["mean"]) <= a["std"] + b["std"]


def inside_noise(row: dict, column: Column, base: dict | None) -> bool | None:
    """True/False when the noise can tell (see the module docstring), None when it cannot."""
    mine = row.get(column.key)
    if not mine or mine["std"] is None or column.baseline == "none" or (column.baseline == "base" and row is base):
        return None
    if column.baseline == "zero":
        return abs(mine["mean"]) <= mine["std"]
    other = (base or {}).get(column.key)
    if not other or other["std"] is None:
        return None
    return overlaps(mine, other)


def shown(row: dict, column: Column, base: dict | None) -> str:
    value = row.get(column.key)
    if not value:
        return "–"
    text = format(value["mean"], column.digits)
    if value["std"] is not None:
        text += f" ± {format(value['std'], column.digits)}"
    return text + (f" {INSIDE}" if inside_noise(row, column, base) else "")


def row_name(row: dict) -> tuple[str, str]:
    steps = str(row["budget"])
    if row["steps_run"] and row["steps_run"] != [row["budget"]]:
        steps += f" (ran {', '.join(map(str, row['steps_run']))})"
    return ("base (no fine-tuning)" if row["method"] == "base" else row["method"]), steps


def table(rows: list[dict], columns: list[Column], base: dict | None) -> list[str]:
    lines = ["| method | steps | seeds | " + " | ".join(c.label for c in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for row in rows:
        name, steps = row_name(row)
        lines.append(f"| {name} | {steps} | {len(row['seeds'])} | "
                     + " | ".join(shown(row, c, base) for c in columns) + " |")
    return lines


def outside_noise_line(rows: list[dict], columns: list[Column], base: dict | None, what: str) -> str:
    """'Outside the noise: FID: lora@40, …' — every difference the seeds can tell apart."""
    parts = []
    for column in columns:
        names = [f"{row['method']}@{row['budget']}" for row in rows if row["method"] != "base"
                 and inside_noise(row, column, base) is False]
        if names:
            parts.append(f"{column.label.rstrip(' ↑↓')}: {', '.join(names)}")
    return f"Outside the noise ({what}): " + ("; ".join(parts) if parts else "none") + "."


def ties_with_best(rows: list[dict], column: Column) -> list[str]:
    """Per budget: '120 steps: best full (42.43 ± 7.02); not told apart from it by the seeds: dora, lora'
    (nothing for a budget with one seed: its noise is unknown)."""
    lines = []
    for budget in sorted({row["budget"] for row in rows if row["method"] != "base"}):
        ranked = [row for row in rows if row["method"] != "base" and row["budget"] == budget and row.get(column.key)]
        if len(ranked) < 2 or any(row[column.key]["std"] is None for row in ranked):
            continue
        ranked.sort(key=lambda row: row[column.key]["mean"], reverse=column.better == "higher")
        best = ranked[0]
        ties = [row["method"] for row in ranked[1:] if overlaps(row[column.key], best[column.key])]
        lines.append(f"{budget} steps: best {best['method']} ({shown(best, column, None).rstrip(' ' + INSIDE)}); "
                     f"not told apart from it by the seeds: {', '.join(ties) or 'none'}")
    return lines


def ranking_lines(rows: list[dict], columns: list[Column]) -> list[str]:
    """A bullet per ranked column: the best method per budget and those inside its noise."""
    ranked = {column.label.rstrip(" ↑↓"): ties_with_best(rows, column) for column in columns if column.better}
    return [f"- {label}: " + "; ".join(lines) + "." for label, lines in ranked.items() if lines]


def markdown(state: dict, rows: list[dict]) -> str:
    settings = state["settings"]
    cells = finished(state)
    base = next((row for row in rows if row["method"] == "base"), None)
    reference = cells.get("real-only", {}).get("downstream")
    any_cell = next((c for c in cells.values() if c["kind"] == "base"), None)
    environment = next((c["environment"] for c in cells.values() if "environment" in c), {})
    memory = sorted({c["peak_memory"] for c in cells.values() if c.get("peak_memory")})
    classifier = settings["classifier"]
    low, high = settings["atrophy"]
    lines = [
        f"{HEADING}: `{settings['model']}` → {settings['target'].upper()}, {CLASSES[0]} vs {CLASSES[1]}",
        "",
        f"Target domain: simulated {settings['target'].upper()} subjects, {CLASSES[0]} (atrophy {low}) and "
        f"{CLASSES[1]} (atrophy {high}); {settings['train_per_class']} training and {settings['heldout_per_class']} "
        f"held-out subjects per class (data seed {settings['data_seed']}). Each method fine-tunes one generator per "
        f"class for the budget's steps (batch 1, rank {settings['rank']} where the method has one, learning rate "
        f"{'each method' + chr(39) + 's default' if settings['lr'] is None else format(settings['lr'], 'g')}), then "
        f"draws {settings['samples_per_class']} samples per class (DDIM {settings['sampling_steps']}). Sample "
        f"metrics: all samples against all held-out reals in the shipped feature network's space.",
        f"Device {environment.get('device', '?')}, {environment.get('threads', '?')} thread(s), torch "
        f"{environment.get('torch', '?')}; cells "
        f"{'each in a fresh process' if environment.get('isolation') == 'process' else 'in one process'}; "
        f"peak memory: {', '.join(memory) or '–'}.",
        "",
    ]
    if reference:
        acc, auc = spread(reference["accuracy"]), spread(reference["auc"])
        lines.append(f"**Real only** (the reference): a MONAI Classifier (channels {classifier['channels']}, "
                     f"{classifier['steps']} AdamW steps of {classifier['batch']}) on the real training volumes scores "
                     f"accuracy {_pm(acc)} and AUC {_pm(auc)} on the held-out reals over {acc['n']} classifier seeds: "
                     "that spread is the classifier's own noise. With synthetic volumes it trains on the same reals "
                     f"plus {settings['samples_per_class']} samples per class, for the same number of steps.")
    if any_cell:
        a = any_cell["assessment"]
        lines.append(f"Cohort levels: the held-out reals' own Vendi score {a['vendi_features_reals']:.2f} (features) "
                     f"and {a['vendi_ms_ssim_reals']:.2f} (MS-SSIM) over {2 * settings['heldout_per_class']} volumes "
                     f"(Vendi grows with the number of volumes; the samples are {2 * settings['samples_per_class']}); "
                     f"MS-SSIM real–real {a['ms_ssim_real_real']:.3f}; the training-mean image scores MS-SSIM to "
                     f"reals {a.get('ms_ssim_mean_real', float('nan')):.3f} and FID "
                     f"{a.get('fid_mean_real', float('nan')):.2f}.")
    lines += ["", "## Sample quality (mean ± std over seeds)", "", *table(rows, QUALITY, base), "",
              f"{INSIDE}: the mean ± std interval overlaps the base model's: that difference from base is inside the "
              "seed-to-seed noise.", outside_noise_line(rows, QUALITY, base, "vs base"), "",
              "Between methods (same rule: overlapping mean ± std intervals are inside the noise):",
              *ranking_lines(rows, QUALITY), "",
              "## Cost and downstream gain (mean ± std over seeds)", "", *table(rows, COST, base), "",
              f"{INSIDE} on a gain: its mean ± std interval includes 0 — no gain beyond the noise. Trainable "
              "parameters are per generator; step time is the median optimizer step; peak memory is that of "
              "fine-tuning, above the process's resident memory when it began.", outside_noise_line(rows, COST, base, "gains vs 0"),
              "", "Between methods:", *ranking_lines(rows, COST)]
    failed = [cell for cell in state["cells"].values() if "error" in cell]
    if failed:
        lines += ["", "## Failed cells", ""] + [f"- {c['id']}: {c['error']['message']}" for c in failed]
    return "\n".join(lines) + "\n"


def _pm(value: dict) -> str:
    return f"{value['mean']:.3f}" + (f" ± {value['std']:.3f}" if value["std"] is not None else "")


def write_table(path: Path, text: str) -> Path:
    """Write ``paradigms.md`` atomically, replacing only one an earlier run wrote (it starts with HEADING;
    the output rule recognises no markdown file as its own)."""
    if path.exists() and not path.read_text(errors="replace").startswith(HEADING):
        raise InputError(f"{path} was not written by benchmark-paradigms; it is never replaced.",
                         hint="Move it out of the study folder and run the same command again.")
    temporary = partial_name(path)
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def write_summary(out: Path, state: dict, montage_seed: int) -> list[Path]:
    """Write the table, the summary into the state file, the Pareto plot and the montages; return their paths."""
    rows = summarise(state)
    write_text_atomic(out / STATE_NAME, json.dumps({**state, "summary": rows}, indent=1), overwrite=True)
    paths = [out / STATE_NAME, write_table(out / "paradigms.md", markdown(state, rows))]
    paths.append(save_pareto_plot(rows, out / "pareto.png", state["settings"]))
    paths += save_montages(out, state, montage_seed)
    return paths
