"""Merge the finished cells of one benchmark-paradigms study into another, then rewrite its summary.

A study runs its cells one after another on one thread. To use two cores, copy a study folder and
continue each copy with half of the methods (same options otherwise), then merge:

    cp -a paradigms-study paradigms-study-b
    diffusion-peft benchmark-paradigms --threads 1 --out paradigms-study   --methods tenvoo-l tenvoo-q lora dora loha full &
    diffusion-peft benchmark-paradigms --threads 1 --out paradigms-study-b --methods lokr selora dylora adalora norm-bias controlled &
    wait
    python scripts/merge_paradigm_studies.py paradigms-study paradigms-study-b

Only cells that INTO lacks (or holds as failed) are taken from FROM, with their kept samples; a cell
finished in both keeps INTO's record. Refused when the two studies' settings differ (their cells would
not be comparable). FROM is only read.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from DiffusionPEFTLib.errors import DiffusionPEFTError
from DiffusionPEFTLib.paradigms.study import (StudySettings, check_continuable, finished, is_study_folder, read_state,
                                              save_state)
from DiffusionPEFTLib.paradigms.summary import write_summary


def merge(into: Path, source: Path) -> list[str]:
    """Copy ``source``'s finished cells that ``into`` lacks; return their ids."""
    for folder in (into, source):
        if not is_study_folder(folder) or read_state(folder) is None:
            raise SystemExit(f"{folder} is not a benchmark-paradigms study folder with a state file.")
    other = read_state(source)
    state = check_continuable(into, StudySettings.from_dict(other["settings"]))
    state.pop("summary", None)
    taken = sorted(set(finished(other)) - set(finished(state)))
    for cell in taken:
        state["cells"][cell] = other["cells"][cell]
        samples = source / "samples" / cell
        if samples.is_dir() and not (into / "samples" / cell).exists():
            shutil.copytree(samples, into / "samples" / cell)
    save_state(into, state)
    write_summary(into, state, state["settings"]["data_seed"])
    return taken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("into", type=Path, help="the study that receives the cells (its summary is rewritten)")
    parser.add_argument("source", type=Path, help="the study the cells are taken from (only read)")
    args = parser.parse_args()
    try:
        taken = merge(args.into, args.source)
    except DiffusionPEFTError as error:
        print(f"error: {error.message}\nhint: {error.hint}", file=sys.stderr)
        return 2
    print(f"{len(taken)} cells taken from {args.source}: {', '.join(taken) or 'none'}; summary rewritten in {args.into}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
