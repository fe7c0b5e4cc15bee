"""Benchmark: PPDM-style translation (bridge diffusion on puzzled volumes, p = 2 and 4) vs the full-resolution
conditional 3D bridge (p = 1) of the same U-Net widths, T1w → FLAIR, all in one run.

Every configuration is ``translate-train``'s model and training step (its own option parser and
``build_config``; the library ``Trainer``: batch 2, AdamW lr 2e-4, gradient clip 1, flip + contrast jitter)
on the 64×80×64 grid at 3 mm, U-Net channels 16 32 64, BBDM bridge, x0 prediction, seed 0. Configurations:
``p1`` (full resolution), ``p2`` (the shipped default), ``p4``, all with puzzle-gradient weight λ = 0.1, and
``p2-no-pg`` (λ = 0) and ``p2-pg0.3`` (λ = 0.3) for choosing λ. Each runs in its own process:

1. load the paired training volumes and the held-out ones, build the model and the trainer; idle RSS =
   VmRSS now (freed heap returned to the OS first), then the kernel's high-water mark VmHWM is reset;
2. train until ``--budget-s`` seconds of wall clock have passed (at least 2 warm-up + ``--timed-steps``
   steps; every step counts towards the budget); step time = median of the timed steps; training memory
   = VmHWM after the timed steps − idle RSS (MB), i.e. activations, gradients and AdamW state;
3. translate each held-out T1w (25 bridge steps, one sample, η = 0; seconds per volume = median) and
   score it against the true FLAIR, both in the model's normalised range (data range = its width): PSNR
   and SSIM of the whole volume and inside the brain mask (tissue labels > 0), and two grid-artifact
   measures on the unpuzzled prediction for puzzle cells of c = 2 and c = 4 voxels, each the prediction's
   value ÷ the true FLAIR's (1.0 = no artifact): *seam* = mean |Δ| between neighbours in different cells
   (voxel i and i + 1 with (i + 1) mod c = 0) ÷ mean |Δ| between neighbours in the same cell, over pairs
   inside the brain, all three axes pooled (blockiness on the U-Net's coarse grid); *period-c power* =
   mean power of the 1D spectra (each axis, averaged over the other two) at the harmonics k = j·N/c,
   j = 1…c/2, ÷ the mean power of the three bins on either side (a sub-volume offset pattern of period c).
   For p = 1 both are the control.

Ratios are against ``p1`` of the same run. Targets (the issue's): peak training memory at p = 2 ≤ 1/6 of
p = 1, train step ≥ 4× faster, PSNR within 1 dB of p = 1 or better after equal wall-clock training.

``--memory-only`` runs step 1 and the warm-up and timed steps of step 2 only (no budget, sampling or scoring),
once per configuration and glibc allocator setting of ``--allocators`` (benchmarks/allocators.py: ``default``,
or ``fixed`` mmap threshold, where the resident peak follows the live tensors), beside the memory planner's
prediction of the same step (DiffusionPEFTLib/footprint.py: gradients + AdamW state + activations, MB, with its
breakdown). It writes ppdm_memory_cpu.md and .json, never ppdm_cpu.*. The training volumes are loaded before the
idle baseline, so a small training set (``--train-subjects``) measures the same.

Usage: python benchmarks/bench_ppdm.py [--budget-s 360] [--threads 1] [--configs p1,p2,p4,p2-no-pg,p2-pg0.3]
       [--timed-steps 5] [--heldout 8] [--train build/translation_train/manifest.json] [--train-subjects N]
       [--heldout-manifest build/translation_heldout/manifest.json] [--out docs/benchmarks]
       python benchmarks/bench_ppdm.py --memory-only [--allocators default,fixed] [--timed-steps 3] [...]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from allocators import ALLOCATORS, FIXED_MMAP_THRESHOLD, allocator_environment
from DiffusionPEFTLib.commands import translate_train
from DiffusionPEFTLib.commands.memory_options import training_setup
from DiffusionPEFTLib.errors import JobCancelled
from DiffusionPEFTLib.footprint import Job, footprint
from DiffusionPEFTLib.metrics import compare_in_mask, compare_volumes
from DiffusionPEFTLib.models import InputSpec
from DiffusionPEFTLib.training import (
    TrainConfig,
    Trainer,
    TrainingVolumes,
    find_volume_files,
)
from DiffusionPEFTLib.training.callbacks import TrainingCallback
from DiffusionPEFTLib.translation.model import TranslationModel
from DiffusionPEFTLib.translation.pairs import find_pairs
from DiffusionPEFTLib.translation.sampling import translate
from DiffusionPEFTLib.volumes import read_volume, resample, to_model_grid

CONFIGS = {"p1": (1, 0.1), "p2": (2, 0.1), "p4": (4, 0.1), "p2-no-pg": (2, 0.0), "p2-pg0.3": (2, 0.3)}
"""name -> (puzzle factor p, puzzle-gradient weight λ)"""
MODEL_OPTIONS = ["--source", "t1", "--target", "flair", "--shape", "64", "80", "64", "--spacing", "3",
                 "--channels", "16", "32", "64", "--norm-groups", "16", "--head-channels", "32", "--bridge", "bbdm",
                 "--prediction", "x0", "--batch", "2", "--lr", "2e-4", "--checkpoint-every", "0"]
"""translate-train options shared by every configuration (as in scripts/build_translation_model.sh)"""
CELLS = (2, 4)
WARMUP_STEPS = 2
SAMPLING_STEPS = 25
SPECTRAL_NEIGHBOURS = 3
SEED = 0
TARGETS = {"memory": 1 / 6, "speedup": 4.0, "psnr_db": -1.0}
MB = 1e6


# --- memory (Linux /proc) ------------------------------------------------------------------------
def status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its high-water mark) of this process, MB (10⁶ bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"/proc/self/status has no {field}")


def settle_and_reset_peak() -> float:
    """Return freed heap to the OS (glibc ``malloc_trim``), reset VmHWM to VmRSS (``clear_refs`` = 5) and
    return that RSS (MB): the baseline a later VmHWM is counted above."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    rss = status_mb("VmRSS")
    if status_mb("VmHWM") > rss + 1:
        raise RuntimeError("this kernel did not reset VmHWM through /proc/self/clear_refs")
    return rss


class Stopwatch(TrainingCallback):
    """Seconds of every optimizer step, VmHWM (MB) after step ``timed_until`` − 1, and the wall-clock budget:
    ``budget_s`` after the first step began, once the timed steps are done, it cancels the trainer."""

    def __init__(self, timed_until: int, budget_s: float):
        self.timed_until, self.budget_s = timed_until, budget_s
        self.durations: list[float] = []
        self.peak_mb = float("nan")
        self.deadline: float | None = None
        self._start = 0.0

    def before_forward(self, trainer, step: int) -> None:
        self._start = time.perf_counter()
        if self.deadline is None:
            self.deadline = time.monotonic() + self.budget_s

    def after_step(self, trainer, step: int, batch) -> None:
        self.durations.append(time.perf_counter() - self._start)
        if step + 1 == self.timed_until:
            self.peak_mb = status_mb("VmHWM")
        if step + 1 >= self.timed_until and time.monotonic() >= self.deadline:
            trainer.cancel.cancel()


# --- grid-artifact measures -------------------------------------------------------------------------
def seam_ratio(volume: np.ndarray, mask: np.ndarray, cell: int) -> float:
    """Mean |Δ| between neighbours in different cells of ``cell``³ voxels ÷ mean |Δ| between neighbours in the
    same cell, over neighbour pairs with both voxels in ``mask``; volume, mask (X, Y, Z), all axes pooled."""
    across, within = [], []
    for axis in range(3):
        steps = np.abs(np.diff(volume, axis=axis))
        count = volume.shape[axis] - 1
        inside = np.take(mask, range(count), axis=axis) & np.take(mask, range(1, count + 1), axis=axis)
        boundary = np.expand_dims((np.arange(count) + 1) % cell == 0, [a for a in range(3) if a != axis])
        across.append(steps[inside & boundary])
        within.append(steps[inside & ~boundary])
    return float(np.concatenate(across).mean() / np.concatenate(within).mean())


def period_power(volume: np.ndarray, cell: int) -> float:
    """Power at the period-``cell`` harmonics k = j·N/cell (j = 1…cell/2) of the 1D spectra along each axis
    (|rfft|², averaged over the other two axes) ÷ the mean power of the SPECTRAL_NEIGHBOURS bins on either
    side of them; the mean over the three axes. volume (X, Y, Z)."""
    prominences = []
    centred = volume - volume.mean()
    for axis in range(3):
        size = volume.shape[axis]
        spectrum = (np.abs(np.fft.rfft(centred, axis=axis)) ** 2).mean(axis=tuple(a for a in range(3) if a != axis))
        harmonics = {round(j * size / cell) for j in range(1, cell // 2 + 1)}
        neighbours = {h + d for h in harmonics for d in range(-SPECTRAL_NEIGHBOURS, SPECTRAL_NEIGHBOURS + 1)
                      if d and 0 < h + d < len(spectrum)} - harmonics
        prominences.append(spectrum[sorted(harmonics)].mean() / spectrum[sorted(neighbours)].mean())
    return float(np.mean(prominences))


# --- one configuration (worker process) --------------------------------------------------------------
def command_args(name: str, train_manifest: str):
    """translate-train's parsed options for configuration ``name``."""
    p, weight = CONFIGS[name]
    parser = argparse.ArgumentParser()
    translate_train.add_arguments(parser)
    return parser.parse_args([train_manifest, "--out", f"unused-{name}", *MODEL_OPTIONS, "--puzzle", str(p),
                              "--pg-weight", str(weight)])


def training_pairs(manifest: str, count: int | None) -> tuple[list[Path], list[Path]]:
    """The first ``count`` (all: None) (T1w, FLAIR) file pairs of the training manifest."""
    sources, targets = find_pairs([manifest], "t1", "flair")
    return sources[:count], targets[:count]


def load_heldout(manifest: str, spec: InputSpec, count: int) -> tuple[TrainingVolumes, list[np.ndarray]]:
    """The first ``count`` held-out (T1w, FLAIR) pairs on the model grid and their brain masks (X, Y, Z) bool
    (tissue labels > 0, nearest-neighbour onto each source's model grid)."""
    sources, targets = find_pairs([manifest], "t1", "flair")
    labels = find_volume_files([manifest], contrast="tissue_labels")
    sources, targets, labels = sources[:count], targets[:count], labels[:count]
    masks = []
    for source, label in zip(sources, labels):
        grid, _ = to_model_grid(read_volume(source), spec.shape, spec.spacing)
        masks.append(resample(read_volume(label), grid.shape, grid.affine, order=0, antialias=False).data > 0)
    return TrainingVolumes.load(targets, spec, sources=sources), masks


def score(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray, data_range: float) -> dict[str, float]:
    """Similarity (whole volume and in the brain) and grid-artifact ratios (prediction ÷ truth)."""
    whole = compare_volumes(prediction, truth, data_range)
    brain = compare_in_mask(prediction, truth, mask, data_range)
    row = {"psnr": whole["psnr"], "ssim": whole["ssim"], "psnr_brain": brain["psnr"], "ssim_brain": brain["ssim"]}
    for cell in CELLS:
        row[f"seam_c{cell}"] = seam_ratio(prediction, mask, cell) / seam_ratio(truth, mask, cell)
        row[f"period_c{cell}"] = period_power(prediction, cell) / period_power(truth, cell)
    return row


def run_worker(name: str, args) -> dict:
    """Train and time configuration ``name`` in this process, then (unless ``--memory-only``) sample and score
    it; returns its row."""
    torch.set_num_threads(args.threads)
    options = command_args(name, args.train)
    config = translate_train.build_config(options)
    sources, targets = training_pairs(args.train, args.train_subjects)
    train = TrainingVolumes.load(targets, config.input, sources=sources)
    if not args.memory_only:
        heldout, masks = load_heldout(args.heldout_manifest, config.input, args.heldout)
    torch.manual_seed(SEED)
    model = TranslationModel(config)
    row = train_and_time(name, model, options, train, 0.0 if args.memory_only else args.budget_s, args.timed_steps)
    if args.memory_only:
        return row
    print(f"{name}: {row['steps']} steps in {row['train_wall_s']:.0f} s, step {row['step_s']:.2f} s, training "
          f"memory {row['train_memory_mb']:.0f} MB above idle; translating {len(heldout)} held-out", file=sys.stderr)
    model.eval()
    low, high = config.input.normalisation().range
    before_mb = settle_and_reset_peak()
    seconds, predictions = [], []
    for index in range(len(heldout)):
        start = time.perf_counter()
        mean, _ = translate(model, heldout.sources[index: index + 1], SAMPLING_STEPS, 1, 0.0,
                            torch.Generator().manual_seed(SEED))
        seconds.append(time.perf_counter() - start)
        predictions.append(mean[0, 0].numpy())
    row["sampling_memory_mb"] = status_mb("VmHWM") - before_mb  # above the RSS after training
    scores = [score(prediction, heldout.images[index, 0].numpy(), masks[index], high - low)
              for index, prediction in enumerate(predictions)]
    row["sampling_s_per_volume"] = statistics.median(seconds)
    row["heldout"], row["data_range"] = len(heldout), high - low
    row.update({key: statistics.mean(s[key] for s in scores) for key in scores[0]})
    return row


def train_and_time(name: str, model: TranslationModel, options, train: TrainingVolumes, budget_s: float,
                   timed_steps: int) -> dict:
    """Train ``model`` from the idle baseline for ``budget_s`` s of wall clock (at least the warm-up and
    ``timed_steps`` steps); its row: training memory above idle (MB), median timed step (s), steps, loss."""
    train_config = TrainConfig(steps=10**9, batch_size=options.batch, grad_accum=options.accum, lr=options.lr,
                               checkpoint_every=options.checkpoint_every, augment=not options.no_augment, seed=SEED)
    watch = Stopwatch(WARMUP_STEPS + timed_steps, budget_s)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(model, list(model.parameters()), train, train_config, workdir, callbacks=[watch],
                          stage="translate-train")
        idle_mb = settle_and_reset_peak()
        try:
            trainer.run()  # steps=10**9: only the Stopwatch's cancel at the deadline ends it
        except JobCancelled:
            pass
    losses = trainer.result.losses
    return {"config": name, "p": model.spec.puzzle, "pg_weight": model.spec.puzzle_gradient_weight,
            "parameters": model.parameter_count(),
            "unet_grid": list(model.puzzle.puzzled_shape(model.config.input.shape)), "idle_mb": idle_mb,
            "train_peak_mb": watch.peak_mb, "train_memory_mb": watch.peak_mb - idle_mb,
            "step_s": statistics.median(watch.durations[WARMUP_STEPS:watch.timed_until]),
            "steps": trainer.step, "train_wall_s": trainer.result.wall_s,
            "final_loss": statistics.mean(losses[-20:])}


# --- main process ----------------------------------------------------------------------------------
def add_ratios(rows: list[dict]) -> None:
    """Each row against p1 of the same run: memory ÷ p1, p1 step ÷ step (speed-up), PSNR − p1 (dB)."""
    reference = next((r for r in rows if r["config"] == "p1"), None)
    if reference is None:
        return
    for r in rows:
        r["memory_vs_p1"] = r["train_memory_mb"] / reference["train_memory_mb"]
        r["speedup_vs_p1"] = reference["step_s"] / r["step_s"]
        r["sampling_speedup_vs_p1"] = reference["sampling_s_per_volume"] / r["sampling_s_per_volume"]
        r["psnr_vs_p1_db"] = r["psnr"] - reference["psnr"]
        r["psnr_brain_vs_p1_db"] = r["psnr_brain"] - reference["psnr_brain"]


def verdicts(rows: list[dict]) -> list[str]:
    """The issue's targets for p = 2, pass/fail, as markdown bullets; p = 4 alongside without a target."""
    by_name = {r["config"]: r for r in rows}
    if "p1" not in by_name or "p2" not in by_name:
        return ["- Targets not evaluated: the run needs both `p1` and `p2`."]
    p2 = by_name["p2"]
    memory, speedup, psnr = p2["memory_vs_p1"], p2["speedup_vs_p1"], p2["psnr_vs_p1_db"]
    psnr_brain = p2["psnr_brain_vs_p1_db"]
    lines = [
        f"- Peak training memory p2 ÷ p1 = {memory:.3f} (target ≤ {TARGETS['memory']:.3f}): "
        + mark(memory <= TARGETS["memory"]),
        f"- Train step p1 ÷ p2 = {speedup:.2f}× (target ≥ {TARGETS['speedup']:.0f}×): "
        + mark(speedup >= TARGETS["speedup"]),
        f"- PSNR p2 − p1 after equal wall clock = {psnr:+.2f} dB whole volume, {psnr_brain:+.2f} dB in the brain "
        f"(target ≥ {TARGETS['psnr_db']:+.0f} dB): {mark(psnr >= TARGETS['psnr_db'])} / "
        + mark(psnr_brain >= TARGETS["psnr_db"]),
        f"- Sampling p1 ÷ p2 = {p2['sampling_speedup_vs_p1']:.2f}× per volume (no target).",
    ]
    if "p4" in by_name:
        p4 = by_name["p4"]
        lines.append(f"- p4 (no target): memory ÷ p1 {p4['memory_vs_p1']:.3f}, step {p4['speedup_vs_p1']:.2f}× "
                     f"faster, sampling {p4['sampling_speedup_vs_p1']:.2f}× faster, PSNR {p4['psnr_vs_p1_db']:+.2f} dB "
                     f"(brain {p4['psnr_brain_vs_p1_db']:+.2f} dB).")
    return lines


def mark(ok: bool) -> str:
    return "**pass**" if ok else "**fail**"


def lambda_lines(rows: list[dict]) -> list[str]:
    """The p = 2 rows with λ = 0, 0.1, 0.3 side by side (what λ buys in PSNR and artifacts)."""
    variants = sorted((r for r in rows if r["p"] == 2), key=lambda r: r["pg_weight"])
    if len(variants) < 2:
        return []
    lines = ["", "Puzzle-gradient weight λ at p = 2 (same run, same budget):", "",
             "| λ | steps | PSNR brain (dB) | SSIM brain | seam c2 | seam c4 | period-2 power | period-4 power |",
             "|---|---|---|---|---|---|---|---|"]
    for r in variants:
        lines.append(f"| {r['pg_weight']:g} | {r['steps']} | {r['psnr_brain']:.2f} | {r['ssim_brain']:.3f} | "
                     f"{r['seam_c2']:.3f} | {r['seam_c4']:.3f} | {r['period_c2']:.2f} | {r['period_c4']:.2f} |")
    best = max(variants, key=lambda r: r["psnr_brain"])
    cleanest = min(variants, key=lambda r: abs(r["period_c2"] - 1))
    summary = (f"Highest brain PSNR: λ = {best['pg_weight']:g}; period-2 power closest to the truth's: "
               f"λ = {cleanest['pg_weight']:g} (one seed and one run each: small differences may be noise).")
    return [*lines, "", summary]


def write_outputs(rows: list[dict], failed: list[str], settings: dict, out: Path) -> None:
    """Print the table; write OUT/ppdm_cpu.md, .json and .png."""

    def ratio(row: dict, key: str, spec: str) -> str:
        return format(row[key], spec) if key in row else "–"

    setup = (f"T1w → FLAIR, {settings['train_pairs']} simulated training pairs, {settings['heldout']} held-out, "
             "grid 64×80×64 at 3 mm, U-Net channels 16 32 64 (attention at the last level), BBDM, x0 prediction, "
             f"batch 2, AdamW lr 2e-4, clip 1, seed {SEED}; {settings['budget_s']:g} s wall-clock training per "
             f"configuration; sampling {SAMPLING_STEPS} bridge steps, 1 sample, η = 0.")
    machine = (f"Machine: {settings['cpu']}, {settings['cpu_count']} cores, {settings['threads']} torch thread(s), "
               f"torch {settings['torch']}; 1-minute load average {settings['load_before']:.2f} before, "
               f"{settings['load_after']:.2f} after (another job may have shared the cores: times compare within "
               "this run only).")
    legend = ("Train memory = VmHWM through the timed steps − the process's RSS after imports, data, model and "
              f"trainer (MB); step = median of {settings['timed_steps']} steps after {WARMUP_STEPS} warm-up; "
              "PSNR/SSIM in the model's normalised range; seam and period-c power are the prediction's ÷ the true "
              "FLAIR's (1 = no artifact).")
    header = ("| config | p | λ | U-Net grid | parameters | train memory (MB) | ÷ p1 | step (s) | p1 ÷ step | "
              "steps in budget | sampling (s/volume) | PSNR (dB) | PSNR brain | SSIM brain | seam c2 | seam c4 | "
              "period-2 power | period-4 power |")
    lines = [setup, machine, f"Command: `{settings['command']}`", "", legend, "", header, "|---" * 18 + "|"]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['p']} | {r['pg_weight']:g} | {'×'.join(map(str, r['unet_grid']))} | "
            f"{r['parameters']:,} | {r['train_memory_mb']:.0f} | {ratio(r, 'memory_vs_p1', '.3f')} | {r['step_s']:.2f} | "
            f"{ratio(r, 'speedup_vs_p1', '.2f')} | {r['steps']} | {r['sampling_s_per_volume']:.2f} | {r['psnr']:.2f} | "
            f"{r['psnr_brain']:.2f} | {r['ssim_brain']:.3f} | {r['seam_c2']:.3f} | {r['seam_c4']:.3f} | "
            f"{r['period_c2']:.2f} | {r['period_c4']:.2f} |")
    if failed:
        lines += ["", f"Failed: {', '.join(failed)}."]
    lines += ["", "Targets (p = 2 vs p = 1):", "", *verdicts(rows), *lambda_lines(rows)]
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ppdm_cpu.json").write_text(json.dumps({"settings": settings, "rows": rows, "failed": failed}, indent=2))
    (out / "ppdm_cpu.md").write_text(text + "\n")
    if rows:
        plot(rows, out / "ppdm_cpu.png")


def plot(rows: list[dict], path: Path) -> None:
    """Bars per configuration: training memory, step time, sampling time, brain PSNR, grid artifacts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["config"] for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.4), dpi=110)
    panels = [("train_memory_mb", "training memory above idle (MB)"), ("step_s", "train step (s)"),
              ("sampling_s_per_volume", "sampling (s / volume)"), ("psnr_brain", "PSNR in the brain (dB)")]
    for ax, (key, title) in zip(axes, panels):
        ax.bar(x, [r[key] for r in rows], color="tab:blue")
        ax.set_title(title, fontsize=9)
    reference = next((r for r in rows if r["config"] == "p1"), None)
    if reference is not None:
        axes[0].axhline(reference["train_memory_mb"] * TARGETS["memory"], color="tab:red", ls="--", lw=1,
                        label="p1 ÷ 6 (target)")
        axes[1].axhline(reference["step_s"] / TARGETS["speedup"], color="tab:red", ls="--", lw=1, label="p1 ÷ 4 (target)")
        axes[3].axhline(reference["psnr_brain"] + TARGETS["psnr_db"], color="tab:red", ls="--", lw=1,
                        label="p1 − 1 dB (target)")
        for ax in (axes[0], axes[1], axes[3]):
            ax.legend(frameon=False, fontsize=7)
    psnrs = [r["psnr_brain"] for r in rows] + ([reference["psnr_brain"] + TARGETS["psnr_db"]] if reference else [])
    axes[3].set_ylim(min(psnrs) - 1, max(psnrs) + 0.5)
    keys = ["seam_c2", "seam_c4", "period_c2", "period_c4"]
    width = 0.8 / len(keys)
    for index, key in enumerate(keys):
        axes[4].bar(x + (index - (len(keys) - 1) / 2) * width, [r[key] for r in rows], width, label=key)
    axes[4].axhline(1.0, color="black", lw=0.8)
    axes[4].set_yscale("log")
    axes[4].set_title("grid artifacts ÷ truth (1 = none)", fontsize=9)
    axes[4].legend(frameon=False, fontsize=6, ncol=2, loc="best")
    for ax in axes:
        ax.set_xticks(x, names, rotation=30, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


# --- memory only (main process) ------------------------------------------------------------------
MEASURES = {"default": "measured, glibc default", "fixed": "measured, fixed mmap threshold",
            "predicted": "predicted (planner)"}
"""measure -> its name in the table"""


def predicted(name: str, train_manifest: str) -> dict:
    """The memory planner's trace of configuration ``name``'s training step (translate-train's own job on this
    CPU), MB: weights, gradients, optimizer (AdamW), activations, total, and ``train_memory_mb`` = all but the
    weights (what the measurement counts above idle)."""
    options = command_args(name, train_manifest)
    setup = training_setup(options, torch.device("cpu"))
    found = footprint(Job(translate_train.build_config(options), options.batch, "train", setup))
    return {**{key: value / MB for key, value in found.as_dict().items()},
            "train_memory_mb": (found.total - found.weights) / MB}


def memory_rows(names: list[str], results: dict, train_manifest: str) -> list[dict]:
    """Per configuration: the workers' rows by allocator (``measured``), the planner's (``predicted``) and each
    measure's memory ÷ p1's and p1's step ÷ this step (``vs_p1``, where p1 has that measure)."""
    rows = []
    for name in names:
        measured = {allocator: row for (config, allocator), row in results.items() if config == name}
        if not measured:
            continue
        first = next(iter(measured.values()))
        rows.append({key: first[key] for key in ("config", "p", "pg_weight", "parameters", "unet_grid")}
                    | {"measured": measured, "predicted": predicted(name, train_manifest)})
    reference = next((r for r in rows if r["config"] == "p1"), None)
    for r in rows:
        r["vs_p1"] = {}
        for measure in MEASURES:
            if reference is not None and measure_of(r, measure) is not None and measure_of(reference, measure):
                r["vs_p1"][measure] = measure_of(r, measure) / measure_of(reference, measure)
        for allocator in r["measured"]:
            if reference is not None and allocator in reference["measured"]:
                r["vs_p1"][f"speedup_{allocator}"] = (reference["measured"][allocator]["step_s"]
                                                      / r["measured"][allocator]["step_s"])
    return rows


def measure_of(row: dict, measure: str) -> float | None:
    """Training memory above idle (MB) of ``row`` by ``measure`` (an allocator or ``predicted``); None: not run."""
    if measure == "predicted":
        return row["predicted"]["train_memory_mb"]
    return row["measured"][measure]["train_memory_mb"] if measure in row["measured"] else None


def memory_verdicts(rows: list[dict]) -> list[str]:
    """p2 ÷ p1 against the memory target by each measure, the step speed-up, and what p2's predicted peak is made
    of (gradients + AdamW, U-Net activations, the full-resolution puzzle-gradient loss), as markdown bullets."""
    by_name = {r["config"]: r for r in rows}
    if "p1" not in by_name or "p2" not in by_name:
        return ["- Targets not evaluated: the run needs both `p1` and `p2`."]
    p1, p2 = by_name["p1"], by_name["p2"]
    ratios, speedups = p2["vs_p1"], {a: p2["vs_p1"].get(f"speedup_{a}") for a in ALLOCATORS}
    lines = [f"- Peak training memory p2 ÷ p1, {MEASURES[m]}: {ratios[m]:.3f} ({measure_of(p2, m):.0f} vs "
             f"{measure_of(p1, m):.0f} MB; target ≤ {TARGETS['memory']:.3f}): {mark(ratios[m] <= TARGETS['memory'])}"
             for m in MEASURES if m in ratios]
    lines += [f"- Train step p1 ÷ p2, {MEASURES[a]}: {speedup:.2f}× (target ≥ {TARGETS['speedup']:.0f}×): "
              + mark(speedup >= TARGETS["speedup"]) for a, speedup in speedups.items() if speedup is not None]
    plan, plan1 = p2["predicted"], p1["predicted"]
    fixed = plan["gradients"] + plan["optimizer"]
    loss = plan["activations"] - by_name["p2-no-pg"]["predicted"]["activations"] if "p2-no-pg" in by_name else None
    parts = (f"gradients + AdamW state {fixed:.1f} MB ({fixed / plan['train_memory_mb']:.0%}), activations "
             f"{plan['activations']:.1f} MB ({plan['activations'] / plan['train_memory_mb']:.0%})")
    if loss is not None:
        parts += (f", of which the full-resolution puzzle-gradient loss adds {loss:.1f} MB "
                  f"({loss / plan['train_memory_mb']:.0%}; p2 − p2-no-pg)")
    ideal = (plan1["activations"] / 8 + fixed) / plan1["train_memory_mb"]
    lines.append(
        f"- What p2's predicted {plan['train_memory_mb']:.1f} MB above the weights ({plan['weights']:.1f} MB, resident "
        f"at idle) consist of: {parts}. Its activations are {plan['activations'] / plan1['activations']:.3f} of p1's "
        f"(1/8 = 0.125 would be the voxel ratio); with exactly 1/8 and the same gradients + AdamW, p2 ÷ p1 would be "
        f"{ideal:.3f}. Gradients + AdamW are {fixed / plan1['train_memory_mb']:.3f} of p1's peak, so at these widths "
        f"1/6 leaves p2's activations up to {TARGETS['memory'] - fixed / plan1['train_memory_mb']:.3f} of p1's peak "
        f"(they are {plan['activations'] / plan1['train_memory_mb']:.3f}).")
    return lines


def write_memory_outputs(rows: list[dict], failed: list[str], settings: dict, out: Path) -> None:
    """Print the memory table; write OUT/ppdm_memory_cpu.md and .json."""

    def number(value: float | None, spec: str) -> str:
        return "–" if value is None else format(value, spec)

    def quotient(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    setup = (f"T1w → FLAIR, {settings['train_pairs']} simulated training pairs (`{settings['train']}`; the volumes "
             "are in RAM before the idle baseline, so their number does not change the measurement), grid 64×80×64 "
             "at 3 mm, U-Net channels 16 32 64 (attention at the last level), BBDM, x0 prediction, batch 2, AdamW lr "
             f"2e-4, clip 1, seed {SEED}. Memory only: per configuration and allocator a fresh process runs "
             f"{WARMUP_STEPS} warm-up + {settings['timed_steps']} timed training steps, no wall-clock budget, sampling "
             "or scoring (those are in [ppdm_cpu.md](ppdm_cpu.md)).")
    machine = (f"Machine: {settings['cpu']}, {settings['cpu_count']} cores, {settings['threads']} torch thread(s), "
               f"torch {settings['torch']}; 1-minute load average {settings['load_before']:.2f} before, "
               f"{settings['load_after']:.2f} after (other jobs shared the cores: step times are inflated and compare "
               "within this run only; memory is per process).")
    legend = ("Training memory (MB) above what the process holds once data, model and trainer exist, i.e. "
              "gradients, AdamW state and activations. *Measured*: VmHWM through the timed steps − that idle RSS, "
              "with glibc's default settings (*default*, as a user runs it: the dynamic mmap threshold keeps freed "
              "tensors in the heap) or with `MALLOC_MMAP_THRESHOLD_="
              f"{FIXED_MMAP_THRESHOLD}` (*fixed*: freed tensors go back to the system, so the peak follows the live "
              "tensors; [memory.md](../memory.md)). *Predicted*: the memory planner's trace of the same step on fake "
              "tensors (`DiffusionPEFTLib/footprint.py`; total − weights, as the weights are resident at idle). "
              f"÷ p1: the same measure's p1 value; step = median of the timed steps (s).")
    header = ("| config | p | λ | U-Net grid | parameters | measured default (MB) | ÷ p1 | measured fixed (MB) "
              "| ÷ p1 | predicted (MB) | ÷ p1 | default ÷ fixed | fixed ÷ predicted | step default (s) "
              "| step fixed (s) | p1 ÷ step (default) |")
    lines = ["# PPDM training memory: puzzled (p = 2, 4) vs full-resolution (p = 1) bridge, CPU", "", setup, "",
             machine, "", f"Command: `{settings['command']}`", "", legend, "", header, "|---" * 16 + "|"]
    for r in rows:
        memory = " | ".join(f"{number(measure_of(r, m), '.0f')} | {number(r['vs_p1'].get(m), '.3f')}" for m in MEASURES)
        default, fixed, plan = (measure_of(r, m) for m in MEASURES)
        steps = " | ".join(number(r["measured"][a]["step_s"] if a in r["measured"] else None, ".2f")
                           for a in ALLOCATORS)
        lines.append(
            f"| {r['config']} | {r['p']} | {r['pg_weight']:g} | {'×'.join(map(str, r['unet_grid']))} | "
            f"{r['parameters']:,} | {memory} | {number(quotient(default, fixed), '.2f')} | "
            f"{number(quotient(fixed, plan), '.2f')} | {steps} | {number(r['vs_p1'].get('speedup_default'), '.2f')} |")
    lines += ["", "The planner's breakdown (MB): weights are resident at idle; the rest is the predicted column.", "",
              "| config | weights | gradients | AdamW state | activations | total | activations ÷ p1's |",
              "|---|---|---|---|---|---|---|"]
    reference = next((r for r in rows if r["config"] == "p1"), None)
    for r in rows:
        plan = r["predicted"]
        share = f"{plan['activations'] / reference['predicted']['activations']:.3f}" if reference else "–"
        lines.append(f"| {r['config']} | {plan['weights']:.1f} | {plan['gradients']:.1f} | {plan['optimizer']:.1f} | "
                     f"{plan['activations']:.1f} | {plan['total']:.1f} | {share} |")
    if failed:
        lines += ["", f"Failed: {', '.join(failed)}."]
    lines += ["", "Targets (p = 2 vs p = 1), by each measure:", "", *memory_verdicts(rows)]
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ppdm_memory_cpu.json").write_text(json.dumps({"settings": settings, "rows": rows, "failed": failed},
                                                         indent=2))
    (out / "ppdm_memory_cpu.md").write_text(text + "\n")


def run_configs(names: list[str], allocators: list[str], args) -> tuple[dict, list[str]]:
    """Each configuration under each allocator in its own worker process: ({(name, allocator): row}, failures)."""
    results, failed = {}, []
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            for allocator in allocators:
                result = Path(scratch) / f"{name}-{allocator}.json"
                command = [sys.executable, __file__, "--worker", name, "--result", str(result),
                           "--budget-s", str(args.budget_s), "--threads", str(args.threads),
                           "--timed-steps", str(args.timed_steps), "--heldout", str(args.heldout),
                           "--train", args.train, "--heldout-manifest", args.heldout_manifest]
                command += ["--memory-only"] if args.memory_only else []
                command += ["--train-subjects", str(args.train_subjects)] if args.train_subjects else []
                done = subprocess.run(command, env=allocator_environment(allocator, args.threads), check=False)
                if done.returncode != 0:
                    failed.append(f"{name}, {allocator} allocator (exit code {done.returncode})")
                    continue
                results[name, allocator] = json.loads(result.read_text())
                print(json.dumps(results[name, allocator]), flush=True)
    return results, failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=360.0, help="wall-clock training seconds per configuration")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (and OMP_NUM_THREADS of the workers)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--timed-steps", type=int, default=5, help="steps timed (after 2 warm-up) for step time and memory")
    parser.add_argument("--heldout", type=int, default=8, help="held-out subjects to translate and score")
    parser.add_argument("--train", default="build/translation_train/manifest.json", help="training simulator manifest")
    parser.add_argument("--train-subjects", type=int, default=None,
                        help="use only the first N training pairs (default: all)")
    parser.add_argument("--heldout-manifest", default="build/translation_heldout/manifest.json",
                        help="held-out simulator manifest (with tissue_labels)")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the warm-up and timed steps: training memory and step time beside the planner's "
                        "prediction (writes ppdm_memory_cpu.*)")
    parser.add_argument("--allocators", default="default",
                        help=f"with --memory-only: comma-separated glibc settings, of {', '.join(ALLOCATORS)}")
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown --configs {', '.join(unknown)}; choose from {', '.join(CONFIGS)}")
    allocators = [name.strip() for name in args.allocators.split(",") if name.strip()]
    if sorted(set(allocators) - set(ALLOCATORS)) or not allocators:
        parser.error(f"--allocators: choose from {', '.join(ALLOCATORS)}")
    if allocators != ["default"] and not args.memory_only:
        parser.error("--allocators goes with --memory-only (the full benchmark runs glibc's default settings)")
    if args.worker:
        Path(args.result).write_text(json.dumps(run_worker(args.worker, args)))
        return
    settings = {"command": shlex.join(["python", "benchmarks/bench_ppdm.py", *sys.argv[1:]]), "threads": args.threads,
                "timed_steps": args.timed_steps, "train": args.train,
                "train_pairs": len(training_pairs(args.train, args.train_subjects)[0]), "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                "load_before": os.getloadavg()[0]}
    if args.memory_only:
        settings["allocators"] = allocators
    else:
        settings |= {"budget_s": args.budget_s, "heldout": args.heldout}
    results, failed = run_configs(names, allocators, args)
    settings["load_after"] = os.getloadavg()[0]
    if args.memory_only:
        write_memory_outputs(memory_rows(names, results, args.train), failed, settings, Path(args.out))
        return
    rows = list(results.values())
    add_ratios(rows)
    write_outputs(rows, failed, settings, Path(args.out))


if __name__ == "__main__":
    main()
