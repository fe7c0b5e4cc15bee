"""``translate MODEL SOURCE --out OUT``: turn a source volume into the model's target contrast.

The output lies on the source's exact grid (shape and affine) in the source's intensity scale (the
target contrast's own scanner units are unknown). With ``--samples K`` (K ≥ 2) OUT is the mean of K
stochastic translations and ``OUT_std`` their per-voxel standard deviation (the uncertainty map).
With ``--reference TRUTH`` the mean is scored against it (PSNR, SSIM, NRMSE, MS-SSIM) on the model grid,
both in the model's normalised intensity range (each percentile-normalised, as in training).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..files import Output
from ..metrics import compare_volumes
from ..volumes import GridMapping, Volume, from_model_grid, read_volume, resample, to_model_grid, write_volume
from ..volumes.io import volume_suffix
from .common import load_model_for_job
from .option_types import positive_int, unit_interval

NAME = "translate"
HELP = "Translate a volume into the model's target contrast (e.g. T1w → FLAIR), with an uncertainty map."


def add_arguments(parser) -> None:
    parser.add_argument("model", help="translation model package folder or .zip")
    parser.add_argument("source", help="the volume to translate (the model's source contrast)")
    parser.add_argument("--adapter", default=None, help="adapter package to merge into the model first")
    parser.add_argument("--out", required=True, help="output volume (.nii.gz, .nrrd, …) on the source's grid")
    parser.add_argument("--samples", type=positive_int, default=1, help="translations to average (≥ 2: also a std map)")
    parser.add_argument("--steps", type=positive_int, default=25, help="bridge sampling steps")
    parser.add_argument("--eta", type=unit_interval, default=None,
                        help="sampling noise in [0, 1] (default: 0 for one sample, 1 for several)")
    parser.add_argument("--reference", default=None, help="the true target volume: report metrics against it")


def std_path(out: str | Path) -> Path:
    """``result.nii.gz`` → ``result_std.nii.gz``."""
    out = Path(out)
    suffix = volume_suffix(out)
    return out.with_name(f"{out.name[: -len(suffix)]}_std{suffix}")


def paths(args):
    outputs = [Output.of(args.out)] + ([Output.of(std_path(args.out))] if args.samples > 1 else [])
    return [args.model, args.adapter, args.source, args.reference], outputs


def run(args, context):
    from ..translation.sampling import translate

    source = read_volume(args.source, context.budget)
    reference = read_volume(args.reference, context.budget) if args.reference else None
    model = load_model_for_job(args.model, context, args.samples, training=False, task="translation")
    if args.adapter:
        from ..adapters.apply import merge_adapter_package

        model = merge_adapter_package(model, args.adapter, context.events)
    spec = model.config.input
    on_grid, mapping = to_model_grid(source, spec.shape, spec.spacing)
    params = spec.normalisation().fit(on_grid.data)
    eta = args.eta if args.eta is not None else (0.0 if args.samples == 1 else 1.0)
    mean, std = translate(model, torch.from_numpy(params.apply(on_grid.data))[None, None], args.steps,
                          args.samples, eta, context.generator(), context.events, context.cancel)
    result = _on_source_grid(params.invert(mean[0, 0].numpy()), on_grid.affine, mapping)
    write_volume(result, args.out, overwrite=args.overwrite)
    context.events.artifact("volume", str(args.out), "translation")
    outputs = [Path(args.out)]
    if std is not None:
        scale = (params.source_high - params.source_low) / (params.target_high - params.target_low)
        write_volume(_on_source_grid(std[0, 0].numpy() * scale, on_grid.affine, mapping), std_path(args.out),
                     overwrite=args.overwrite)
        context.events.artifact("volume", str(std_path(args.out)), "uncertainty")
        outputs.append(std_path(args.out))
    if reference is not None:
        truth = resample(reference, on_grid.shape, on_grid.affine).data
        low, high = spec.normalisation().range
        scores = compare_volumes(mean[0, 0].numpy(), spec.normalisation().fit(truth).apply(truth), high - low)
        for name, value in scores.items():
            context.events.metric(name, value)
    return outputs


def _on_source_grid(data, model_affine, mapping: GridMapping) -> Volume:
    return from_model_grid(Volume(data, model_affine), mapping)
