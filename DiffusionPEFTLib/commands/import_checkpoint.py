"""``import``: turn a third-party PyTorch checkpoint + a model.json into a model package, safely."""

from __future__ import annotations

from ..files import Output
from ..models.package import import_checkpoint, save_model

NAME = "import"
HELP = "Import a .pt/.pth state_dict (never unpickling code) with a model.json into a model package."


def add_arguments(parser) -> None:
    parser.add_argument("config", help="model.json describing the architecture, scheduler and input spec")
    parser.add_argument("checkpoint", help=".pt/.pth file holding the network's state_dict")
    parser.add_argument("--out", required=True, help="model package folder (or .zip) to write")


def paths(args):
    return [args.config, args.checkpoint], [package_output(args.out)]


def package_output(path) -> Output:
    """A model package: one .zip file, or a folder."""
    return Output.of(path, folder=not str(path).lower().endswith(".zip"))


def run(args, context):
    model = import_checkpoint(args.config, args.checkpoint)
    path = save_model(model, args.out, {"imported_from": str(args.checkpoint)}, overwrite=args.overwrite)
    context.events.artifact("model", str(path), "model")
    return [path]
