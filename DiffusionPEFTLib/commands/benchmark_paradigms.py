"""``benchmark-paradigms``: every fine-tuning method × seeds × step budgets on a simulated new domain.

The base model (the shipped demo model unless --model) is adapted to a simulated target contrast with
two classes of subjects (healthy, strong atrophy): each method fine-tunes one generator per class. Per
cell: trainable parameters, step time, peak memory, held-out denoising loss, FID / feature MMD /
precision / recall / coverage / Vendi / MS-SSIM of the samples, and the downstream gain of a small 3D
classifier trained on real + synthetic volumes over real ones alone. OUT is a study folder: every
finished cell is saved in OUT/paradigms.json at once, so running the same command again continues
where it stopped (a cancel keeps the finished cells); more --methods, --seeds or --budgets extend the
study. At the end: OUT/paradigms.md (mean ± std over seeds, what is inside the noise), OUT/pareto.png
and OUT/montages/METHOD.png. See docs/paradigms_benchmark.md.

Budgets are fine-tuning steps, not training-set sizes: steps are what a user sets and pays for, and
with a fixed training set the real-only classifier — the reference of every downstream gain — is the
same for every cell, so a gain's change between budgets is the generator's alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..adapters import plan_adapter
from ..adapters.registry import METHODS
from ..errors import InputError
from ..files import Output, check_apart, check_outputs
from ..finetuning import check_adapter_size
from ..footprint import TrainingSetup
from ..models import read_model_config
from ..paradigms import ISOLATION, ClassifierSettings, StudySettings, plan_cells, run_study
from ..paradigms.cell import method_options
from ..paradigms.study import STATE_NAME, check_continuable, is_study_folder
from ..resources import demo_model_dir
from ..simulate import SEQUENCES
from ..simulate.cohort import parse_atrophy
from .common import load_model_for_job
from .option_types import at_least_two, positive_float, positive_int

NAME = "benchmark-paradigms"
HELP = ("Benchmark fine-tuning methods × seeds × step budgets on a simulated new domain: sample quality, cost and "
        "downstream gain, mean ± std (resumable).")


def atrophy_range(text: str) -> str:
    """A simulator atrophy value or LOW:HIGH range within [0, 1] (kept as text, as the simulator takes it)."""
    try:
        parse_atrophy(text)
    except InputError:
        raise argparse.ArgumentTypeError(f"must be a value or LOW:HIGH range within [0, 1] (got {text!r})") from None
    return text


atrophy_range.__name__ = "atrophy range"


def add_arguments(parser) -> None:
    parser.add_argument("--model", default=None, help="base model package (default: the shipped demo model)")
    parser.add_argument("--target", choices=sorted(SEQUENCES), default="t2",
                        help="contrast of the new domain (default t2: bright CSF, so a change is visible)")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS), metavar="METHOD",
                        help=f"methods to compare (default: all: {', '.join(METHODS)})")
    parser.add_argument("--seeds", type=positive_int, default=3,
                        help="generator seeds per method and budget: --seed, --seed + 1, … (default 3)")
    parser.add_argument("--budgets", type=positive_int, nargs="+", default=[40, 120], metavar="STEPS",
                        help="fine-tuning steps per generator (default 40 120)")
    parser.add_argument("--rank", type=positive_int, default=4, help="rank of the methods that have one (default 4)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="one learning rate for all (default: each method's own)")
    parser.add_argument("--atrophy", type=atrophy_range, nargs=2, default=["0:0.2", "0.8:1"], metavar="LOW:HIGH",
                        help="the simulator's atrophy range of the healthy and of the atrophy class "
                        "(default 0:0.2 0.8:1)")
    parser.add_argument("--train-per-class", type=at_least_two, default=8,
                        help="real training subjects per class (default 8)")
    parser.add_argument("--heldout-per-class", type=at_least_two, default=16,
                        help="held-out real subjects per class (default 16)")
    parser.add_argument("--samples-per-class", type=at_least_two, default=8,
                        help="samples each generator draws (default 8)")
    parser.add_argument("--sampling-steps", type=positive_int, default=25, help="DDIM steps per sample (default 25)")
    parser.add_argument("--classifier-seeds", type=at_least_two, default=5,
                        help="downstream classifier seeds (their spread is the classifier's own noise; default 5)")
    parser.add_argument("--classifier-steps", type=positive_int, default=100,
                        help="downstream classifier training steps (default 100)")
    parser.add_argument("--isolate", choices=ISOLATION, default="process",
                        help="process: every cell in a fresh process (honest peak memory; default); "
                        "none: all in this one")
    parser.add_argument("--out", default="paradigms-study",
                        help="study folder (continued when it exists; default paradigms-study)")


def model_path(args) -> Path:
    return Path(args.model) if args.model else demo_model_dir()


def study_settings(args) -> StudySettings:
    config = read_model_config(model_path(args))
    classifier = ClassifierSettings(steps=args.classifier_steps, seeds=args.classifier_seeds)
    return StudySettings(model=model_path(args).name, model_sha256=config.weights_sha256, target=args.target,
                         atrophy=tuple(args.atrophy), train_per_class=args.train_per_class,
                         heldout_per_class=args.heldout_per_class, samples_per_class=args.samples_per_class,
                         sampling_steps=args.sampling_steps, rank=args.rank, lr=args.lr, data_seed=args.seed,
                         classifier=classifier.as_dict())


def paths(args):
    """Inputs: the model; output: the study folder — none when OUT is a study these settings continue."""
    inputs, out = [model_path(args)], Path(args.out)
    settings = study_settings(args)
    if is_study_folder(out):
        check_apart(out, inputs)
        check_continuable(out, settings)
        return inputs, []
    if out.is_dir() and any(out.iterdir()) and args.overwrite:
        check_outputs([Output(out, folder=True)], inputs, overwrite=True)  # a foreign folder is refused here
        raise InputError(f"{out} is not a benchmark-paradigms study; a study never replaces another output.",
                         hint="Choose a new --out (an existing study folder is continued, never replaced).")
    return inputs, [Output.of(out, folder=True)]


def check_model(args, context) -> None:
    """Before any file is written: a synthesis model that fits the memory budget, every method's adapter
    buildable, and for a class-conditioned model a class for the target contrast."""
    model = load_model_for_job(model_path(args), context, 1, training=True, task="synthesis",
                               setup=TrainingSetup())  # every weight: the largest the study trains
    names = list(model.config.input.condition_classes)
    if (model.config.unet.get("num_class_embeds") or 0) > 0 and args.target not in names:
        raise InputError(f"This model is class-conditioned ({', '.join(names) or 'unnamed classes'}) and has no class "
                         f"for --target {args.target}.", hint=f"Use --target with one of: {', '.join(names)}.")
    for method in dict.fromkeys(args.methods):
        check_adapter_size(plan_adapter(model.config.unet, method, **method_options(method, args.rank)))


def run(args, context):
    check_model(args, context)
    methods, budgets = list(dict.fromkeys(args.methods)), sorted(set(args.budgets))
    cells = plan_cells(methods, budgets, [args.seed + index for index in range(args.seeds)])
    out = Path(args.out)
    outputs = run_study(out, study_settings(args), cells, model_path(args), args.isolate, context, args.threads)
    context.events.artifact("report", str(out / "paradigms.md"), "report")
    context.events.artifact("figure", str(out / "pareto.png"), "pareto")
    return [path for path in outputs if path.name != STATE_NAME] + [out / STATE_NAME]
