"""Where do a prior's blotches come from? Noise held-out real volumes to step t, run the DDIM sampler from there
and compare with the real volume (the image a perfect denoiser would return to, up to the noise it removes).

If the samples from pure noise lose the anatomy only because the first, high-noise steps choose a wrong global
layout, the runs from t ≤ 500 keep it; if the denoiser's own error at every step piles up, they lose it too.
Prints the mean squared difference to the real volume per start step and saves a montage (middle axial slice).

Usage: .venv/bin/python scripts/prior_sdedit_probe.py MODEL CONTRAST OUT.png [--heldout build/prior_heldout]
       [--starts 100 300 500 700 999] [--steps 50] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.models import load_model  # noqa: E402
from DiffusionPEFTLib.plots import save_case_figure  # noqa: E402
from DiffusionPEFTLib.synthesis import sample  # noqa: E402
from DiffusionPEFTLib.training import TrainingVolumes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("contrast")
    parser.add_argument("out", type=Path)
    parser.add_argument("--heldout", type=Path, default=Path("build/prior_heldout"))
    parser.add_argument("--starts", type=int, nargs="+", default=[100, 300, 500, 700, 999])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model, torch.device("cpu")).eval()
    label = list(model.config.input.condition_classes).index(args.contrast)
    files = sorted(args.heldout.glob(f"sub-*/{args.contrast}.nii.gz"))[: args.subjects]
    real = TrainingVolumes.load(files, model.config.input).images
    generator = torch.Generator().manual_seed(args.seed)
    rows = {}
    for start in args.starts:
        result = sample(model, len(real), args.steps, generator=generator, class_label=label, batch_size=len(real),
                        start=(real, start))
        print(f"from t = {start}: mean squared difference to the real volumes {((result - real) ** 2).mean():.4f}")
        rows[f"from t={start}"] = result
    figure = {f"subject {i}": {"real": real[i, 0].numpy(), **{k: v[i, 0].numpy() for k, v in rows.items()}}
              for i in range(len(files))}
    save_case_figure(figure, args.out, title=f"{args.model.name}, {args.contrast}: real noised to t, then DDIM",
                     overwrite=True)


if __name__ == "__main__":
    main()
