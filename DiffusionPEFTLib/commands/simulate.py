"""``diffusion-peft simulate``: write a cohort of simulated multi-contrast brain MRI subjects."""

from __future__ import annotations

import argparse

from .option_types import float_in, non_negative_float, positive_float, positive_int

NAME = "simulate"
HELP = "Simulate a cohort of brain MRI subjects (T1w/T2w/PD/FLAIR, atrophy, lesions) from the ICBM152 anatomy."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..simulate import LESION_TYPES, SEQUENCES

    parser.add_argument("--n", type=positive_int, default=16, help="number of subjects (default 16)")
    parser.add_argument("--contrasts", default="t1", help=f"comma-separated, from: {','.join(SEQUENCES)} (default t1)")
    parser.add_argument("--atrophy", default="0", help="age-like atrophy in [0, 1], or LOW:HIGH drawn per subject")
    parser.add_argument("--lesions", default="none", choices=LESION_TYPES, help="lesion type (default none)")
    parser.add_argument("--shape", type=positive_int, nargs=3, default=[32, 40, 32], metavar=("X", "Y", "Z"),
                        help="grid size in voxels (default 32 40 32)")
    parser.add_argument("--spacing", type=positive_float, nargs="+", default=[6.0], metavar="MM",
                        help="voxel size in mm: one value (isotropic) or three (default 6)")
    parser.add_argument("--snr", type=float_in(0.0, low_open=True, allow_inf=True), default=40.0, help="1/noise σ, brightest tissue = 1; inf: no noise")
    parser.add_argument("--bias", type=non_negative_float, default=0.15, help="bias field strength (std of its log; 0: none)")
    parser.add_argument("--out", required=True, help="output folder (sub-000/…, manifest.json, manifest.csv)")


def paths(args):
    from ..files import Output

    return [], [Output.of(args.out, folder=True)]


def run(args: argparse.Namespace, context) -> list:
    from ..errors import InputError
    from ..simulate import write_cohort

    if len(args.spacing) not in (1, 3):
        raise InputError(f"--spacing takes one or three values, not {len(args.spacing)}.", hint="E.g. --spacing 6.")
    context.events.log(f"Simulating {args.n} subjects ({args.contrasts}) into {args.out}")
    return write_cohort(
        args.out, args.n, seed=context.seed, atrophy=args.atrophy, events=context.events, cancel=context.cancel,
        shape=tuple(args.shape), spacing=tuple(args.spacing) if len(args.spacing) == 3 else args.spacing[0],
        contrasts=args.contrasts, lesions=args.lesions, snr=args.snr, bias_strength=args.bias,
        overwrite=args.overwrite,
    )
