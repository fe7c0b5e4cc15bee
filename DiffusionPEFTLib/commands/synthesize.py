"""``synthesize``: sample volumes from a model package (optionally with an adapter merged in).

Without ``--like`` the output lies on the model's grid (centred on RAS 0,0,0) in the model's
intensity range. With ``--like REF`` it is mapped onto REF's exact grid (shape and affine) and
into REF's intensity scale, ready to sit next to REF.

A latent model decodes its sampled latents whole, or in overlapping windows when the memory budget cannot hold a
whole decode (``--decode auto``, the default; ``whole`` and ``tiled`` choose; docs/memory.md).
"""

from __future__ import annotations

from ..errors import InputError
from ..files import Output
from ..footprint import Job
from ..memory import resolve_decoding
from ..models.tiled_decode import DECODE_MODES, OVERLAP, Decoding
from ..synthesis import SAMPLERS, sample
from ..volumes import GridMapping, Volume, from_model_grid, model_grid_affine, read_volume, write_volume
from .common import contrast_label, load_model_for_job, numbered_outputs
from .option_types import condition_values, fraction, non_negative_int, positive_int, unit_interval

NAME = "synthesize"
HELP = "Sample new volumes from a (fine-tuned) diffusion model."


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model package folder or .zip")
    parser.add_argument("--adapter", default=None, help="adapter package to merge into the model first")
    parser.add_argument("--like", default=None, help="reference volume: output on its grid and intensity scale")
    parser.add_argument("--n", type=positive_int, default=1, help="number of volumes")
    parser.add_argument("--steps", type=positive_int, default=50, help="denoising steps")
    parser.add_argument("--sampler", choices=SAMPLERS, default="ddim")
    parser.add_argument("--eta", type=unit_interval, default=0.0, help="DDIM stochasticity in [0, 1] (0: deterministic)")
    parser.add_argument("--class-label", type=non_negative_int, default=None,
                        help="class index for class-conditioned models")
    parser.add_argument("--contrast", default=None,
                        help="class by name for class-conditioned models (one of the model's condition_classes)")
    parser.add_argument("--condition", type=condition_values, default=None, metavar="NAME=VALUE,…",
                        help="for a model conditioned on numbers (e.g. an imported brain LDM): age=0.6,ventricular_vol=0.3; "
                        "conditions not given take the model's defaults ('diffusion-peft info MODEL' lists them)")
    parser.add_argument("--batch", type=positive_int, default=1, help="volumes sampled together")
    parser.add_argument("--decode", choices=DECODE_MODES, default="auto",
                        help="latent models: decode the sampled latents whole, or tiled (in overlapping windows: the "
                        "memory of one window, but the volume differs from a whole decode; docs/memory.md); auto: "
                        "whole when it fits the memory budget, else tiled")
    parser.add_argument("--decode-window", type=positive_int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                        help="tiled decoding's window in latent voxels (default: the largest that fits the memory "
                        "budget of the latent grid with its longest side halved, again and again)")
    parser.add_argument("--decode-overlap", type=fraction, default=OVERLAP, metavar="FRACTION",
                        help="tiled decoding: overlap of neighbouring windows, a fraction of the window in [0, 1)")
    parser.add_argument("--out", required=True, help="output volume (.nii.gz, .nrrd, …); numbered when --n > 1")


def paths(args):
    return [args.model, args.adapter, args.like], [Output.of(path) for path in numbered_outputs(args.out, args.n)]


def run(args, context):
    outputs = numbered_outputs(args.out, args.n)
    reference = read_volume(args.like, context.budget) if args.like else None
    decoding = _decoding_within_budget(args, context)
    model = load_model_for_job(args.model, context, args.batch, training=False, task=("synthesis", "latent"),
                               decoding=decoding)
    if args.adapter:
        from ..adapters.apply import merge_adapter_package

        model = merge_adapter_package(model, args.adapter, context.events)
    spec = model.config.input
    label = contrast_label(model, args.contrast, args.class_label)
    images = sample(model, args.n, args.steps, args.sampler, args.eta, context.generator(), label,
                    args.batch, context.events, context.cancel, args.condition, decoding)
    if reference is not None:
        params = spec.normalisation().fit(_on_model_grid(reference, spec).data)
        affine = model_grid_affine(reference.center_ras(), spec.shape, spec.spacing)
    else:
        params, affine = None, model_grid_affine((0.0, 0.0, 0.0), spec.shape, spec.spacing)
    for image, path in zip(images, outputs):
        data = image[0].numpy()
        volume = Volume(params.invert(data) if params else data, affine)
        if reference is not None:
            volume = from_model_grid(volume, GridMapping(reference.shape, reference.affine))
        write_volume(volume, path, overwrite=args.overwrite)
        context.events.artifact("volume", str(path), "sample")
    return outputs


def _decoding_within_budget(args, context) -> Decoding:
    """The decoding ``--decode``, ``--decode-window`` and ``--decode-overlap`` ask for; for a latent model resolved
    against the memory budget (``auto``: whole when it fits, else the largest window that fits). The job's check
    (load_model_for_job) then refuses a whole decode over the budget with ``--decode tiled`` in the hint."""
    from ..models import read_model_config

    window = tuple(args.decode_window) if args.decode_window else None
    if window is not None and args.decode == "whole":
        raise InputError("--decode-window is for tiled decoding, not --decode whole.",
                         hint="Use --decode tiled (or auto) with --decode-window, or leave the window out.")
    requested = Decoding(args.decode, window, args.decode_overlap)
    config = read_model_config(args.model)
    if config.task != "latent":
        return requested  # sample() refuses a tiled decoding: a pixel model has nothing to decode
    decoding = resolve_decoding(Job(config, args.batch, "sample", device=context.device.type, decoding=requested),
                                context.budget).decoding
    if args.decode == "auto" and decoding.tiled:
        context.events.log(f"A whole decode does not fit the memory budget: {decoding.describe()}.")
    return decoding


def _on_model_grid(reference: Volume, spec) -> Volume:
    from ..volumes import to_model_grid

    return to_model_grid(reference, spec.shape, spec.spacing)[0]
