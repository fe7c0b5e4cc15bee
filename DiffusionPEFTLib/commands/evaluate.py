"""``evaluate PRED REF``: MS-SSIM, SSIM, PSNR and NRMSE of a volume against a reference."""

from __future__ import annotations

import json

from ..files import Output, write_text_atomic
from ..metrics import compare_volumes
from ..volumes import read_volume, resample

NAME = "evaluate"
HELP = "Compare a volume with a reference: MS-SSIM, SSIM, PSNR, NRMSE."


def add_arguments(parser) -> None:
    parser.add_argument("pred", help="volume to score")
    parser.add_argument("ref", help="reference volume (its grid and intensity range are used)")
    parser.add_argument("--json", default=None, help="also write the metrics to this JSON file")


def paths(args):
    return [args.pred, args.ref], [Output.of(args.json)] if args.json else []


def run(args, context):
    pred = read_volume(args.pred, context.budget)
    ref = read_volume(args.ref, context.budget)
    if not pred.same_grid(ref):
        context.events.log("The volumes lie on different grids: resampling the prediction onto the reference.",
                           level="warning")
        pred = resample(pred, ref.shape, ref.affine)
    metrics = compare_volumes(pred.data, ref.data)
    for name, value in metrics.items():
        context.events.metric(name, value)
    if args.json:
        write_text_atomic(args.json, json.dumps(metrics, indent=2), overwrite=args.overwrite)
        return [args.json]
    return []
