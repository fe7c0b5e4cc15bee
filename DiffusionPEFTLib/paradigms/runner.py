"""Running a study: its folder, its data, every cell not finished yet, the state after each, then the summary.

The study folder is made like a checkpoint folder (``files.work_folder``, marker kind "paradigms-study"):
a cancel keeps it with every finished cell, so the same command continues where it stopped; nothing
else ever replaces it. Each cell runs in a fresh worker process (``isolation="process"``) or in this
one (``"none"``: faster to start, for small runs; peak memory then includes what earlier cells left).
A cell that fails with a user-facing error (a method diverging, memory) is recorded as failed and the
study goes on; the next run tries it again. Progress: one ``benchmark`` event per finished cell, with
the cells' own fine-tuning, sampling and classifier progress in between.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..context import RunContext
from ..errors import DiffusionPEFTError, JobCancelled
from ..files import MARKER_NAME, work_folder
from ..models import read_model_config
from .cell import CellJob, run_cell
from .cohort import write_study_data
from .study import (STATE_NAME, STUDY_KIND, Cell, StudySettings, finished, new_state, read_state, save_state)
from .summary import write_summary
from .worker import run_in_worker

ISOLATION = ("process", "none")


def run_study(out: Path, settings: StudySettings, cells: list[Cell], model: Path, isolation: str,
              context: RunContext, threads: int | None = None) -> list[Path]:
    """Compute every cell of ``cells`` that ``out`` does not hold yet; write the summary; return its files."""
    with work_folder(out, keep_if=STATE_NAME, kind=STUDY_KIND) as out:
        if not (out / MARKER_NAME).exists():  # an empty folder made beforehand
            (out / MARKER_NAME).write_text(json.dumps({"written_by": "DiffusionPEFT", "kind": STUDY_KIND}) + "\n")
        state = read_state(out) or new_state(settings)
        state.pop("summary", None)  # rewritten from the cells at the end
        save_state(out, state)
        write_study_data(out / "data", settings, read_model_config(model).input, context.events, context.cancel)
        done = finished(state)
        todo = [cell for cell in cells if cell.id not in done]
        context.events.log(f"{len(cells) - len(todo)} of {len(cells)} cells are finished; {len(todo)} to run "
                           f"({'each in its own process' if isolation == 'process' else 'in this process'}).")
        count = len(cells) - len(todo)
        context.events.progress("benchmark", count, len(cells))
        for cell in todo:
            job = CellJob(cell.as_dict(), str(Path(model).resolve()), str(out.resolve()), state["settings"], isolation,
                          save_samples=cell.kind != "reference" and cell.seed == settings.data_seed)
            state["cells"][cell.id] = run_one(job, cell, context, isolation, threads, count, len(cells), out)
            save_state(out, state)
            count += "error" not in state["cells"][cell.id]
            context.events.progress("benchmark", count, len(cells), cell=cell.id)
        failed = sorted(set(state["cells"]) - set(finished(state)))
        if failed:
            context.events.log(f"{len(failed)} cells failed ({', '.join(failed)}); the table lists them and the next "
                               "run tries them again.", level="warning")
        return write_summary(out, state, settings.data_seed)


def run_one(job: CellJob, cell: Cell, context: RunContext, isolation: str, threads: int | None, count: int,
            total: int, out: Path) -> dict:
    """One cell's record; a failure with a user-facing error becomes a failed record, a cancel stops the study."""
    cell_context = dataclasses.replace(context, seed=cell.seed)
    try:
        context.cancel.raise_if_requested()
        if isolation == "process":
            return run_in_worker(job, cell_context, threads)
        return run_cell(job, cell_context)
    except JobCancelled:
        raise JobCancelled(f"The benchmark was cancelled during cell {cell.id}; {count} of {total} cells are finished "
                           f"and kept in {out / STATE_NAME}.",
                           hint="Run the same command again to continue where it stopped.") from None
    except DiffusionPEFTError as error:
        context.events.log(f"Cell {cell.id} failed: {error.message}", level="warning")
        return {"id": cell.id, **cell.as_dict(), "error": error.to_event()}
