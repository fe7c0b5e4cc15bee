"""The demo's report: a markdown page with the numbers, pictures and how to reproduce it."""

from __future__ import annotations

from pathlib import Path

from .files import write_text_atomic

ROWS = [  # (key, label, key of the level it is read against or None)
    ("judged_target_contrast", "share of samples the feature network calls the target contrast (held-out reals: {judged})",
     None),
    ("fid_sample_real", "FID samples ↔ held-out targets, shipped 3D feature network (lower = closer)", "fid_mean_real"),
    ("feature_mmd_sample_real", "feature MMD² samples ↔ held-out targets (lower = closer)", "feature_mmd_mean_real"),
    ("precision", "precision: samples inside the targets' feature manifold", None),
    ("recall", "recall: targets inside the samples' feature manifold", None),
    ("coverage", "coverage: target neighbourhoods holding a sample", None),
    ("vendi_features_samples", "Vendi score of the samples, features (effective number of distinct volumes)",
     "vendi_features_reals"),
    ("vendi_ms_ssim_samples", "Vendi score of the samples, MS-SSIM", "vendi_ms_ssim_reals"),
    ("ms_ssim_sample_real", "MS-SSIM samples ↔ held-out targets (rewards mean-like samples: read with the baseline)",
     "ms_ssim_mean_real"),
    ("ms_ssim_real_real", "MS-SSIM held-out targets ↔ each other (the real cohort's own level)", None),
    ("realism_ratio", "MS-SSIM ratio samples↔targets ÷ targets↔targets (> 1: closer than reals are to each other)",
     None),
    ("diversity_ratio", "MS-SSIM samples↔samples ÷ targets↔targets (1 = the cohort's diversity)", None),
    ("mmd_sample_real", "voxel MMD² samples ↔ held-out targets (lower = closer)", "mmd_mean_real"),
    ("heldout_loss", "denoising loss on held-out targets, fixed noise (lower = better fit)", None),
]
REFERENCE_NAMES = {"fid_mean_real": "training mean image", "feature_mmd_mean_real": "training mean image",
                   "ms_ssim_mean_real": "training mean image", "mmd_mean_real": "training mean image",
                   "vendi_features_reals": "held-out targets", "vendi_ms_ssim_reals": "held-out targets"}


TRANSLATION_ROWS = [
    ("psnr_brain", "PSNR in the brain (dB, higher = better)"), ("ssim_brain", "SSIM in the brain"),
    ("nrmse_brain", "NRMSE in the brain (lower = better)"), ("psnr_whole", "PSNR, whole volume (dB)"),
    ("ssim_whole", "SSIM, whole volume"), ("nrmse_whole", "NRMSE, whole volume"),
]


def translation_section(translation: dict) -> list[str]:
    """The report's translation part: the model's scores beside histogram matching, mean ± std over subjects."""
    model, matched = translation["scores"]["translation"], translation["scores"]["histogram matching"]
    source, target = translation["source"], translation["target"]
    lines = [
        f"## Translation: {source} → {target}", "",
        f"Model: `{translation['model']}`. {translation['subjects']} held-out simulated subjects; each {source} "
        f"volume is translated {translation['samples']} times ({translation['steps']} bridge steps) and the mean is "
        f"scored against the subject's true {target} (normalised range [-1, 1]); mean ± std over subjects. The "
        f"baseline is the {source} volume histogram-matched to the other subjects' {target} (scikit-image).", "",
        "| metric | translation | histogram matching |", "|---|---|---|",
    ]
    for key, label in TRANSLATION_ROWS:
        lines.append(f"| {label} | {model[key][0]:.3f} ± {model[key][1]:.3f} | "
                     f"{matched[key][0]:.3f} ± {matched[key][1]:.3f} |")
    if "std_error_pearson" in model:
        value, spread = model["std_error_pearson"]
        lines += ["", f"Uncertainty: the per-voxel std of the samples correlates with the absolute error inside "
                  f"the brain at Pearson r = {value:.2f} ± {spread:.2f}."]
    lines += ["", f"{translation['seconds_per_volume']:.1f} s per translated volume.", "",
              f"![{source}, true {target}, histogram matching, translation, std, error](translation.png)", ""]
    return lines


def reconstruction_section(reconstruction: dict, settings: dict) -> list[str]:
    """The report's reconstruction part: DDNM with the fine-tuned prior beside CS and zero-filling."""
    scores = reconstruction["scores"]
    methods = list(scores)
    lines = [
        f"## Reconstruction from {reconstruction['acceleration']:g}× undersampled k-space", "",
        f"{reconstruction['subjects']} held-out subject(s) of the target domain, one coil, an equispaced line mask "
        f"(fastMRI, centre fraction {0.32 / reconstruction['acceleration']:.2f}). **ddnm** uses the fine-tuned model "
        f"({settings['method']}) as the prior: the mean of {reconstruction['samples']} posterior samples "
        f"({reconstruction['steps']} steps); **cs** is L1-wavelet compressed sensing (sigpy). Magnitudes against the "
        "fully sampled truth (data range = its maximum); mean ± std over subjects.", "",
        "| metric | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods),
    ]
    for key, label in (("nrmse_brain", "NRMSE in the brain (lower = better)"), ("psnr_brain", "PSNR in the brain (dB)"),
                       ("ssim_brain", "SSIM in the brain"), ("nrmse", "NRMSE, whole volume"),
                       ("seconds", "seconds per volume")):
        lines.append(f"| {label} | " + " | ".join(f"{scores[m][key][0]:.3f} ± {scores[m][key][1]:.3f}"
                                                    for m in methods) + " |")
    if "std_error_pearson" in scores.get("ddnm", {}):
        value, spread = scores["ddnm"]["std_error_pearson"]
        lines += ["", f"The per-voxel std of the posterior samples correlates with the absolute error inside the brain "
                  f"at Pearson r = {value:.2f} ± {spread:.2f}."]
    lines += ["", "![truth, reconstructions, std, error](reconstruction.png)", ""]
    return lines


def write_report(out: Path, settings: dict, metrics: dict, counts: dict, timings: dict,
                 translation: dict | None = None, reconstruction: dict | None = None) -> Path:
    """Write ``out/report.md``; pictures are referenced by their file names in ``out``."""
    base, tuned = metrics["base"], metrics["fine_tuned"]
    judged_reals = f"{settings['judged_reals']:.2f}"
    lines = [
        "# DiffusionPEFT demo report", "",
        f"Base model: `{settings['model']}` (pretrained on simulated healthy T1w). Target domain: "
        f"**{settings['target_description']}**, {settings['train_subjects']} training subjects, "
        f"{settings['heldout_subjects']} held-out subjects (simulated, never seen in training).", "",
        f"Adapter: **{settings['method']}** ({settings['options']}), {counts['total']:,} trainable parameters = "
        f"{100 * counts['share']:.2f} % of {counts['base']:,}; {settings['steps']} steps, lr {settings['lr']:g}, "
        f"seed {settings['seed']}.", "",
        "| metric | base model | fine-tuned | reference |", "|---|---|---|---|",
    ]
    for key, label, reference in ROWS:
        level = f"{tuned[reference]:.3f} ({REFERENCE_NAMES[reference]})" if reference in tuned else ""
        lines.append(f"| {label.format(judged=judged_reals)} | {base[key]:.3f} | {tuned[key]:.3f} | {level} |")
    lines += [
        "", f"Samples: {settings['samples']} per model, DDIM {settings['sampling_steps']} steps, the same start noise "
        "for both models.", "",
        "![held-out targets, base samples, fine-tuned samples](montage.png)", "",
        "![fine-tuning loss](loss_curve.png)", "",
        *(reconstruction_section(reconstruction, settings) if reconstruction else []),
        *(translation_section(translation) if translation else []),
        "| stage | seconds |", "|---|---|",
        *[f"| {stage} | {seconds:.1f} |" for stage, seconds in timings.items()], "",
        "Files: `adapter/` (the adapter package), `samples/` (NIfTI), "
        + ("`translation/` (translated volumes and std maps), " if translation else "")
        + ("`reconstruction/` (reconstructions and std maps), " if reconstruction else "")
        + "`data/` (the simulated cohorts), `metrics.json`.", "",
        f"Reproduce: `diffusion-peft demo --seed {settings['seed']} --out {settings['out_name']}`",
    ]
    return write_text_atomic(out / "report.md", "\n".join(lines) + "\n")
