"""Learning-rate sweep: held-out denoising loss after a short fine-tuning, per method and learning rate.

The base model (default: the shipped demo model) is fine-tuned on simulated subjects of a new contrast
for --steps steps at each learning rate; the loss on held-out subjects (fixed noise and timesteps,
``metrics.denoising_loss``) is compared with the base model's. Lower than base = the update helped.
This is how each method's default learning rate (``adapters.registry``) was chosen.

Usage: python benchmarks/sweep_learning_rate.py [--methods tenvoo-l lora full] [--lrs 1e-5 1e-4 1e-3] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.context import RunContext  # noqa: E402
from DiffusionPEFTLib.finetuning import FineTuneSettings, fine_tune  # noqa: E402
from DiffusionPEFTLib.metrics import denoising_loss  # noqa: E402
from DiffusionPEFTLib.models import load_model  # noqa: E402
from DiffusionPEFTLib.resources import demo_model_dir  # noqa: E402
from DiffusionPEFTLib.simulate import write_cohort  # noqa: E402
from DiffusionPEFTLib.training import TrainingVolumes, find_volume_files  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(demo_model_dir()))
    parser.add_argument("--methods", nargs="+", default=["tenvoo-l", "lora", "full"])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3])
    parser.add_argument("--target", choices=["flair", "t2"], default="flair")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--train-subjects", type=int, default=12)
    parser.add_argument("--heldout-subjects", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--name", default="learning_rate", help="file stem of the table (.md) and data (.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_model(args.model).config.input
    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for split, count, seed in (("train", args.train_subjects, 100), ("heldout", args.heldout_subjects, 200)):
            manifest = write_cohort(Path(folder) / split, count, seed=args.seed + seed, contrasts=args.target,
                                    shape=spec.shape, spacing=spec.spacing)[0]
            files[split] = find_volume_files([manifest], contrast=args.target)
        heldout = TrainingVolumes.load(files["heldout"], spec).images
        base_loss = denoising_loss(load_model(args.model), heldout)
        print(f"base: held-out loss {base_loss:.4f}", flush=True)
        rows = []
        for method in args.methods:
            for lr in args.lrs:
                model = load_model(args.model)
                settings = FineTuneSettings(method=method, steps=args.steps, lr=lr, checkpoint_every=0)
                with tempfile.TemporaryDirectory() as work:
                    outcome = fine_tune(model, files["train"], settings, work, RunContext(seed=args.seed))
                model.unet = outcome.adapters.merge_and_unload()
                rows.append({"method": method, "lr": lr, "heldout_loss": denoising_loss(model.eval(), heldout)})
                print(json.dumps(rows[-1]), flush=True)
    write_table(rows, base_loss, args)


def write_table(rows: list[dict], base_loss: float, args) -> None:
    lrs = sorted({r["lr"] for r in rows})
    lines = [f"Base `{Path(args.model).name}` → {args.target.upper()}: {args.train_subjects} training / "
             f"{args.heldout_subjects} held-out simulated subjects, {args.steps} steps, batch 1, rank 4, seed "
             f"{args.seed}. Held-out denoising loss (fixed noise, t = 50…800) after fine-tuning; base model: "
             f"**{base_loss:.4f}**. Bold: the lowest per method.", "",
             "| method | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---|" + "---|" * len(lrs)]
    for method in dict.fromkeys(r["method"] for r in rows):
        losses = {r["lr"]: r["heldout_loss"] for r in rows if r["method"] == method}
        best = min(losses.values())
        cells = [("**{:.4f}**" if losses[lr] == best else "{:.4f}").format(losses[lr]) if lr in losses else "–"
                 for lr in lrs]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**vars(args), "model": Path(args.model).name}  # the package's name, not this machine's path
    (out / f"{args.name}.json").write_text(json.dumps({"settings": settings, "base_heldout_loss": base_loss,
                                                        "rows": rows}, indent=2))
    (out / f"{args.name}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
