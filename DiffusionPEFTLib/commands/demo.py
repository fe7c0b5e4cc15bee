"""``demo``: the main job on the embedded default — adapt the shipped base model to a new domain.

Simulates a small target cohort (T2w by default; FLAIR, or atrophied T1w) plus held-out subjects, samples the
base model, fine-tunes an adapter (TenVOO-L by default), samples again with the same start noise,
scores both against the held-out subjects; then translates held-out T1w subjects into FLAIR with the
shipped translation model (scored against their true FLAIR beside histogram matching); reconstructs
held-out subjects of the target domain from 4× undersampled k-space with the fine-tuned model as the prior
(DDNM, beside compressed sensing and zero-filling); and writes a report folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..adapters import save_adapter
from ..adapters.registry import METHODS
from ..assessment import assess_samples
from ..files import Output, staged, write_text_atomic
from ..finetuning import FineTuneSettings, fine_tune
from ..footprint import TrainingSetup
from ..metrics import denoising_loss
from ..metrics.feature_net import contrast_shares
from ..plots import save_loss_curve, save_montage
from ..resources import demo_model_dir, translation_model_dir
from ..simulate import write_cohort
from ..synthesis import sample
from ..training import TrainingVolumes, find_volume_files
from ..volumes import Volume, model_grid_affine, write_volume
from ..demo_report import write_report
from ..reconstruction.evaluation import reconstruct_simulated, simulated_subjects
from ..translation.evaluation import translate_simulated
from .common import load_model_for_job
from .option_types import at_least_two, non_negative_int, positive_float, positive_int

NAME = "demo"
HELP = "Run the demo: fine-tune the shipped base model to a simulated new domain and report the gain."
TARGETS = {
    "flair": ({"contrasts": "flair"}, 0.0, "FLAIR (CSF nulled) — a contrast the base model never saw"),
    "t2": ({"contrasts": "t2"}, 0.0, "T2w (bright CSF and ventricles) — a contrast the base model never saw"),
    "atrophy": ({"contrasts": "t1"}, "0.7:1.0", "T1w with strong atrophy (enlarged ventricles, thin cortex)"),
}
DEMO_LR = {"tenvoo-l": 1e-4, "tenvoo-q": 1e-4}
"""Learning rates for the demo's T1w → T2w shift where they differ from the method's default (chosen on the
smaller T1w → FLAIR shift). TenVOO-L, 80 steps, seed 0: lr 1e-4 vs 1e-5 gives held-out loss 0.0829 vs 0.0836,
FID 20.4 vs 33.4 (training mean image 28.8), and samples whose ventricles visibly brighten."""


def add_arguments(parser) -> None:
    parser.add_argument("--model", default=None, help="base model package (default: the shipped demo model)")
    parser.add_argument("--target", choices=sorted(TARGETS), default="t2", help="the new domain")
    parser.add_argument("--method", choices=sorted(METHODS), default="tenvoo-l")
    parser.add_argument("--rank", type=positive_int, default=4)
    parser.add_argument("--steps", type=positive_int, default=80, help="fine-tuning steps")
    parser.add_argument("--lr", type=positive_float, default=None, help="learning rate (default: DEMO_LR, else the method's own)")
    parser.add_argument("--train-subjects", type=at_least_two, default=12)
    parser.add_argument("--heldout-subjects", type=at_least_two, default=8)
    parser.add_argument("--samples", type=at_least_two, default=4, help="samples per model")
    parser.add_argument("--sampling-steps", type=positive_int, default=25)
    parser.add_argument("--translation-model", default=None,
                        help="translation model package (default: the shipped T1w → FLAIR model)")
    parser.add_argument("--translate-subjects", type=non_negative_int, default=3,
                        help="held-out subjects to translate (0: skip the translation part)")
    parser.add_argument("--translate-samples", type=positive_int, default=3,
                        help="translations per subject (≥ 2: also an uncertainty map)")
    parser.add_argument("--translate-steps", type=positive_int, default=20, help="bridge sampling steps")
    parser.add_argument("--reconstruct-subjects", type=non_negative_int, default=1,
                        help="held-out subjects to reconstruct from undersampled k-space (0: skip that part)")
    parser.add_argument("--reconstruct-acceleration", type=positive_float, default=4.0, help="R of the line mask")
    parser.add_argument("--reconstruct-samples", type=positive_int, default=2,
                        help="posterior samples per subject (≥ 2: also an uncertainty map)")
    parser.add_argument("--out", default="demo-report", help="report folder")


def paths(args):
    inputs = [base_model_path(args)] + ([translation_model_path(args)] if args.translate_subjects else [])
    return inputs, [Output.of(args.out, folder=True)]


def base_model_path(args) -> Path:
    return Path(args.model) if args.model else demo_model_dir()


def translation_model_path(args) -> Path:
    return Path(args.translation_model) if args.translation_model else translation_model_dir()


def run(args, context):
    final = Path(args.out)
    with staged(final, overwrite=args.overwrite, folder=True) as out:
        total_s = write_demo(out, final.name, args, context)
    report = final / "report.md"
    context.events.artifact("report", str(report), "report")
    context.events.log(f"Demo finished in {total_s:.0f} s. Open {report}.")
    return [report, final / "adapter"]


def write_demo(out: Path, out_name: str, args, context) -> float:
    """Everything the demo makes, written into ``out`` (a staged folder); returns the wall time in s."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    model_path = base_model_path(args)
    model = load_model_for_job(model_path, context, 1, training=True,
                               setup=TrainingSetup.of(args.method, options={"rank": args.rank} if args.rank else None))
    spec = model.config.input
    subject_options, atrophy, description = TARGETS[args.target]
    cohort = dict(shape=spec.shape, spacing=spec.spacing, events=context.events, cancel=context.cancel,
                  atrophy=atrophy, **subject_options)
    contrast = subject_options["contrasts"]
    train_manifest = write_cohort(out / "data" / "train", args.train_subjects, seed=context.seed + 100, **cohort)[0]
    heldout_manifest = write_cohort(out / "data" / "heldout", args.heldout_subjects, seed=context.seed + 200, **cohort)[0]
    heldout = TrainingVolumes.load(find_volume_files([heldout_manifest], contrast=contrast), spec, budget=context.budget)
    reals = [image[0].numpy() for image in heldout.images]
    timings["simulate cohorts"] = time.monotonic() - started

    def draw(label: str):
        tick = time.monotonic()
        images = sample(model, args.samples, args.sampling_steps, "ddim", generator=context.generator(7),
                        events=context.events, cancel=context.cancel)
        timings[f"sample {label}"] = time.monotonic() - tick
        return [image[0].numpy() for image in images]

    model.eval()
    heldout_loss = {"base": denoising_loss(model, heldout.images)}
    base_samples = draw("base model")
    tick = time.monotonic()
    settings = FineTuneSettings(method=args.method, options={"rank": args.rank} if args.rank else {},
                                steps=args.steps, lr=args.lr or DEMO_LR.get(args.method))
    outcome = fine_tune(model, find_volume_files([train_manifest], contrast=contrast), settings,
                        out / "adapter.work", context)
    timings["fine-tune"] = time.monotonic() - tick
    save_adapter(outcome.adapters, out / "adapter", base_fingerprint=model.config.weights_sha256,
                 base_architecture=model.config.unet, provenance=outcome.provenance)
    counts = outcome.adapters.counts().as_dict()
    model.unet = outcome.adapters.merge_and_unload()
    model.eval()
    heldout_loss["fine_tuned"] = denoising_loss(model, heldout.images)
    tuned_samples = draw("fine-tuned")

    tick = time.monotonic()
    low, high = spec.normalisation().range
    train_mean = TrainingVolumes.load(find_volume_files([train_manifest], contrast=contrast), spec,
                                      budget=context.budget).images.mean(dim=0)[0].numpy()
    metrics = {"base": assess_samples(base_samples, reals, train_mean, data_range=high - low),
               "fine_tuned": assess_samples(tuned_samples, reals, train_mean, data_range=high - low)}
    for model_name, images in (("base", base_samples), ("fine_tuned", tuned_samples)):
        metrics[model_name]["heldout_loss"] = heldout_loss[model_name]
        metrics[model_name]["judged_target_contrast"] = contrast_shares(images)[contrast]
    for model_name, values in metrics.items():
        for name, value in values.items():
            context.events.metric(name, value, model=model_name)
    timings["evaluate"] = time.monotonic() - tick
    affine = model_grid_affine((0.0, 0.0, 0.0), spec.shape, spec.spacing)
    for label, images in (("base", base_samples), ("fine_tuned", tuned_samples)):
        for index, image in enumerate(images, 1):
            write_volume(Volume(image, affine), out / "samples" / f"{label}_{index:02d}.nii.gz")
    columns = min(6, args.samples, len(reals))
    save_montage({"held-out targets": reals[:columns], "base model samples": base_samples[:columns],
                  f"fine-tuned ({args.method}) samples": tuned_samples[:columns]}, out / "montage.png")
    save_loss_curve(outcome.result.losses, out / "loss_curve.png", title=f"{args.method} fine-tuning loss")
    reconstruction = None
    if args.reconstruct_subjects:
        tick = time.monotonic()
        subjects = simulated_subjects(heldout_manifest, contrast, spec)[: args.reconstruct_subjects]
        reconstruction = reconstruct_simulated(model, subjects, out, args.reconstruct_acceleration,
                                               args.reconstruct_samples, args.sampling_steps, context)
        timings["reconstruct"] = time.monotonic() - tick
    translation = None
    if args.translate_subjects:
        tick = time.monotonic()
        translator = load_model_for_job(translation_model_path(args), context, args.translate_samples,
                                        training=False, task="translation")
        names = translator.spec
        manifest = write_cohort(out / "data" / "translation", args.translate_subjects, seed=context.seed + 300,
                                shape=translator.config.input.shape, spacing=translator.config.input.spacing,
                                contrasts=f"{names.source},{names.target}", atrophy="0:0.5", events=context.events,
                                cancel=context.cancel)[0]
        translation = translate_simulated(translator, manifest, out, args.translate_samples, args.translate_steps,
                                          context)
        translation["model"] = translation_model_path(args).name
        timings["translate"] = time.monotonic() - tick
    timings["total"] = time.monotonic() - started
    report_settings = {
        "model": model_path.name, "target_description": description, "train_subjects": args.train_subjects,
        "heldout_subjects": args.heldout_subjects, "method": args.method, "options": settings.options,
        "steps": outcome.result.steps, "lr": outcome.provenance["lr"], "seed": context.seed,
        "samples": args.samples, "sampling_steps": args.sampling_steps, "out_name": out_name, "contrast": contrast,
        "target": args.target, "judged_reals": contrast_shares(reals)[contrast],
    }
    write_text_atomic(out / "metrics.json", json.dumps({"settings": report_settings, "counts": counts,
                                                        "metrics": metrics, "translation": translation,
                                                        "reconstruction": reconstruction, "timings_s": timings},
                                                       indent=2))
    write_report(out, report_settings, metrics, counts, timings, translation, reconstruction)
    return timings["total"]
