"""Translation quality on held-out simulated subjects: the bridge model beside what a user would pick instead.

For each target contrast (T1w → T2w, T1w → FLAIR), on the same paired training cohort and in one run:
- **bridge**: our translation model (PPDM-style, p = 2, the shipped recipe's architecture), trained for
  ``--budget-s`` seconds of wall clock by the library's trainer;
- **U-Net**: a deterministic MONAI ``UNet`` regression source → target (MSE), same trainer, same batch,
  augmentation and wall-clock budget;
- both at AdamW learning rate 1e-3 (the usual choice for a regression U-Net; for the bridge, a 300 s pilot on
  T1w → T2w gave brain SSIM 0.49 at 1e-3 vs 0.19 at the shipped recipe's 2e-4);
- **histogram matching**: the source histogram-matched (scikit-image) to 20 training targets;
- for FLAIR, also the **shipped** model (``--shipped``; trained longer, see its card).
Scores on ``--heldout`` subjects, in the model's normalised range [-1, 1] (data range 2): PSNR, SSIM,
NRMSE over the whole volume and inside the brain (tissue labels > 0); the bridge's translation is the
mean of ``--samples`` draws (η = ``--eta``, default 1; ``--more-samples K``: the same bridge also as the mean
of K draws) and its per-voxel std is correlated with the absolute error inside the brain (Pearson r, per
subject). Mean ± std over subjects; per-subject wins bridge vs U-Net on brain SSIM.
Also on request: ``--snapshots-s S …`` scores both models as they were after S s of the same run (a learning
curve: the learning rate is constant, so that is what a budget of S s gives), ``--one-step`` the bridge's x̂0 at
t = T alone (no sampler), ``--keep-models`` saves the trained weights.

Usage: python benchmarks/bench_translation.py [--budget-s 720] [--targets t2 flair] [--heldout 8] [--samples 4]
       [--shipped Resources/Models/t1-to-flair-64x80x64] [--threads 1] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.commands import translate_train  # noqa: E402
from DiffusionPEFTLib.commands.option_types import float_in  # noqa: E402
from DiffusionPEFTLib.errors import JobCancelled  # noqa: E402
from DiffusionPEFTLib.plots import save_case_figure  # noqa: E402
from DiffusionPEFTLib.training import Trainer, TrainConfig, TrainingVolumes  # noqa: E402
from DiffusionPEFTLib.training.callbacks import TrainingCallback  # noqa: E402
from DiffusionPEFTLib.training.ema import weight_average  # noqa: E402
from DiffusionPEFTLib.translation.baseline import histogram_matched  # noqa: E402
from DiffusionPEFTLib.metrics.summary import uncertainty_error_correlation  # noqa: E402
from DiffusionPEFTLib.translation.evaluation import simulated_brain_masks, translation_scores  # noqa: E402
from DiffusionPEFTLib.translation.model import TranslationModel, load_translation_model  # noqa: E402
from DiffusionPEFTLib.translation.pairs import find_pairs  # noqa: E402
from DiffusionPEFTLib.translation.sampling import translate  # noqa: E402
from DiffusionPEFTLib.volumes import read_volume, to_model_grid  # noqa: E402

ARCHITECTURE = ["--shape", "64", "80", "64", "--spacing", "3", "--norm-groups", "16", "--head-channels", "32",
                "--puzzle", "2", "--prediction", "x0", "--pg-weight", "0.1"]
"""The shipped T1w → FLAIR model's architecture (scripts/build_translation_model.sh); its widths come from
``--bridge-channels``, the bridge kind and its noise level from ``--bridge`` and ``--max-var`` (the shipped
recipe: 16 32 64, bbdm, 1.0)."""
BATCH, HISTOGRAM_EXAMPLES = 2, 20
DATA_RANGE = 2.0  # the model range [-1, 1]


class UNetRegression(nn.Module):
    """MONAI ``UNet`` (16, 32, 64, 128 channels, 2 residual units) trained to output the target from the source
    by MSE; it speaks the trainer's model interface (``loss``, ``training_timesteps``), ignoring noise and t."""

    def __init__(self):
        super().__init__()
        from monai.networks.nets import UNet

        self.unet = UNet(spatial_dims=3, in_channels=1, out_channels=1, channels=(16, 32, 64, 128), strides=(2, 2, 2),
                         num_res_units=2)

    def training_timesteps(self, count: int, generator: torch.Generator) -> torch.Tensor:
        return torch.zeros(count, dtype=torch.long)

    def loss(self, x0, noise, t, class_labels=None, condition=None) -> torch.Tensor:
        return F.mse_loss(self.unet(condition), x0)

    @torch.no_grad()
    def predict(self, source: torch.Tensor) -> torch.Tensor:
        """(B, 1, X, Y, Z) source → target, same shape."""
        self.eval()
        return self.unet(source)


class Deadline(TrainingCallback):
    """Cancels training once ``seconds`` of wall clock have passed (the trainer then stops with JobCancelled)."""

    def __init__(self, seconds: float):
        self.seconds, self.started = seconds, time.monotonic()

    def after_step(self, trainer, step, batch) -> None:
        if time.monotonic() - self.started >= self.seconds:
            trainer.cancel.cancel()


class Snapshots(TrainingCallback):
    """Copies ``model``'s weights once each of ``seconds`` (wall clock since ``started``) has passed. The learning
    rate is constant, so a snapshot at S s is what a run with budget S s would have ended with."""

    def __init__(self, model: nn.Module, seconds: list[float], started: float):
        self.model, self.pending, self.started, self.taken = model, sorted(seconds), started, {}

    def after_step(self, trainer, step, batch) -> None:
        elapsed = time.monotonic() - self.started
        while self.pending and elapsed >= self.pending[0]:
            self.taken[self.pending.pop(0)] = {"steps": trainer.step, "train_s": round(elapsed, 1),
                                               "weights": copy.deepcopy(self.model.state_dict())}


def train_for(model: nn.Module, data: TrainingVolumes, lr: float, seconds: float, seed: int,
              snapshots: list[float] = (), ema: float | None = None) -> dict:
    """Train all of ``model``'s parameters for ``seconds`` of wall clock → steps and seconds actually used, and
    the weights at each of ``snapshots`` seconds (``"snapshots"``: seconds → steps, train_s, weights). ema: the
    decay of a weight average; the model then ends with the average, and the snapshots are of it."""
    config = TrainConfig(steps=10**9, batch_size=BATCH, lr=lr, checkpoint_every=0, seed=seed)
    deadline = Deadline(seconds)
    average = weight_average(model, ema)
    copies = Snapshots(average.averaged if average else model, [s for s in snapshots if s < seconds],
                       deadline.started)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(model, list(model.parameters()), data, config, workdir,
                          callbacks=[deadline, *([average] if average else []), copies])
        try:
            trainer.run()
        except JobCancelled:
            pass
    if average:
        average.copy_to(model)
    return {"steps": trainer.step, "train_s": round(time.monotonic() - deadline.started, 1),
            "parameters": sum(p.numel() for p in model.parameters()), "snapshots": copies.taken}


def bridge_draws(args) -> dict[str, int]:
    """The rows of the bridge trained in this run → how many draws each averages: "bridge" (``--samples``)
    and one "bridge, mean of K" per ``--more-samples`` K."""
    return {"bridge": args.samples, **{f"bridge, mean of {count}": count for count in args.more_samples}}


ONE_STEP = "bridge, one step"
"""The row of the bridge's x̂0 predicted at t = T from the source alone (``--one-step``): one network call, no
noise; what is left of the bridge when its sampler is taken away (a regression trained with bridge noise)."""


def snapshot_name(method: str, seconds: float) -> str:
    return f"{method} @ {seconds:.0f} s"


def counterpart(name: str) -> str:
    """The U-Net row a bridge row is compared with: the snapshot of the same second, else the final U-Net."""
    return name.replace("bridge", "U-Net") if " @ " in name else "U-Net"


def comparisons(args, methods: dict) -> list[tuple[str, str]]:
    """(bridge row, U-Net row) pairs of this run that are compared subject by subject."""
    names = [*bridge_draws(args), ONE_STEP, *(snapshot_name("bridge", seconds) for seconds in args.snapshots_s)]
    return [(name, counterpart(name)) for name in names if name in methods and counterpart(name) in methods]


def higher_ssim(methods: dict, name: str, against: str) -> list[int]:
    """[subjects where ``name``'s brain SSIM is higher than ``against``'s, subjects]."""
    pairs = list(zip(methods[name]["subjects"], methods[against]["subjects"]))
    return [sum(mine["ssim_brain"] > theirs["ssim_brain"] for mine, theirs in pairs), len(pairs)]


def brain_masks(manifest: Path, sources: list[Path], spec) -> list[np.ndarray]:
    """Each held-out subject's brain on its source's model grid, (X, Y, Z) bool."""
    grids = [to_model_grid(read_volume(source), spec.shape, spec.spacing)[0] for source in sources]
    return simulated_brain_masks(manifest, sources, grids)


def evaluate(target: str, args, train: TrainingVolumes, heldout: TrainingVolumes, masks, models: dict) -> dict:
    """Per-method, per-subject scores (+ inference seconds, and the bridge's std–error correlation)."""
    examples = [v[0].numpy() for v in train.images[:HISTOGRAM_EXAMPLES]]
    results = {name: {"subjects": [], "seconds": []} for name in ["histogram matching", *models]}
    figure = {}
    for index in range(len(heldout)):
        source, truth, mask = heldout.sources[index:index + 1], heldout.images[index, 0].numpy(), masks[index]
        panels = {"source T1w": source[0, 0].numpy(), f"true {target}": truth}
        for name in results:
            started = time.monotonic()
            std = None
            if name == "histogram matching":
                prediction = histogram_matched(source[0, 0].numpy(), examples)
            elif isinstance(models[name], UNetRegression):
                prediction = models[name].predict(source)[0, 0].numpy()
            else:
                # the shipped model and the snapshots: --samples draws
                count, steps = (1, 1) if name == ONE_STEP else (bridge_draws(args).get(name, args.samples),
                                                                 args.sampling_steps)
                mean, std = translate(models[name], source, steps, count, eta=args.eta,
                                      generator=torch.Generator().manual_seed(index))
                prediction, std = mean[0, 0].numpy(), (std[0, 0].numpy() if std is not None else None)
            row = {**translation_scores(prediction, truth, mask, DATA_RANGE), "subject": index}
            results[name]["seconds"].append(time.monotonic() - started)
            if std is not None:
                row["std_error_pearson"] = uncertainty_error_correlation(std, prediction, truth, mask)
            results[name]["subjects"].append(row)
            if index == 0:
                panels[name] = prediction
                if std is not None and name == "bridge":
                    panels["bridge std"], panels["bridge |error|"] = std, np.abs(prediction - truth)
        if index == 0:
            figure[f"T1w → {target}"] = panels
    return {"methods": results, "figure": figure}


def summary(subjects: list[dict], key: str) -> tuple[float, float] | None:
    values = [s[key] for s in subjects if key in s]
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run_target(target: str, args) -> dict:
    parser = argparse.ArgumentParser()
    translate_train.add_arguments(parser)
    config = translate_train.build_config(parser.parse_args(
        [str(args.train), "--source", "t1", "--target", target, "--out", "unused", *ARCHITECTURE,
         "--channels", *map(str, args.bridge_channels), "--bridge", args.bridge, "--max-var", str(args.max_var)]))
    sources, targets = (files[: args.train_pairs] for files in find_pairs([args.train], "t1", target))
    train = TrainingVolumes.load(targets, config.input, sources=sources)
    h_sources, h_targets = find_pairs([args.heldout_manifest], "t1", target)
    h_sources, h_targets = h_sources[: args.heldout], h_targets[: args.heldout]
    heldout = TrainingVolumes.load(h_targets, config.input, sources=h_sources)
    masks = brain_masks(args.heldout_manifest, h_sources, config.input)
    torch.manual_seed(args.seed)
    bridge, unet = TranslationModel(config), UNetRegression()
    training = {"bridge": train_for(bridge, train, args.bridge_lr, args.budget_s, args.seed, args.snapshots_s, args.ema),
                "U-Net": train_for(unet, train, args.unet_lr, args.budget_s, args.seed, args.snapshots_s, args.ema)}
    if args.keep_models:
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save({"bridge": bridge.state_dict(), "U-Net": unet.state_dict(), "training": {
            name: {key: value for key, value in trained.items() if key != "snapshots"}
            for name, trained in training.items()}}, args.out / f"models_{target}.pt")
    models = {"U-Net": unet, **{name: bridge.eval() for name in bridge_draws(args)}}
    if args.one_step:
        models[ONE_STEP] = bridge
    for method, trained in list(training.items()):
        for seconds, snapshot in trained.pop("snapshots").items():
            copy_of = (UNetRegression() if method == "U-Net" else TranslationModel(config)).eval()
            copy_of.load_state_dict(snapshot.pop("weights"))
            models[snapshot_name(method, seconds)] = copy_of
            training[snapshot_name(method, seconds)] = {**snapshot, "parameters": trained["parameters"]}
    training.update({name: training["bridge"] for name in models if name in bridge_draws(args) or name == ONE_STEP})
    if target == "flair" and args.shipped and Path(args.shipped).exists():
        models["bridge, shipped"] = load_translation_model(args.shipped).eval()
        provenance = json.loads((Path(args.shipped) / "model.json").read_text()).get("provenance", {})
        shipped = provenance.get("training", {})
        training["bridge, shipped"] = {"steps": shipped.get("steps"), "train_s": shipped.get("wall_s"),
                                       "parameters": models["bridge, shipped"].parameter_count()}
    print(f"[{target}] trained: " + ", ".join(f"{k} {v['steps']} steps in {v['train_s']} s" for k, v in training.items()),
          flush=True)
    evaluated = evaluate(target, args, train, heldout, masks, models)
    return {"training": training, "pairs": len(train), "heldout": len(heldout), **evaluated}


METRICS = [("psnr_brain", "PSNR brain (dB)"), ("ssim_brain", "SSIM brain"), ("nrmse_brain", "NRMSE brain"),
           ("psnr_whole", "PSNR whole (dB)"), ("ssim_whole", "SSIM whole"), ("nrmse_whole", "NRMSE whole"),
           ("std_error_pearson", "r(std, abs. error)")]


def markdown(report: dict) -> str:
    lines = ["# Translation on held-out simulated subjects (CPU)", "",
             f"Command: `{report['command']}`", "",
             f"{report['machine']}. Each trained model had {report['budget_s']:.0f} s of wall clock (the shipped model "
             f"more: see its card), AdamW lr {report['lr']['bridge']:g} (bridge) and {report['lr']['U-Net']:g} (U-Net)"
             + (f", both scored with a weight average (EMA {report['ema']:g})" if report["ema"] is not None else "")
             + f". Scores in the model's normalised range [-1, 1] (data range 2), mean ± std over "
             f"{report['heldout']} held-out subjects; the bridge's output is the mean of {report['samples']} samples "
             f"({report['sampling_steps']} steps, η = {report['bridge']['eta']:g}) of a {report['bridge']['kind']} bridge"
             + (f" (κ = {report['bridge']['max_var']:g})" if report['bridge']['kind'] == "bbdm" else "")
             + f", widths {' '.join(map(str, report['bridge']['channels']))}"
             + ". Brain = tissue labels > 0.", ""]
    for target, result in report["targets"].items():
        lines += [f"## T1w → {target}", "", "| method | training | " + " | ".join(t for _, t in METRICS) + " | s / volume |",
                  "|---|---|" + "---|" * (len(METRICS) + 1)]
        for name, method in result["methods"].items():
            trained = result["training"].get(name)
            cells = [name, f"{trained['steps']} steps, {trained['train_s']} s" if trained else "none"]
            for key, _ in METRICS:
                value = summary(method["subjects"], key)
                cells.append(f"{value[0]:.3f} ± {value[1]:.3f}" if value else "–")
            cells.append(f"{statistics.fmean(method['seconds']):.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        for name, (wins, total) in result.get("bridge_wins_ssim_brain", {}).items():
            lines += ["", f"{name[0].upper() + name[1:]} vs {counterpart(name)}, brain SSIM per subject: higher on "
                      f"{wins} of {total}."]
        lines.append("")
    lines += ["![translations](translation_cpu.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, default=Path("build/translation_train/manifest.json"))
    parser.add_argument("--heldout-manifest", type=Path, default=Path("build/translation_heldout/manifest.json"))
    parser.add_argument("--targets", nargs="+", default=["t2", "flair"])
    parser.add_argument("--budget-s", type=float, default=720.0, help="wall-clock training seconds per model")
    parser.add_argument("--train-pairs", type=int, default=None, help="use only the first N training pairs")
    parser.add_argument("--bridge-lr", type=float, default=1e-3, help="the bridge's AdamW learning rate")
    parser.add_argument("--unet-lr", type=float, default=1e-3, help="the U-Net's AdamW learning rate")
    parser.add_argument("--ema", type=float_in(0.0, 1.0, high_open=True), default=None, metavar="DECAY",
                        help="both models end with (and are snapshot as) an EMA of their weights with this decay")
    parser.add_argument("--bridge", choices=["bbdm", "i2sb"], default="bbdm", help="the bridge's parameterisation")
    parser.add_argument("--bridge-channels", type=int, nargs=3, default=[16, 32, 64], metavar="C",
                        help="the bridge UNet's widths per level (multiples of 16; shipped recipe: 16 32 64)")
    parser.add_argument("--max-var", type=float, default=1.0, help="BBDM's variance scale κ (shipped recipe: 1.0)")
    parser.add_argument("--eta", type=float, default=1.0, help="the bridge sampler's η (1: fresh noise each step)")
    parser.add_argument("--heldout", type=int, default=8)
    parser.add_argument("--samples", type=int, default=4, help="draws averaged into the bridge's translation")
    parser.add_argument("--more-samples", type=int, nargs="*", default=[], metavar="K",
                        help="also score the same bridge as the mean of K draws (a row per K)")
    parser.add_argument("--sampling-steps", type=int, default=25)
    parser.add_argument("--snapshots-s", type=float, nargs="*", default=[], metavar="S",
                        help="also score both models as they were after S s of training (a learning curve in one run)")
    parser.add_argument("--one-step", action="store_true",
                        help="also score the bridge's one-step x̂0 at t = T (deterministic, no sampler)")
    parser.add_argument("--keep-models", action="store_true",
                        help="save the trained weights to OUT/models_TARGET.pt")
    parser.add_argument("--shipped", default="Resources/Models/t1-to-flair-64x80x64")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"command": "python benchmarks/bench_translation.py " + " ".join(sys.argv[1:]),
              "machine": f"2-core CPU host, {args.threads} thread(s); another job may have shared the host",
              "budget_s": args.budget_s, "lr": {"bridge": args.bridge_lr, "U-Net": args.unet_lr}, "ema": args.ema,
              "heldout": args.heldout, "samples": args.samples,
              "sampling_steps": args.sampling_steps, "targets": {},
              "bridge": {"kind": args.bridge, "max_var": args.max_var, "eta": args.eta, "channels": args.bridge_channels}}
    figure = {}
    for target in args.targets:
        result = run_target(target, args)
        figure.update(result.pop("figure"))
        methods = result["methods"]
        result["bridge_wins_ssim_brain"] = {name: higher_ssim(methods, name, against)
                                            for name, against in comparisons(args, methods)}
        report["targets"][target] = result
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "translation_cpu.json").write_text(json.dumps(report, indent=1))
    (args.out / "translation_cpu.md").write_text(markdown(report))
    save_case_figure(figure, args.out / "translation_cpu.png", maps=("bridge std", "bridge |error|"),
                            title="held-out subject 0: T1w source, truth, baselines, bridge (mean of samples)",
                            overwrite=True)
    print(markdown(report))


if __name__ == "__main__":
    main()
