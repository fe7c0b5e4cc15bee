"""``translate MODEL SOURCE --out OUT``: turn a source volume into the model's target contrast.

The output lies on the source's exact grid (shape and affine) in the source's intensity scale (the
target contrast's own scanner units are unknown). With ``--samples K`` (K ≥ 2) OUT is the mean of K
stochastic translations and ``OUT_std`` their per-voxel standard deviation (the uncertainty map).
With ``--reference TRUTH`` the mean is scored against it (PSNR, SSIM, NRMSE, MS-SSIM) on the model grid,
both in the model's normalised intensity range (each percentile-normalised, as in training).
A source whose intensity signature is unlike the model's training sources (:mod:`..translation.contrast_check`)
is translated, with a warning event and the warning in the outputs' header (NIfTI ``descrip``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..events import EventSink
from ..files import Output
from ..metrics import compare_volumes
from ..volumes import GridMapping, Volume, from_model_grid, read_volume, resample, to_model_grid, write_volume
from .common import load_model_for_job, suffixed
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
    return suffixed(out, "std")


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
    normalised = params.apply(on_grid.data)
    description = _check_contrast(model, normalised, Path(args.source).name, context.events)
    eta = args.eta if args.eta is not None else (0.0 if args.samples == 1 else 1.0)
    mean, std = translate(model, torch.from_numpy(normalised)[None, None], args.steps,
                          args.samples, eta, context.generator(), context.events, context.cancel)
    result = _on_source_grid(params.invert(mean[0, 0].numpy()), on_grid.affine, mapping)
    write_volume(result, args.out, overwrite=args.overwrite, description=description)
    context.events.artifact("volume", str(args.out), "translation")
    outputs = [Path(args.out)]
    if std is not None:
        scale = (params.source_high - params.source_low) / (params.target_high - params.target_low)
        write_volume(_on_source_grid(std[0, 0].numpy() * scale, on_grid.affine, mapping), std_path(args.out),
                     overwrite=args.overwrite, description=description)
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


def _check_contrast(model, normalised: np.ndarray, name: str, events: EventSink) -> str:
    """Compare the source (``normalised``: (X, Y, Z) on the model grid, in the model range) with the model's
    signature of its training sources: a warning event when it looks like another contrast, an info event
    otherwise or when the package has none. Returns the description for the outputs' header (ASCII)."""
    spec = model.spec
    signature, note = spec.source_signature, f"DiffusionPEFT translation {spec.source}->{spec.target}"
    if signature is None:
        events.log(f"This model has no intensity signature of its '{spec.source}' sources (it was trained before "
                   f"the check existed): the contrast of {name} is not checked.")
        return note
    grid = model.config.input
    distance, threshold = signature.distance(normalised, grid.normalisation().range, grid.spacing), signature.threshold
    if distance <= threshold:
        events.log(f"{name} looks like the model's source '{spec.source}' (distance {distance:.3f} ≤ {threshold:.3f}).")
        return note
    events.log(f"{name} looks like a different contrast than the model's source '{spec.source}' (distance "
               f"{distance:.3f} > threshold {threshold:.3f}); the translation may be meaningless.", level="warning")
    return f"DiffusionPEFT {spec.source}->{spec.target} WARNING: source unlike {spec.source} ({distance:.3f}>{threshold:.3f})"
