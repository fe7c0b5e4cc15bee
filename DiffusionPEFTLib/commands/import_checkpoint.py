"""``import``: turn a third-party PyTorch checkpoint + a model.json (or a named config preset, e.g. ``tenvoo``)
into a model package, safely."""

from __future__ import annotations

from ..errors import InputError
from ..files import Output
from ..models.package import import_checkpoint, read_model_config, save_model
from ..models.presets import PRESETS, preset_config

NAME = "import"
HELP = "Import a .pt/.pth state_dict (never unpickling code) with a model.json or a --preset into a model package."


def add_arguments(parser) -> None:
    parser.add_argument("files", nargs="+", metavar="[CONFIG] CHECKPOINT",
                        help="model.json describing the architecture, scheduler and input spec, then the .pt/.pth "
                        "file holding the network's state_dict; with --preset only the checkpoint")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="use the built-in config of a published model instead of a model.json "
                        "(tenvoo: TenVOO's 166.7 M-parameter UNet, 160×224×160 at 1 mm, intensities in [0, 1])")
    parser.add_argument("--out", required=True, help="model package folder (or .zip) to write")


def config_and_checkpoint(args) -> tuple[str | None, str]:
    """(model.json path or None with --preset, checkpoint path); InputError for the wrong number of files."""
    expected = 1 if args.preset else 2
    if len(args.files) != expected:
        given = f"{' '.join(args.files)} ({len(args.files)} file{'s' if len(args.files) > 1 else ''})"
        if args.preset:
            raise InputError(f"import --preset {args.preset} takes one file, the checkpoint, not {given}.",
                             hint=f"Drop the model.json: 'diffusion-peft import --preset {args.preset} "
                             "CHECKPOINT --out PKG' (or drop --preset to use your model.json).")
        raise InputError(f"import takes a model.json and a checkpoint, not {given}.",
                         hint="Give both: 'diffusion-peft import model.json CHECKPOINT --out PKG', or name a config "
                         f"preset for a published model: --preset {{{','.join(sorted(PRESETS))}}}.")
    return (None, args.files[0]) if args.preset else (args.files[0], args.files[1])


def paths(args):
    config, checkpoint = config_and_checkpoint(args)
    return [path for path in (config, checkpoint) if path], [package_output(args.out)]


def package_output(path) -> Output:
    """A model package: one .zip file, or a folder."""
    return Output.of(path, folder=not str(path).lower().endswith(".zip"))


def run(args, context):
    config_path, checkpoint = config_and_checkpoint(args)
    config = preset_config(args.preset) if args.preset else read_model_config(config_path)
    model = import_checkpoint(config, checkpoint, where=f"preset {args.preset}" if args.preset else config_path)
    context.events.log(f"UNet: {model.parameter_count():,} parameters.")
    path = save_model(model, args.out, {"imported_from": str(checkpoint)}, overwrite=args.overwrite)
    context.events.artifact("model", str(path), "model")
    return [path]
