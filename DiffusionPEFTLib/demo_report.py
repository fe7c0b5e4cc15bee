"""The demo's report: a markdown page with the numbers, pictures and how to reproduce it."""

from __future__ import annotations

from pathlib import Path

from .files import write_text_atomic

ROWS = [
    ("ms_ssim_sample_real", "MS-SSIM samples ↔ held-out targets (higher = closer)"),
    ("ms_ssim_real_real", "MS-SSIM held-out targets ↔ each other (the real cohort's own level)"),
    ("realism_ratio", "realism: samples↔targets ÷ targets↔targets (target ≥ 0.8)"),
    ("ms_ssim_sample_sample", "MS-SSIM samples ↔ each other (diversity; should match the cohort's)"),
    ("diversity_ratio", "samples↔samples ÷ targets↔targets (1 = same diversity)"),
    ("mmd_sample_real", "MMD² samples ↔ held-out targets (lower = closer distribution)"),
    ("heldout_loss", "denoising loss on held-out targets, fixed noise (lower = better fit)"),
]


def write_report(out: Path, settings: dict, metrics: dict, counts: dict, timings: dict) -> Path:
    """Write ``out/report.md``; pictures are referenced by their file names in ``out``."""
    base, tuned = metrics["base"], metrics["fine_tuned"]
    lines = [
        "# DiffusionPEFT demo report", "",
        f"Base model: `{settings['model']}` (pretrained on simulated healthy T1w). Target domain: "
        f"**{settings['target_description']}**, {settings['train_subjects']} training subjects, "
        f"{settings['heldout_subjects']} held-out subjects (simulated, never seen in training).", "",
        f"Adapter: **{settings['method']}** ({settings['options']}), {counts['total']:,} trainable parameters = "
        f"{100 * counts['share']:.2f} % of {counts['base']:,}; {settings['steps']} steps, lr {settings['lr']:g}, "
        f"seed {settings['seed']}.", "",
        "| metric | base model | fine-tuned |", "|---|---|---|",
    ]
    for key, label in ROWS:
        lines.append(f"| {label} | {base[key]:.3f} | {tuned[key]:.3f} |")
    lines += [
        "", f"Samples: {settings['samples']} per model, DDIM {settings['sampling_steps']} steps, the same start noise "
        "for both models.", "",
        "![held-out targets, base samples, fine-tuned samples](montage.png)", "",
        "![fine-tuning loss](loss_curve.png)", "",
        "| stage | seconds |", "|---|---|",
        *[f"| {stage} | {seconds:.1f} |" for stage, seconds in timings.items()], "",
        "Files: `adapter/` (the adapter package), `samples/` (NIfTI), `data/` (the simulated cohorts), "
        "`metrics.json`.", "",
        f"Reproduce: `diffusion-peft demo --seed {settings['seed']} --out {settings['out_name']}`",
    ]
    return write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
