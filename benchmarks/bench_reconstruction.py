"""Accelerated-MRI reconstruction on held-out simulated subjects: the diffusion prior's samplers (DDNM, DDS,
DPS) beside zero-filling and L1-wavelet compressed sensing.

For every held-out subject (``--heldout``, a simulator cohort; its ``--heldout-contrast`` volume is the
fully sampled truth), acceleration R (``--accelerations``) and coil count (``--coils``): retrospective
undersampling with a fastMRI equispaced line mask (seeded by the subject's index), then each method. Scores
inside the brain (tissue labels > 0) and on the whole volume, fastMRI conventions (magnitudes, data range =
the truth's maximum); seconds per volume; for the samplers the mean of ``--samples`` draws and the Pearson r
between their per-voxel std and the absolute error inside the brain. CS's λ (per R and coils) and DPS's ζ′
are tuned on ``--validation`` subjects first (the lowest brain NRMSE of a small grid), never on the held-out.
Rows are saved as they finish; a rerun with the same ``--out``/``--name`` continues.

Usage: python benchmarks/bench_reconstruction.py --prior MODEL [--contrast flair] [--adapter A]
       --heldout cohort/manifest.json --validation val/manifest.json [--n 8] [--accelerations 4 6 8]
       [--coils 1 8] [--samples 2] [--steps 50] [--threads 2] [--out docs/benchmarks] [--name reconstruction_cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.commands.common import contrast_label  # noqa: E402
from DiffusionPEFTLib.models import load_model  # noqa: E402
from DiffusionPEFTLib.plots import save_case_figure  # noqa: E402
from DiffusionPEFTLib.reconstruction import RECONSTRUCTION_METHODS  # noqa: E402
from DiffusionPEFTLib.reconstruction.evaluation import score_reconstruction, simulated_subjects  # noqa: E402
from DiffusionPEFTLib.reconstruction.posterior import DIFFUSION_METHODS, PosteriorSettings  # noqa: E402

CS_WEIGHTS = (1e-3, 3e-3, 1e-2)
DPS_SCALES = (0.3, 1.0, 3.0)
SCORES = ("nrmse_brain", "psnr_brain", "ssim_brain", "nrmse", "psnr", "ssim", "seconds", "std_error_pearson")


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", required=True)
    parser.add_argument("--contrast", default=None, help="class of a class-conditioned prior")
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--heldout", required=True)
    parser.add_argument("--heldout-contrast", default="flair")
    parser.add_argument("--validation", required=True)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--accelerations", type=float, nargs="+", default=[4, 6, 8])
    parser.add_argument("--coils", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--methods", nargs="+", default=list(RECONSTRUCTION_METHODS), choices=RECONSTRUCTION_METHODS)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--name", default="reconstruction_cpu")
    return parser.parse_args()


def load_prior(args):
    model = load_model(args.prior)
    if args.adapter:
        from DiffusionPEFTLib.adapters.apply import merge_adapter_package

        model = merge_adapter_package(model, args.adapter)
    return model.eval(), contrast_label(model, args.contrast)


def tune(model, label, validation, args, state) -> None:
    """CS λ per (R, coils) and DPS ζ′ (R = 4, one coil) by the lowest mean brain NRMSE on the validation subjects."""
    tuned = state.setdefault("tuned", {})
    settings = PosteriorSettings(steps=args.steps)
    for coils in args.coils:
        for acceleration in args.accelerations:
            key = f"cs_weight_R{acceleration:g}_c{coils}"
            if "cs" in args.methods and key not in tuned:
                tuned[key] = min(CS_WEIGHTS, key=lambda w: statistics.fmean(
                    score_reconstruction(None, s, "cs", acceleration, coils, settings, 1, 100 + i, cs_weight=w)[0]
                    ["nrmse_brain"] for i, s in enumerate(validation)))
    if "dps" in args.methods and "dps_scale" not in tuned:
        tuned["dps_scale"] = min(DPS_SCALES, key=lambda z: statistics.fmean(
            score_reconstruction(model, s, "dps", 4, 1, PosteriorSettings(steps=args.steps, dps_scale=z), 1, 100 + i,
                                 label)[0]["nrmse_brain"] for i, s in enumerate(validation)))
    print("tuned on validation:", tuned, flush=True)


def main():
    args = arguments()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / f"{args.name}.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"rows": []}
    model, label = load_prior(args)
    spec = model.config.input
    heldout = simulated_subjects(args.heldout, args.heldout_contrast, spec)[: args.n]
    validation = simulated_subjects(args.validation, args.heldout_contrast, spec)
    tune(model, label, validation, args, state)
    done = {(r["subject"], r["acceleration"], r["coils"], r["method"]) for r in state["rows"]}
    figure = {}
    load_before = _load()
    for acceleration in args.accelerations:  # R outermost: an interrupted run has whole rows of the table
        for coils in args.coils:
            for index, subject in enumerate(heldout):
                images = {"truth": subject.truth}
                for method in args.methods:
                    key = (subject.name, acceleration, coils, method)
                    want_figure = index == 0 and coils == args.coils[0]
                    if key in done and not want_figure:
                        continue
                    settings = PosteriorSettings(steps=args.steps, dps_scale=state["tuned"].get("dps_scale", 1.0))
                    samples = args.samples if method in DIFFUSION_METHODS else 1
                    scores, result = score_reconstruction(
                        model, subject, method, acceleration, coils, settings, samples, index, label,
                        state["tuned"].get(f"cs_weight_R{acceleration:g}_c{coils}"))
                    images[method] = result.mean
                    if method == "ddnm" and result.std is not None:
                        images["ddnm std"], images["ddnm |error|"] = result.std, np.abs(result.mean - subject.truth)
                    if key not in done:
                        state["rows"].append({"subject": subject.name, "acceleration": acceleration, "coils": coils,
                                              "method": method, **scores})
                        done.add(key)
                        state_path.write_text(json.dumps(state, indent=1))
                    print(f"R{acceleration:g} c{coils} {subject.name} {method}: NRMSE brain "
                          f"{scores['nrmse_brain']:.3f} ({scores['seconds']:.1f} s)", flush=True)
                if index == 0 and coils == args.coils[0]:
                    figure[f"R = {acceleration:g}, {subject.name}"] = images
    state["machine"] = {"platform": platform.machine(), "cores": torch.get_num_threads(), "torch": torch.__version__,
                        "load_before": load_before, "load_after": _load()}
    state["settings"] = {k: v for k, v in vars(args).items()}
    state_path.write_text(json.dumps(state, indent=1))
    save_case_figure(figure, out / f"{args.name}.png", maps=("ddnm std", "ddnm |error|"), overwrite=True,
                     title=f"{args.heldout_contrast} reconstructions, {args.coils[0]} coil(s)")
    (out / f"{args.name}.md").write_text(report(state, args))
    print(report(state, args))


def report(state: dict, args) -> str:
    """The markdown table (mean ± std over subjects) and the targets."""
    rows = state["rows"]
    lines = [f"# Reconstruction of held-out simulated {args.heldout_contrast} (CPU)", "",
             f"Command: `python benchmarks/bench_reconstruction.py {' '.join(sys.argv[1:])}`", "",
             f"Prior `{Path(args.prior).name}`{f' + adapter {Path(args.adapter).name}' if args.adapter else ''}"
             f"{f', class {args.contrast}' if args.contrast else ''}; {len({r['subject'] for r in rows})} held-out "
             f"subjects; equispaced line masks (fastMRI, centre fraction 0.32/R); diffusion samplers: mean of "
             f"{args.samples} samples, {args.steps} DDIM steps (η = 0.85). Tuned on validation subjects: "
             f"{json.dumps(state.get('tuned', {}))}. Brain = tissue labels > 0; data range = the truth's maximum. "
             f"Machine: {json.dumps(state.get('machine', {}))}.", ""]
    header = "| R | coils | method | NRMSE brain | PSNR brain (dB) | SSIM brain | NRMSE whole | s / volume | r(std, abs. error) |"
    lines += [header, "|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for coils in args.coils:
        for acceleration in args.accelerations:
            for method in args.methods:
                cell = [r for r in rows if r["coils"] == coils and r["acceleration"] == acceleration
                        and r["method"] == method]
                if not cell:
                    continue
                stats = {k: _mean_std([r[k] for r in cell if k in r]) for k in SCORES}
                summary[(acceleration, coils, method)] = stats
                lines.append(f"| {acceleration:g} | {coils} | {method} | {_fmt(stats['nrmse_brain'])} | "
                             f"{_fmt(stats['psnr_brain'], 2)} | {_fmt(stats['ssim_brain'])} | {_fmt(stats['nrmse'])} | "
                             f"{_fmt(stats['seconds'], 1)} | {_fmt(stats['std_error_pearson'], 2)} |")
    lines += ["", "Targets:", ""]
    for coils in args.coils:
        zero = summary.get((4.0, coils, "zero-filled"))
        best = min((summary[(4.0, coils, m)]["nrmse_brain"][0], m) for m in DIFFUSION_METHODS
                   if (4.0, coils, m) in summary) if zero else None
        if zero and best:
            ratio = best[0] / zero["nrmse_brain"][0]
            lines.append(f"- {coils} coil(s), R = 4: best sampler ({best[1]}) NRMSE ÷ zero-filled = {ratio:.2f} "
                         f"(target ≤ 0.5): **{'pass' if ratio <= 0.5 else 'fail'}**")
        for acceleration in args.accelerations:
            cs = summary.get((acceleration, coils, "cs"))
            samplers = {m: summary[(acceleration, coils, m)]["nrmse_brain"][0] for m in DIFFUSION_METHODS
                        if (acceleration, coils, m) in summary}
            if cs and samplers:
                below = [m for m, v in samplers.items() if v < cs["nrmse_brain"][0]]
                lines.append(f"- {coils} coil(s), R = {acceleration:g}: below CS ({cs['nrmse_brain'][0]:.3f}): "
                             f"{', '.join(below) or 'none'} — **{'pass' if below else 'fail'}**")
    lines += ["", f"![reconstructions]({args.name}.png)", ""]
    return "\n".join(lines)


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(stat, digits=3):
    return "–" if stat is None else f"{stat[0]:.{digits}f} ± {stat[1]:.{digits}f}"


def _load():
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


if __name__ == "__main__":
    main()
