"""``synthesize``: sample volumes from a model package (optionally with an adapter merged in).

Without ``--like`` the output lies on the model's grid (centred on RAS 0,0,0) in the model's
intensity range. With ``--like REF`` it is mapped onto REF's exact grid (shape and affine) and
into REF's intensity scale, ready to sit next to REF.
"""

from __future__ import annotations

from ..files import Output
from ..synthesis import SAMPLERS, sample
from ..volumes import GridMapping, Volume, from_model_grid, model_grid_affine, read_volume, write_volume
from .common import contrast_label, load_model_for_job, numbered_outputs
from .option_types import condition_values, non_negative_int, positive_int, unit_interval

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
    parser.add_argument("--out", required=True, help="output volume (.nii.gz, .nrrd, …); numbered when --n > 1")


def paths(args):
    return [args.model, args.adapter, args.like], [Output.of(path) for path in numbered_outputs(args.out, args.n)]


def run(args, context):
    outputs = numbered_outputs(args.out, args.n)
    reference = read_volume(args.like, context.budget) if args.like else None
    model = load_model_for_job(args.model, context, args.batch, training=False, task=("synthesis", "latent"))
    if args.adapter:
        from ..adapters.apply import merge_adapter_package

        model = merge_adapter_package(model, args.adapter, context.events)
    spec = model.config.input
    label = contrast_label(model, args.contrast, args.class_label)
    images = sample(model, args.n, args.steps, args.sampler, args.eta, context.generator(), label,
                    args.batch, context.events, context.cancel, args.condition)
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


def _on_model_grid(reference: Volume, spec) -> Volume:
    from ..volumes import to_model_grid

    return to_model_grid(reference, spec.shape, spec.spacing)[0]
