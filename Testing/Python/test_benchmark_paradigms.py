"""``benchmark-paradigms`` on the tiny model: a cancelled study keeps its finished cells and the next run computes
only the others; the table's mean ± std are those of the cells in paradigms.json; a cell deleted from the
state is recomputed alone, in a worker process; the Pareto plot and the montages exist; the downstream
classifier learns a separable task and stays at chance on shuffled labels."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch

from DiffusionPEFTLib.cli import main
from DiffusionPEFTLib.events import ListSink
from DiffusionPEFTLib.paradigms import ClassifierSettings, downstream_scores
from DiffusionPEFTLib.paradigms.summary import Column, ties_with_best

METHODS = ["lora", "norm-bias"]
TINY_STUDY = ["--methods", *METHODS, "--seeds", "2", "--budgets", "2", "3", "--train-per-class", "3",
              "--heldout-per-class", "3", "--samples-per-class", "2", "--sampling-steps", "2",
              "--classifier-seeds", "2", "--classifier-steps", "3", "--threads", "1"]
ALL_CELLS = {"real-only", "base_s0", "base_s1", *(f"{m}_b{b}_s{s}" for m in METHODS for b in (2, 3) for s in (0, 1))}
STOP_AFTER = 4


class StopAfter(ListSink):
    """Creates ``stop_file`` once ``cells`` cells are finished (what the stop button of a GUI does)."""

    def __init__(self, stop_file: Path, cells: int):
        super().__init__()
        self.stop_file, self.cells = stop_file, cells

    def emit(self, event):
        super().emit(event)
        if event["event"] == "progress" and event["stage"] == "benchmark" and event["step"] >= self.cells:
            self.stop_file.touch()


def cells_run(events: ListSink) -> list[str]:
    return [e["cell"] for e in events.of("progress") if e["stage"] == "benchmark" and "cell" in e]


def run_study(model, out, *extra, events=None) -> tuple[int, ListSink]:
    events = events or ListSink()
    argv = ["benchmark-paradigms", "--model", model, *TINY_STUDY, "--out", out, *extra]
    return main([str(a) for a in argv], events=events), events


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_model_dir):
    """A study cancelled after STOP_AFTER cells, then continued to the end: (folder, first events, second events)."""
    root = tmp_path_factory.mktemp("paradigms")
    out, stop = root / "study", root / "stop"
    first_code, first = run_study(tiny_model_dir, out, "--isolate", "none", "--stop-file", stop,
                                  events=StopAfter(stop, STOP_AFTER))
    assert first_code == 130, first.events
    kept = set(json.loads((out / "paradigms.json").read_text())["cells"])
    stop.unlink()
    code, second = run_study(tiny_model_dir, out, "--isolate", "none")
    assert code == 0, second.events
    return out, first, second, kept


def test_cancel_keeps_finished_cells_and_the_next_run_computes_only_the_rest(study):
    out, first, second, kept = study
    [error] = first.of("error")
    assert error["kind"] == "cancelled" and "run the same command again" in error["hint"].lower()
    assert kept == set(cells_run(first)) and len(kept) == STOP_AFTER
    assert set(cells_run(second)) == ALL_CELLS - kept and len(cells_run(second)) == len(ALL_CELLS) - STOP_AFTER
    assert set(json.loads((out / "paradigms.json").read_text())["cells"]) == ALL_CELLS


def table_rows(markdown: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the markdown table whose 4th column is ``first_header``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| ") and line.split(" | ")[3] == first_header)
    header = [c.strip() for c in lines[start].strip("|").split(" | ")]
    body = []
    for line in lines[start + 2:]:  # after the |---| line
        if not line.startswith("| "):
            break
        body.append([c.strip() for c in line.strip("|").split(" | ")])
    return header, body


def formatted(values: list[float], digits: str) -> str:
    return f"{format(statistics.mean(values), digits)} ± {format(statistics.stdev(values), digits)}"


def test_table_shows_the_mean_and_std_of_the_cells(study):
    out = study[0]
    state = json.loads((out / "paradigms.json").read_text())
    cells = state["cells"]
    reference = cells["real-only"]["downstream"]["accuracy"]
    markdown = (out / "paradigms.md").read_text()
    recomputed = {
        ("held-out loss ↓", ".4f"): lambda c: c["heldout_loss"],
        ("FID ↓", ".2f"): lambda c: c["assessment"]["fid_sample_real"],
        ("precision ↑", ".3f"): lambda c: c["assessment"]["precision"],
        ("Vendi (features)", ".2f"): lambda c: c["assessment"]["vendi_features_samples"],
        ("step (s)", ".3f"): lambda c: c["step_s"],
        ("trainable", ",.0f"): lambda c: c["trainable"],
        ("Δ accuracy", ".3f"): lambda c: statistics.mean(a - r for a, r in
                                                          zip(c["downstream"]["accuracy"], reference)),
    }
    checked = 0
    for first_header in ("held-out loss ↓", "trainable"):
        header, body = table_rows(markdown, first_header)
        assert {row[0] for row in body} == {"base (no fine-tuning)", *METHODS}
        for row in body:
            method = "base" if row[0].startswith("base") else row[0]
            group = [c for c in cells.values() if c["method"] == method and c["budget"] == int(row[1])]
            assert len(group) == int(row[2]) == 2
            for (label, digits), value in recomputed.items():
                if label in header and (method != "base" or label in ("held-out loss ↓", "FID ↓", "precision ↑",
                                                                       "Vendi (features)")):
                    shown = row[header.index(label)].rstrip(" ≈")
                    assert shown == formatted([value(c) for c in group], digits), (row[0], row[1], label)
                    checked += 1
    assert checked == 4 + 4 * 7  # base: 4 quality columns; 4 method rows: 4 quality + 3 cost columns each
    assert "inside the seed-to-seed noise" in markdown and "Outside the noise (vs base):" in markdown
    assert "- held-out loss: 2 steps: best " in markdown and "; 3 steps: best lora (" in markdown
    summary = {(r["method"], r["budget"]): r for r in state["summary"]}
    fids = [c["assessment"]["fid_sample_real"] for c in cells.values() if c["method"] == "lora" and c["budget"] == 3]
    assert summary[("lora", 3)]["assessment.fid_sample_real"]["mean"] == pytest.approx(statistics.mean(fids))


def spread_row(method: str, budget: int, mean: float, std: float | None) -> dict:
    return {"method": method, "budget": budget, "x": {"mean": mean, "std": std, "n": 3}}


def test_the_best_method_and_those_inside_its_noise_are_named_per_budget():
    rows = [spread_row("base", 0, 9.0, 0.1), spread_row("a", 1, 5.0, 1.0), spread_row("b", 1, 6.5, 0.6),
            spread_row("c", 1, 7.0, 0.5), spread_row("d", 1, 2.0, 0.1), spread_row("a", 2, 1.0, 0.5),
            spread_row("b", 2, 3.0, 0.2)]
    lower = ties_with_best(rows, Column("x", "x ↓", ".1f", better="lower"))
    # budget 1: d (2.0) is best and nothing reaches it; budget 2: a is best, b's interval (2.8–3.2) misses 0.5–1.5
    assert lower == ["1 steps: best d (2.0 ± 0.1); not told apart from it by the seeds: none",
                     "2 steps: best a (1.0 ± 0.5); not told apart from it by the seeds: none"]
    higher = ties_with_best(rows, Column("x", "x ↑", ".1f", better="higher"))
    # budget 1: c (7.0 ± 0.5) is best; b (6.5 ± 0.6) overlaps it, a (5.0 ± 1.0) just reaches 6.0 < 6.5: outside
    assert higher == ["1 steps: best c (7.0 ± 0.5); not told apart from it by the seeds: b",
                      "2 steps: best b (3.0 ± 0.2); not told apart from it by the seeds: none"]
    rows[1]["x"]["std"] = None  # one seed somewhere: that budget's noise is unknown, nothing is called
    assert [line[:2] for line in ties_with_best(rows, Column("x", "x ↓", ".1f", better="lower"))] == ["2 "]


def test_pareto_plot_and_montages_exist(study):
    out = study[0]
    for name in ["pareto.png", *(f"montages/{m}.png" for m in METHODS)]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert sorted(p.name for p in (out / "samples").iterdir()) == sorted(
        ["base_s0", *(f"{m}_b{b}_s0" for m in METHODS for b in (2, 3))])  # the montages' seed only


def test_a_cell_deleted_from_the_state_is_recomputed_alone_in_a_worker(study, tiny_model_dir, tmp_path):
    out = tmp_path / "study"
    shutil.copytree(study[0], out)
    state = json.loads((out / "paradigms.json").read_text())
    before = state["cells"].pop("lora_b3_s1")
    (out / "paradigms.json").write_text(json.dumps(state))
    code, events = run_study(tiny_model_dir, out, "--isolate", "process")
    assert code == 0, events.events
    assert cells_run(events) == ["lora_b3_s1"]
    assert any(e["stage"] == "finetune" for e in events.of("progress"))  # the worker's events reach this sink
    after = json.loads((out / "paradigms.json").read_text())["cells"]["lora_b3_s1"]
    assert after["environment"]["isolation"] == "process" and after["peak_mb"] > 0
    assert after["trainable"] == before["trainable"] and after["steps"] == before["steps"] == 3
    assert after["heldout_loss"] == pytest.approx(before["heldout_loss"], rel=1e-3)  # same seed, another process


def separable_set(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` volumes per class (16³): noise, plus a bright cube in the middle for label 1."""
    generator = torch.Generator().manual_seed(seed)
    volumes = 0.3 * torch.randn(2 * count, 1, 16, 16, 16, generator=generator)
    volumes[count:, :, 5:11, 5:11, 5:11] += 1.0
    return volumes, torch.cat([torch.zeros(count), torch.ones(count)]).long()


def test_classifier_learns_a_separable_task_and_stays_at_chance_on_shuffled_labels():
    settings = ClassifierSettings(steps=60, channels=(4, 8), seeds=2)
    train, test = separable_set(12, seed=0), separable_set(20, seed=1)
    learned = downstream_scores(train, test, settings)
    assert min(learned["accuracy"]) >= 0.9 and min(learned["auc"]) >= 0.95, learned
    volumes, labels = train
    shuffled = labels.clone()
    shuffled[::2] = 1 - labels[::2]  # half of each class flipped: the labels say nothing about the cube
    assert shuffled.sum() == 12 and (shuffled[:12].sum(), shuffled[12:].sum()) == (6, 6)
    chance = downstream_scores((volumes, shuffled), test, settings)
    assert abs(statistics.mean(chance["accuracy"]) - 0.5) <= 0.15, chance
    assert abs(statistics.mean(chance["auc"]) - 0.5) <= 0.2, chance


def test_a_larger_grid_extends_the_study(study, tiny_model_dir, tmp_path):
    """A third seed on a finished study computes only that seed's cells."""
    out = tmp_path / "study"
    shutil.copytree(study[0], out)
    code, events = run_study(tiny_model_dir, out, "--isolate", "none", "--methods", "norm-bias", "--budgets", "2",
                             "--seeds", "3")
    assert code == 0, events.events
    assert cells_run(events) == ["base_s2", "norm-bias_b2_s2"]
    assert "| norm-bias | 2 | 3 |" in (out / "paradigms.md").read_text()
