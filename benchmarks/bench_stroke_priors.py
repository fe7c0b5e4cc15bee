"""The stroke paper's study in miniature: which FLAIR prior reconstructs held-out FLAIR best at R = 4 and 8?

Priors (made by ``scripts/build_flair_priors.sh``): trained from scratch on 20 FLAIR subjects; the T1w/T2w/PD
prior as it is (each of its classes tried on the validation subjects, the best one used); controlled
fine-tuning (new class, lr × 0.1, budget, early stop); TenVOO-L and LoRA adapters; joint training on the
pretraining data + the 20 FLAIR. Plus the controlled grid (base learning rate × steps, no early stop).
Each prior reconstructs every held-out subject with ``--method`` (one coil, equispaced lines, the subject's
index as the mask seed, mean of ``--samples``); brain NRMSE/PSNR/SSIM mean ± std over subjects. Rows are saved
as they finish; a rerun continues.

Usage: python benchmarks/bench_stroke_priors.py [--folder build/flair_priors] [--prior Resources/Models/prior-t1-t2-pd-32x40x32]
       [--heldout build/recon_heldout/manifest.json] [--validation build/recon_validation/manifest.json]
       [--method ddnm] [--samples 2] [--steps 50] [--threads 2] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.adapters.apply import merge_adapter_package  # noqa: E402
from DiffusionPEFTLib.metrics.summary import mean_and_std  # noqa: E402
from DiffusionPEFTLib.models import load_model  # noqa: E402
from DiffusionPEFTLib.reconstruction.evaluation import score_reconstruction, simulated_subjects  # noqa: E402
from DiffusionPEFTLib.reconstruction.posterior import PosteriorSettings  # noqa: E402

ACCELERATIONS = (4.0, 8.0)
GRID_LRS, GRID_STEPS = ("3e-5", "3e-4", "3e-3", "3e-2"), (25, 100, 400)


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default="build/flair_priors")
    parser.add_argument("--prior", default="Resources/Models/prior-t1-t2-pd-32x40x32")
    parser.add_argument("--heldout", default="build/recon_heldout/manifest.json")
    parser.add_argument("--validation", default="build/recon_validation/manifest.json")
    parser.add_argument("--method", default="ddnm")
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="docs/benchmarks")
    return parser.parse_args()


def candidates(args) -> dict[str, tuple[Path, Path | None, str | None]]:
    """name → (model package, adapter package or None, class name or None); only those that exist."""
    folder, prior = Path(args.folder), Path(args.prior)
    found = {"(1) scratch on 20 FLAIR": (folder / "scratch", None, None),
             "(2) T1w/T2w/PD prior": (prior, None, "best"),
             "(3) controlled fine-tuning": (prior, folder / "controlled", "flair"),
             "(4) TenVOO-L adapter": (prior, folder / "tenvoo-l", "t1"),
             "(4) LoRA adapter": (prior, folder / "lora", "t1"),
             "(5) joint training": (folder / "joint", None, "flair")}
    for lr in GRID_LRS:
        for steps in GRID_STEPS:
            found[f"grid lr {lr} × {steps} steps"] = (prior, folder / f"controlled_lr{lr}_s{steps}", "flair")
    return {name: spec for name, spec in found.items() if spec[0].exists() and (spec[1] is None or spec[1].exists())}


def load(model_path, adapter):
    model = load_model(model_path)
    return merge_adapter_package(model, adapter) if adapter else model


def label_of(model, contrast, validation, args) -> tuple[int | None, str | None]:
    """The class to sample: by name, or for "best" the class with the lowest validation NRMSE at R = 4."""
    names = list(model.config.input.condition_classes)
    if contrast != "best":
        return (names.index(contrast), contrast) if contrast in names else (None, None)
    settings = PosteriorSettings(steps=args.steps)
    errors = {name: statistics.fmean(score_reconstruction(model, s, args.method, 4, 1, settings, 1, 100 + i,
                                                          names.index(name))[0]["nrmse_brain"]
                                     for i, s in enumerate(validation)) for name in names}
    best = min(errors, key=errors.get)
    print("validation NRMSE per class:", errors, flush=True)
    return names.index(best), best


def main():
    args = arguments()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    state_path = out / "stroke_priors.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"rows": [], "classes": {}}
    settings = PosteriorSettings(steps=args.steps)
    for name, (model_path, adapter, contrast) in candidates(args).items():
        model = None
        for acceleration in ACCELERATIONS:
            done = {r["subject"] for r in state["rows"] if r["prior"] == name and r["acceleration"] == acceleration}
            for index, subject in enumerate(simulated_subjects(args.heldout, "flair", load_model(model_path).config.input)):
                if subject.name in done:
                    continue
                if model is None:
                    model = load(model_path, adapter).eval()
                    validation = simulated_subjects(args.validation, "flair", model.config.input)
                    label, state["classes"][name] = label_of(model, contrast, validation, args)
                scores, _ = score_reconstruction(model, subject, args.method, acceleration, 1, settings, args.samples,
                                                 index, label)
                state["rows"].append({"prior": name, "acceleration": acceleration, "subject": subject.name, **scores})
                state_path.write_text(json.dumps(state, indent=1))
                print(f"{name} R{acceleration:g} {subject.name}: NRMSE brain {scores['nrmse_brain']:.3f}", flush=True)
    (out / "stroke_priors.md").write_text(report(state, args))
    print(report(state, args))


REFERENCE = "(3) controlled fine-tuning"


def paired_difference(rows, reference_rows) -> tuple[float, float, int, int] | None:
    """Per-subject NRMSE differences to the reference prior (same subjects, same masks): mean, std, how many
    subjects are better (lower) with this prior, and how many are compared."""
    reference = {r["subject"]: r["nrmse_brain"] for r in reference_rows}
    differences = [r["nrmse_brain"] - reference[r["subject"]] for r in rows if r["subject"] in reference]
    if len(differences) < 2:
        return None
    return statistics.fmean(differences), statistics.stdev(differences), sum(d < 0 for d in differences), len(differences)


def report(state, args) -> str:
    lines = ["# Which FLAIR prior? The stroke paper's study in miniature (CPU)", "",
             f"Command: `python benchmarks/bench_stroke_priors.py {' '.join(sys.argv[1:])}`", "",
             f"{args.method}, mean of {args.samples} samples, {args.steps} steps, one coil, equispaced lines; held-out "
             f"simulated FLAIR; brain = tissue labels > 0; mean ± std over subjects. Class used: "
             f"{json.dumps(state['classes'])}. The subjects and masks are the same for every prior, so the paired "
             f"column (this prior's NRMSE minus {REFERENCE}'s, per subject) is far less noisy than the ± over "
             "subjects; 'better' counts the subjects where this prior's NRMSE is lower.", "",
             "| prior | R | NRMSE brain | PSNR brain (dB) | SSIM brain | Δ NRMSE vs controlled, paired | better | "
             "subjects |", "|---|---|---|---|---|---|---|---|"]
    order = list(candidates(args))  # the study's order, whichever prior was scored first
    names = sorted({r["prior"] for r in state["rows"]}, key=lambda n: order.index(n) if n in order else len(order))
    for name in names:
        for acceleration in ACCELERATIONS:
            rows = [r for r in state["rows"] if r["prior"] == name and r["acceleration"] == acceleration]
            if not rows:
                continue
            cells = [mean_and_std([r[k] for r in rows]) for k in ("nrmse_brain", "psnr_brain", "ssim_brain")]
            reference = [r for r in state["rows"] if r["prior"] == REFERENCE and r["acceleration"] == acceleration]
            paired = paired_difference(rows, reference) if name != REFERENCE else None
            shown = (f"{paired[0]:+.4f} ± {paired[1]:.4f} | {paired[2]}/{paired[3]}" if paired else "– | –")
            lines.append(f"| {name} | {acceleration:g} | {cells[0][0]:.3f} ± {cells[0][1]:.3f} | "
                         f"{cells[1][0]:.2f} ± {cells[1][1]:.2f} | {cells[2][0]:.3f} ± {cells[2][1]:.3f} | {shown} | "
                         f"{len(rows)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
