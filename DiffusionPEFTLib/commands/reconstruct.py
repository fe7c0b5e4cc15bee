"""``reconstruct MODEL SOURCE --out OUT``: an image from undersampled k-space with a diffusion prior.

Retrospective (default): SOURCE is a fully sampled magnitude volume; it is mapped onto the model grid,
its k-space is undersampled (``--acceleration``, ``--mask``, ``--coils``) and reconstructed; the metrics
compare against SOURCE itself. With ``--kspace``, SOURCE is a k-space file and ``--mask-file`` its mask
(layouts: :mod:`..reconstruction.acquisition`); its grid must be the model's.
Outputs on the source's grid: OUT (the mean of ``--samples`` reconstructions), ``OUT_zerofilled`` and, for
K ≥ 2 with a diffusion method, ``OUT_std`` (per-voxel standard deviation: the uncertainty map); the
classical methods (cs, zero-filled) are deterministic and give one image whatever ``--samples``.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..files import Output
from ..reconstruction import RECONSTRUCTION_METHODS, reconstruct_measurement
from ..reconstruction.acquisition import read_kspace, retrospective
from ..reconstruction.evaluation import reconstruction_scores
from ..reconstruction.masks import MASK_KINDS
from ..reconstruction.posterior import DIFFUSION_METHODS, PosteriorSettings
from ..volumes import GridMapping, Volume, from_model_grid, model_grid_affine, read_volume, to_model_grid, write_volume
from .common import contrast_label, load_model_for_job, suffixed
from .option_types import positive_float, positive_int, unit_interval

NAME = "reconstruct"
HELP = "Reconstruct a volume from undersampled k-space with a diffusion prior (DDNM, DDS, DPS) or CS."
ROLES = {"": "reconstruction", "zerofilled": "zero_filled", "std": "uncertainty"}


def add_arguments(parser) -> None:
    parser.add_argument("model", help="prior: a synthesis model package (folder or .zip)")
    parser.add_argument("source", help="fully sampled magnitude volume (retrospective), or a k-space file with --kspace")
    parser.add_argument("--out", required=True, help="output volume (.nii.gz, .nrrd, …) on the source's grid")
    parser.add_argument("--method", choices=RECONSTRUCTION_METHODS, default="ddnm")
    parser.add_argument("--acceleration", type=float, default=4.0, help="R = all phase-encode samples ÷ acquired")
    parser.add_argument("--mask", choices=MASK_KINDS, default="equispaced", help="sampling pattern over (ky, kz)")
    parser.add_argument("--centre-fraction", type=float, default=None,
                        help="fully sampled centre (default fastMRI's 0.32 / R: 0.08 at R = 4)")
    parser.add_argument("--coils", type=positive_int, default=1, help="simulated receive coils (birdcage maps)")
    parser.add_argument("--kspace", action="store_true", help="SOURCE is k-space (.npy/.h5), see --mask-file")
    parser.add_argument("--mask-file", default=None, help="with --kspace: the (Y, Z) 0/1 sampling mask (.npy/.h5)")
    parser.add_argument("--like", default=None, help="with --kspace: a volume on the k-space's grid, for geometry")
    parser.add_argument("--samples", type=positive_int, default=1, help="posterior samples (≥ 2: also a std map)")
    parser.add_argument("--steps", type=positive_int, default=50, help="diffusion sampling steps")
    parser.add_argument("--eta", type=unit_interval, default=0.85, help="DDIM noise in [0, 1]")
    parser.add_argument("--dps-scale", type=positive_float, default=1.0, help="DPS step ζ′")
    parser.add_argument("--cs-weight", type=positive_float, default=None,
                        help="L1-wavelet λ relative to max|Aᴴy| (default: tuned on simulated validation data)")
    parser.add_argument("--contrast", default=None, help="class of a class-conditioned prior (e.g. t1, flair)")
    parser.add_argument("--adapter", default=None, help="adapter package to merge into the prior first")


def output_tags(args) -> list[str]:
    """"" (the reconstruction), "zerofilled" and, for several samples of a diffusion method, "std"."""
    return ["", "zerofilled"] + (["std"] if args.samples > 1 and args.method in DIFFUSION_METHODS else [])


def outputs_of(args) -> list[Path]:
    return [Path(args.out) if not tag else suffixed(args.out, tag) for tag in output_tags(args)]


def paths(args):
    return ([args.model, args.source, args.mask_file, args.like, args.adapter],
            [Output.of(path) for path in outputs_of(args)])


def run(args, context):
    model = load_model_for_job(args.model, context, args.samples, training=args.method == "dps")
    if args.adapter:
        from ..adapters.apply import merge_adapter_package

        model = merge_adapter_package(model, args.adapter, context.events)
    spec = model.config.input
    label = contrast_label(model, args.contrast)
    model.check_class_label(label)
    truth, geometry, measurement = _acquire(args, spec, context)
    settings = PosteriorSettings(args.steps, args.eta, args.dps_scale)
    result = reconstruct_measurement(model, measurement, args.method, args.samples, settings, context.generator(),
                                     label, args.cs_weight, context.events, context.cancel)
    volumes = {"": result.mean, "zerofilled": result.zero_filled, "std": result.std}
    written = []
    for tag, path in zip(output_tags(args), outputs_of(args)):
        write_volume(from_model_grid(Volume(volumes[tag], geometry[0]), geometry[1]), path, overwrite=args.overwrite,
                     description=f"DiffusionPEFT reconstruction {args.method} R{args.acceleration:g}")
        context.events.artifact("volume", str(path), ROLES[tag])
        written.append(path)
    if truth is not None:
        for prefix, image in (("", result.mean), ("zero_filled_", result.zero_filled)):
            for name, value in reconstruction_scores(image, truth).items():
                context.events.metric(prefix + name, value)
    return written


def _acquire(args, spec, context):
    """(truth on the model grid or None, (model-grid affine, mapping to the output grid), measurement)."""
    normalisation = spec.normalisation()
    if not args.kspace:
        if args.mask_file:
            raise InputError("--mask-file goes with --kspace.", hint="Add --kspace, or use --mask for a simulated "
                             "undersampling of a volume.")
        source = read_volume(args.source, context.budget)
        on_grid, mapping = to_model_grid(source, spec.shape, spec.spacing)
        if not source.same_grid(on_grid):
            context.events.log(f"{Path(args.source).name} ({'×'.join(map(str, source.shape))} voxels of "
                               f"{'×'.join(f'{s:.3g}' for s in source.spacing)} mm) is resampled onto the prior's grid "
                               f"({'×'.join(map(str, spec.shape))} of {spec.spacing[0]:g} mm); the acquisition is "
                               "simulated there and the results are mapped back onto the source's grid.",
                               level="warning")
        measurement = retrospective(on_grid.data, args.acceleration, args.mask, args.coils, normalisation,
                                    args.centre_fraction, context.seed)
        return on_grid.data, (on_grid.affine, mapping), measurement
    if not args.mask_file:
        raise InputError("--kspace needs --mask-file, the sampling mask of that k-space.",
                         hint="Save the (Y, Z) 0/1 mask with numpy.save and pass it with --mask-file.")
    measurement = read_kspace(args.source, args.mask_file, normalisation)
    shape = tuple(measurement.kspace.shape[1:])
    if shape != tuple(spec.shape):
        raise InputError(f"The k-space grid {'×'.join(map(str, shape))} is not the prior's "
                         f"{'×'.join(map(str, spec.shape))}; k-space cannot be resampled onto another grid.",
                         hint="Use a prior trained on the acquisition's grid (or crop/zero-pad the k-space to it).")
    if args.like:
        like = read_volume(args.like, context.budget)
        if like.shape != shape:
            raise InputError(f"--like {Path(args.like).name} has shape {like.shape}, the k-space {shape}.",
                             hint="Give a volume on the k-space's grid (e.g. the scanner's reconstruction).")
        affine = like.affine
    else:
        affine = model_grid_affine((0.0, 0.0, 0.0), spec.shape, spec.spacing)
    return None, (affine, GridMapping(shape, affine)), measurement


