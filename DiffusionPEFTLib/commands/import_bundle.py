"""``import-bundle``: turn a downloaded MONAI model-zoo latent diffusion bundle into a latent model package.

The bundle's configs are read as data (its ``$`` expressions are never run) and its ``models/*.pt`` with
``torch.load(weights_only=True)``; see :mod:`DiffusionPEFTLib.models.bundle` for what is taken from where.
"""

from __future__ import annotations

from ..errors import InputError
from ..models.bundle import BundleOverrides, import_bundle
from ..models.latent_model import describe_conditions, save_latent_model
from .import_checkpoint import package_output
from .option_types import float_in, positive_float, positive_int
from .training_options import grid_spacing

NAME = "import-bundle"
HELP = "Import a MONAI model-zoo latent diffusion bundle (configs read as data, never run) into a model package."
percentile = float_in(0.0, 100.0)


def add_arguments(parser) -> None:
    parser.add_argument("bundle", help="the bundle's folder (configs/inference.json, configs/metadata.json, models/)")
    parser.add_argument("--out", required=True, help="model package folder (or .zip) to write")
    parser.add_argument("--shape", type=positive_int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                        help="model grid in voxels (default: the bundle's, e.g. 160 224 160; the model was trained "
                        "on that grid: a smaller one is for quick trials)")
    parser.add_argument("--spacing", type=positive_float, nargs="+", default=None,
                        help="mm, one value or three (default: the bundle's)")
    parser.add_argument("--scale-factor", type=positive_float, default=None,
                        help="latent scale factor (default: the bundle's literal scale_factor, else 1)")
    parser.add_argument("--percentiles", type=percentile, nargs=2, default=None, metavar=("LOW", "HIGH"),
                        help="intensity percentiles mapped to the bundle's value range (default: the bundle's "
                        "ScaleIntensityRangePercentiles, else 0 99.5)")


def paths(args):
    return [args.bundle], [package_output(args.out)]


def run(args, context):
    if args.percentiles and args.percentiles[0] >= args.percentiles[1]:
        raise InputError(f"--percentiles {args.percentiles[0]:g} {args.percentiles[1]:g}: LOW must be below HIGH.",
                         hint="E.g. --percentiles 0 99.5.")
    overrides = BundleOverrides(
        shape=tuple(args.shape) if args.shape else None,
        spacing=grid_spacing(args) if args.spacing else None,
        scale_factor=args.scale_factor,
        percentiles=tuple(args.percentiles) if args.percentiles else None)
    model = import_bundle(args.bundle, overrides)
    card = model.config.provenance["bundle"]
    spec, grid = model.spec, model.config.input
    context.events.log(
        f"Bundle {card['name']} {card.get('version', '')}: UNet {model.parameter_count():,} parameters on the "
        f"{'×'.join(map(str, model.grid_shape))} latent grid of {'×'.join(map(str, grid.shape))} voxels at "
        f"{'×'.join(f'{s:g}' for s in grid.spacing)} mm; autoencoder "
        f"{sum(p.numel() for p in model.autoencoder.parameters()):,} parameters; scale factor {spec.scale_factor:g}.")
    if spec.conditions:
        context.events.log(f"Conditions ({' + '.join(spec.conditioning)}): {describe_conditions(spec.conditions)}.")
    path = save_latent_model(model, args.out, overwrite=args.overwrite)
    context.events.artifact("model", str(path), "model")
    return [path]
