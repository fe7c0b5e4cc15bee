"""The study: its settings, its grid of cells, and its state file (what makes a run resumable).

A study compares fine-tuning methods on one base model and one simulated target domain with two
classes (healthy and strongly atrophied subjects of the target contrast). Its **settings** fix
everything that makes two cells comparable (model weights, data, sampling, classifier); its **grid**
(methods × budgets × seeds) may grow between runs. The cells, in the order they run:

- ``real-only``: the downstream classifier trained on the real training volumes alone, once per
  classifier seed (the reference every gain is measured against, and the classifier's own noise);
- ``base_sS``: the base model without fine-tuning, sampled with seed S;
- ``METHOD_bB_sS``: METHOD fine-tuned for B steps with seed S (one generator per class).

Seed-major order: a run stopped early has every method at the first seed before any at the second.
The state, ``OUT/paradigms.json``, is rewritten (atomically) after every finished cell.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..files import MARKER_NAME, write_text_atomic

STATE_NAME = "paradigms.json"
STATE_FORMAT = "diffusion-peft-paradigms"
STATE_VERSION = 1
STUDY_KIND = "paradigms-study"  # the kind in the study folder's marker
CLASSES = ("healthy", "atrophy")  # label 0, label 1 of the downstream task


@dataclass(frozen=True)
class StudySettings:
    """Everything two cells must share to be compared. atrophy: the simulator's LOW:HIGH range of each
    class (CLASSES order); lr None: each method's own default; classifier: see classifier.ClassifierSettings."""

    model: str
    model_sha256: str
    target: str
    atrophy: tuple[str, str]
    train_per_class: int
    heldout_per_class: int
    samples_per_class: int
    sampling_steps: int
    rank: int
    lr: float | None
    data_seed: int
    classifier: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))  # tuples as lists, as they come back from the state file

    @classmethod
    def from_dict(cls, values: dict) -> "StudySettings":
        return cls(**{**values, "atrophy": tuple(values["atrophy"])})

    def differences(self, recorded: dict) -> list[str]:
        """Names of the settings that differ from ``recorded`` (a state file's settings)."""
        mine = self.as_dict()
        return [name for name in sorted(set(mine) | set(recorded)) if mine.get(name) != recorded.get(name)]


@dataclass(frozen=True)
class Cell:
    """One unit of work. kind: "reference", "base" or "method"; budget: fine-tuning steps (0: none)."""

    kind: str
    method: str
    budget: int = 0
    seed: int = 0

    @property
    def id(self) -> str:
        if self.kind == "reference":
            return "real-only"
        if self.kind == "base":
            return f"base_s{self.seed}"
        return f"{self.method}_b{self.budget}_s{self.seed}"

    def as_dict(self) -> dict:
        return asdict(self)


def plan_cells(methods: list[str], budgets: list[int], seeds: list[int]) -> list[Cell]:
    """The grid in running order (see the module docstring)."""
    cells = [Cell("reference", "real-only")]
    for seed in seeds:
        cells.append(Cell("base", "base", 0, seed))
        cells.extend(Cell("method", method, budget, seed) for budget in budgets for method in methods)
    return cells


def new_state(settings: StudySettings) -> dict:
    return {"format": STATE_FORMAT, "format_version": STATE_VERSION, "settings": settings.as_dict(), "cells": {}}


def is_study_folder(out: Path) -> bool:
    """Whether ``out`` is a folder this command made (its marker says so)."""
    try:
        marker = json.loads((out / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("written_by") == "DiffusionPEFT" and marker.get("kind") == STUDY_KIND


def read_state(out: Path) -> dict | None:
    """The study's state, or None when the folder has none yet (a run cancelled before it began);
    InputError when the file is damaged."""
    path = out / STATE_NAME
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path} is damaged ({error}).",
                         hint="Choose another --out; the study in that folder cannot be continued.") from None
    if not (isinstance(state, dict) and state.get("format") == STATE_FORMAT and isinstance(state.get("cells"), dict)
            and isinstance(state.get("settings"), dict)):
        raise InputError(f"{path} is damaged (it is not a benchmark-paradigms state).",
                         hint="Choose another --out; the study in that folder cannot be continued.")
    if state.get("format_version") != STATE_VERSION:
        raise InputError(f"{path} was written by another version (format {state.get('format_version')}).",
                         hint="Choose another --out to start a new study.")
    return state


def check_continuable(out: Path, settings: StudySettings) -> dict | None:
    """The state of the study in ``out`` when it can be continued with ``settings``; InputError otherwise."""
    state = read_state(out)
    if state is None:
        return None
    differ = settings.differences(state["settings"])
    if differ:
        mine = settings.as_dict()
        shown = ", ".join(f"{name} {state['settings'].get(name)!r} → {mine.get(name)!r}" for name in differ)
        raise InputError(f"{out} holds a study with other settings ({shown}); its cells would not be comparable.",
                         hint="Choose another --out for these settings, or repeat the options of that study to "
                         "continue it (a study folder is never replaced).")
    return state


def finished(state: dict) -> dict[str, dict]:
    """Cells with a result (a failed cell is retried by the next run)."""
    return {key: cell for key, cell in state["cells"].items() if "error" not in cell}


def save_state(out: Path, state: dict) -> None:
    write_text_atomic(out / STATE_NAME, json.dumps(state, indent=1), overwrite=True)
