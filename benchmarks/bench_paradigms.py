"""Benchmark of fine-tuning paradigms on the demo base model and a simulated domain shift.

For each method, in its own process (so peak memory is its own): fine-tune a fixed number of
steps on simulated target subjects (default: healthy T1w base → FLAIR), then merge and sample.
Reports trainable parameters, median step time and peak memory ÷ full fine-tuning (same run),
merged sampling time ÷ base model, the held-out denoising loss (fixed noise; lower = better fit to
the new domain), and MS-SSIM of samples to held-out targets, sample diversity (sample–sample
MS-SSIM against the targets' own), realism ratio and MMD. Each method trains at its own default
learning rate unless --lr is given (a learning-rate sweep: one run per --lr value, with --out).
With --update, only --methods are rerun (plus base and full, for their ratios) and their rows replace
those in the existing OUT/paradigms.json; every ratio is taken within the run that produced the row.

Usage: python benchmarks/bench_paradigms.py [--steps 40] [--methods tenvoo-l lora full ...] [--lr 1e-4] [--out docs/benchmarks]
       python benchmarks/bench_paradigms.py --update --methods lokr [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.assessment import assess_samples  # noqa: E402
from DiffusionPEFTLib.context import RunContext  # noqa: E402
from DiffusionPEFTLib.events import ListSink  # noqa: E402
from DiffusionPEFTLib.finetuning import FineTuneSettings, fine_tune  # noqa: E402
from DiffusionPEFTLib.metrics import denoising_loss  # noqa: E402
from DiffusionPEFTLib.models import load_model  # noqa: E402
from DiffusionPEFTLib.resources import demo_model_dir  # noqa: E402
from DiffusionPEFTLib.simulate import write_cohort  # noqa: E402
from DiffusionPEFTLib.synthesis import sample  # noqa: E402
from DiffusionPEFTLib.training import TrainingVolumes, find_volume_files  # noqa: E402

METHODS = ["tenvoo-l", "tenvoo-q", "lora", "dora", "loha", "lokr", "selora", "dylora", "adalora", "norm-bias",
           "full", "controlled"]
RANKED = {"tenvoo-l", "tenvoo-q", "lora", "dora", "loha", "lokr", "dylora", "adalora"}
RATIOS = {"step_vs_full": ("step_s", "full"), "peak_vs_full": ("peak_mb", "full"),
          "sampling_vs_base": ("sampling_s", "base")}
"""ratio -> (measured value, the method of the same run it is divided by)"""


class TimingSink(ListSink):
    """Records the time of every fine-tuning progress event; a validation in between voids that interval."""

    def __init__(self):
        super().__init__()
        self.stamps: list[float | None] = []

    def emit(self, event):
        if event["event"] == "progress" and event["stage"] == "finetune":
            self.stamps.append(time.perf_counter())
        elif event["event"] == "metric" and event["name"] == "val_loss":
            self.stamps.append(None)
        super().emit(event)

    def step_durations(self) -> list[float]:
        """Seconds of each optimizer step after the first (warm-up), validations excluded."""
        pairs = zip(self.stamps[1:], self.stamps[2:])
        return [b - a for a, b in pairs if a is not None and b is not None]


def draw(model, count, steps, seed):
    start = time.perf_counter()
    images = sample(model, count, steps, "ddim", generator=torch.Generator().manual_seed(seed))
    return [image[0].numpy() for image in images], time.perf_counter() - start


def run_one(args) -> dict:
    """One method (or 'base') in this process; returns its row."""
    torch.set_num_threads(args.threads)
    data = Path(args.data)
    model = load_model(args.model)
    spec = model.config.input
    heldout = TrainingVolumes.load(find_volume_files([data / "heldout" / "manifest.json"], contrast=args.contrast),
                                   spec).images
    reals = [img[0].numpy() for img in heldout]
    low, high = spec.normalisation().range
    row = {"method": args.one}
    if args.one != "base":
        options = {"rank": args.rank} if args.one in RANKED else {}
        settings = FineTuneSettings(method=args.one, options=options, steps=args.steps, lr=args.lr,
                                    checkpoint_every=0)
        sink = TimingSink()
        with tempfile.TemporaryDirectory() as work:
            outcome = fine_tune(model, find_volume_files([data / "train" / "manifest.json"], contrast=args.contrast),
                                settings, work, RunContext(events=sink, seed=args.seed))
        durations = sink.step_durations()
        counts = outcome.adapters.counts()
        row.update({"trainable": counts.total, "share": counts.share, "steps": outcome.result.steps,
                    "lr": outcome.provenance["lr"],
                    "step_s": statistics.median(durations) if durations else float("nan"),
                    "final_loss": outcome.provenance["final_loss"],
                    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3})
        model.unet = outcome.adapters.merge_and_unload()
    model.eval()
    row["heldout_loss"] = denoising_loss(model, heldout)
    draw(model, 1, 2, 0)  # warm-up
    samples, seconds = draw(model, args.samples, args.sampling_steps, args.seed + 7)
    row["sampling_s"] = seconds
    row.update(assess_samples(samples, reals, data_range=high - low))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(demo_model_dir()))
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--target", choices=["flair", "t2"], default="flair", help="contrast of the new domain")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--lr", type=float, default=None, help="one learning rate for all (default: each method's own)")
    parser.add_argument("--train-subjects", type=int, default=8)
    parser.add_argument("--heldout-subjects", type=int, default=6)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--sampling-steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--update", action="store_true", help="rerun --methods only, into OUT/paradigms.json")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--contrast", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return
    spec = load_model(args.model).config.input
    rows = []
    with tempfile.TemporaryDirectory() as data:
        for split, count, seed in (("train", args.train_subjects, 100), ("heldout", args.heldout_subjects, 200)):
            write_cohort(Path(data) / split, count, seed=args.seed + seed, contrasts=args.target, shape=spec.shape,
                         spacing=spec.spacing)
        references = ["full"] if args.update and "full" not in args.methods else []
        for method in ["base", *args.methods, *references]:
            command = [sys.executable, __file__, "--one", method, "--data", data, "--contrast", args.target,
                       *sum(([f"--{k.replace('_', '-')}", str(v)] for k, v in vars(args).items()
                             if k not in ("one", "data", "contrast", "methods", "out", "target", "update")
                             and v is not None), [])]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{method} failed:\n{result.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    add_ratios(rows)
    settings = {k: v for k, v in vars(args).items() if k not in ("one", "data", "contrast", "update")}
    settings["model"] = Path(args.model).name  # the package's name, not this machine's path
    settings["torch"] = torch.__version__
    if args.update:
        previous = json.loads((Path(args.out) / "paradigms.json").read_text())
        add_ratios(previous["rows"])  # tables written before rows carried their ratios
        rerun = {r["method"]: {**r, "rerun": settings} for r in rows if r["method"] in args.methods}
        rows = [rerun.pop(r["method"], r) for r in previous["rows"]] + list(rerun.values())
        settings = previous["settings"]
    write_tables(rows, settings, Path(args.out))


def add_ratios(rows: list[dict]) -> None:
    """Fill each row's missing RATIOS from the base/full rows among ``rows`` (one run's rows)."""
    by_method = {r["method"]: r for r in rows}
    for r in rows:
        for ratio, (value, reference) in RATIOS.items():
            if ratio not in r and value in r and reference in by_method:
                r[ratio] = r[value] / by_method[reference][value]


def write_tables(rows: list[dict], settings: dict, out: Path) -> None:
    base = next(r for r in rows if r["method"] == "base")
    lr = settings["lr"]
    lines = [f"Base `{settings['model']}` → {settings['target'].upper()}: {settings['train_subjects']} training / "
             f"{settings['heldout_subjects']} held-out simulated subjects; {settings['steps']} steps, batch 1, rank "
             f"{settings['rank']}, lr {'each method' + chr(39) + 's default' if lr is None else format(lr, 'g')} "
             f"(controlled ×0.1); {settings['samples']} samples, DDIM {settings['sampling_steps']}; "
             f"{settings['threads']} CPU threads, torch {settings.get('torch', torch.__version__)}.",
             *[f"Row `{r['method']}` rerun alone with --update ({r['rerun']['threads']} CPU thread(s), torch "
               f"{r['rerun']['torch']}); its ratios are to base and full of that run." for r in rows if "rerun" in r],
             "",
             "| method | lr | trainable | % of base | step (s) | step ÷ full | peak MB | peak ÷ full | merged sampling ÷ base "
             "| held-out loss | MS-SSIM to held-out | realism ratio | sample–sample MS-SSIM (targets: {:.3f}) | MMD² |".format(
                 base["ms_ssim_real_real"]),
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        trained = r["method"] != "base"
        ratio = (lambda key: f"{r[key]:.2f}" if key in r else "–")
        lines.append(
            f"| {r['method']} | {r['lr']:g} | {r['trainable']:,} | {100 * r['share']:.3f} | {r['step_s']:.2f} | "
            f"{ratio('step_vs_full')} | {r['peak_mb']:.0f} | {ratio('peak_vs_full')} | {ratio('sampling_vs_base')} | "
            f"{r['heldout_loss']:.4f} | {r['ms_ssim_sample_real']:.3f} | {r['realism_ratio']:.2f} | {r['ms_ssim_sample_sample']:.3f} | "
            f"{r['mmd_sample_real']:.3f} |" if trained else
            f"| base (no fine-tuning) | – | 0 | 0 | – | – | – | – | 1.00 | {r['heldout_loss']:.4f} | "
            f"{r['ms_ssim_sample_real']:.3f} | "
            f"{r['realism_ratio']:.2f} | {r['ms_ssim_sample_sample']:.3f} | {r['mmd_sample_real']:.3f} |")
    table = "\n".join(lines)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paradigms.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    (out / "paradigms.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
