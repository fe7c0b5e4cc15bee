"""``assess``: how realistic and how diverse a model's samples are against held-out real volumes.

Writes ``assessment.json`` and ``montage.png`` (reals above samples) into OUT and emits every
number as a metric event (see ``assessment.py``: MS-SSIM and voxel MMD, FID, feature MMD, precision/
recall/density/coverage and Vendi scores on a 3D feature network). With ``--train`` the training-set
mean image is scored as a baseline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..assessment import assess_samples
from ..files import Output, staged
from ..plots import save_montage
from ..synthesis import sample
from ..training import TrainingVolumes, find_volume_files
from .common import class_of_contrast, data_inputs, load_model_for_job
from .option_types import at_least_two, non_negative_int, positive_int

NAME = "assess"
HELP = "Score a model's samples against real volumes: MS-SSIM, MMD, FID, precision/recall, Vendi (+ mean-image baseline)."


def add_arguments(parser) -> None:
    parser.add_argument("model", help="model package folder or .zip")
    parser.add_argument("real", nargs="+", help="held-out real volumes: folders, files or manifests")
    parser.add_argument("--adapter", default=None, help="adapter package to merge first")
    parser.add_argument("--train", nargs="*", default=None, help="training volumes: adds the mean-image baseline")
    parser.add_argument("--pattern", default=None, help="in folders, only files matching this glob")
    parser.add_argument("--contrast", default=None, help="with a simulator manifest: which contrast")
    parser.add_argument("--n", type=at_least_two, default=8, help="samples to draw (≥ 2: diversity needs pairs)")
    parser.add_argument("--steps", type=positive_int, default=50, help="DDIM steps")
    parser.add_argument("--class-label", type=non_negative_int, default=None)
    parser.add_argument("--batch", type=positive_int, default=1,
                        help="samples drawn together (faster on a CPU; the start noise is the same stream)")
    parser.add_argument("--feature-net", default=None,
                        help="feature network for FID/MMD/Vendi: a FeatureNet folder or MedicalNet .pth weights "
                             "(default: the shipped one)")
    parser.add_argument("--out", required=True, help="folder for assessment.json and montage.png")


def paths(args):
    inputs = [args.model, args.adapter, args.feature_net, *data_inputs(args.real, args.pattern, args.contrast),
              *data_inputs(args.train, args.pattern, args.contrast)]
    return inputs, [Output.of(args.out, folder=True)]


def run(args, context):
    model = load_model_for_job(args.model, context, 1, training=False)
    if args.adapter:
        from ..adapters.apply import merge_adapter_package

        model = merge_adapter_package(model, args.adapter, context.events)
    spec = model.config.input
    reals = TrainingVolumes.load(find_volume_files(args.real, args.pattern, args.contrast), spec, budget=context.budget)
    mean = None
    if args.train:
        train = TrainingVolumes.load(find_volume_files(args.train, args.pattern, args.contrast), spec,
                                     budget=context.budget)
        mean = train.images.mean(dim=0)[0].numpy()
    label = class_of_contrast(model, args.contrast, args.class_label)
    samples = sample(model, args.n, args.steps, "ddim", generator=context.generator(), class_label=label,
                     batch_size=args.batch,
                     events=context.events, cancel=context.cancel)
    sample_arrays = [s[0].numpy() for s in samples]
    real_arrays = [r[0].numpy() for r in reals.images]
    low, high = spec.normalisation().range
    result = assess_samples(sample_arrays, real_arrays, mean, data_range=high - low,
                            network=feature_network(args.feature_net, spec))
    result.update({"samples": args.n, "reals": len(real_arrays), "ddim_steps": args.steps})
    for name, value in result.items():
        context.events.metric(name, value)
    columns = min(8, args.n, len(real_arrays))
    rows = {"held-out real": real_arrays[:columns], "samples": sample_arrays[:columns]}
    if mean is not None:
        rows["training mean"] = [mean]
    with staged(args.out, overwrite=args.overwrite, folder=True) as folder:
        (folder / "assessment.json").write_text(json.dumps(result, indent=2))
        save_montage(rows, folder / "montage.png")
        np.save(folder / "samples.npy", np.stack(sample_arrays))
    out = Path(args.out)
    paths = [out / "assessment.json", out / "montage.png", out / "samples.npy"]
    for path in paths:
        context.events.artifact("file", str(path), "assessment")
    return paths


def feature_network(path, spec):
    """The network for feature metrics: None (the shipped one), a FeatureNet folder, or MedicalNet weights
    (a file) resampling volumes onto the model's grid."""
    if path is None:
        return None
    from ..metrics import load_feature_net, load_medicalnet

    return load_medicalnet(path, shape=spec.shape, spacing=spec.spacing) if Path(path).is_file() else load_feature_net(path)
