"""Write the model card of the multi-contrast prior: MODEL_CARD.md, loss_curve.png and montage.png in the package
folder, and the same card as docs/prior_model.md.

Usage: python scripts/write_prior_card.py MODEL_DIR WORKDIR ASSESSMENT_PREFIX
(WORKDIR holds history.json from the last stage's pretrain; ASSESSMENT_PREFIX_{t1,t2,pd} hold assessment.json from
assess, per class, and ASSESSMENT_PREFIX_demo_t1 the demo T1w model's, assessed by the same command on the same
held-out T1w subjects.)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.commands.info import model_card  # noqa: E402
from DiffusionPEFTLib.models import load_model, read_model_config  # noqa: E402
from DiffusionPEFTLib.plots import save_loss_curve, save_montage  # noqa: E402
from DiffusionPEFTLib.synthesis import sample  # noqa: E402
from DiffusionPEFTLib.training import TrainingVolumes, find_volume_files  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HELDOUT = REPO / "build" / "prior_heldout" / "manifest.json"
ROWS = [("realism_ratio", "realism: MS-SSIM sample↔real ÷ real↔real (≈ 1; above 1 = mean-like)"),
        ("diversity_ratio", "diversity: sample↔sample ÷ real↔real (1 = the cohort's)"),
        ("mmd_sample_real", "MMD² samples ↔ held-out reals (lower = closer)"),
        ("mmd_mean_real", "MMD² of the training mean image (a generator must beat it)"),
        ("fid_sample_real", "FID samples ↔ held-out reals, 128 features (lower = closer)"),
        ("fid_mean_real", "FID of the training mean image (a generator must beat it)"),
        ("precision", "precision: samples inside the reals' k-NN balls (1 = all)"),
        ("recall", "recall: reals inside the samples' k-NN balls (1 = all)"),
        ("vendi_features_samples", "Vendi score of the samples, features (effective number of distinct ones)"),
        ("vendi_features_reals", "Vendi score of as many held-out reals (the level to match)")]

# How stage 2 came about: what stage 1 got wrong and what was measured on the way (kept with the card because the
# recipe only makes sense with it). Numbers from scripts/prior_sdedit_probe.py and the stage-1 assessment.
HISTORY = [
    "## Why two stages", "",
    "Stage 1 alone (2000 steps, shipped until stage 2 replaced it) gave blotchy samples whose ventricles were at best "
    "faint, although its pixel statistics were close to the demo model's (T1w pixel MMD² 0.066 vs 0.063). The sampler "
    "was not the limit (200 DDIM steps or η = 1 gave the same blotches), nor the schedule's residual signal at t = T. "
    "A probe located it (`scripts/prior_sdedit_probe.py MODEL t2 OUT.png`: held-out T2w volumes noised to step t and "
    "sampled back with DDIM; mean squared difference to the real volume): the denoiser was too weak at middle noise "
    "levels. Three cheap fixes did not help (lr 1e-3: validation loss 0.049 vs 0.037; three CoordConv input "
    "channels, 600 steps; overfitting one volume from scratch in 400 steps). More optimizer steps at lr 1e-4 with a "
    "weight average did:", "",
    "| weights | t = 100 | 300 | 500 | 700 | 999 | validation loss |",
    "|---|---|---|---|---|---|---|",
    "| stage 1 (2000 steps) | 0.009 | 0.023 | 0.038 | 0.063 | 0.093 | 0.0450 |",
    "| stage 2, step 8,405 | 0.0068 | 0.0149 | 0.0251 | 0.0444 | 0.0806 | 0.0332 (step 8,000) |",
    "| stage 2, step 14,063 (this package) | 0.0066 | 0.0140 | 0.0236 | 0.0425 | 0.0790 | 0.0313–0.0316 |", "",
    "The run was stopped at step 16,000 (validation loss 0.0314, level with 0.0313 at step 13,500); the package is "
    "step 14,063, the one probed ([figure]({docs}images/prior_sdedit_probe_stage2_step14063.png)) and assessed.", ""]


def montage(model_dir: Path, out: Path, classes: list[str]) -> None:
    """Per class: 4 held-out reals above 4 samples (DDIM 50, seed 0): the ventricles should show in both."""
    model = load_model(model_dir)
    rows = {}
    for label, name in enumerate(classes):
        reals = TrainingVolumes.load(find_volume_files([HELDOUT], contrast=name)[:4], model.config.input)
        rows[f"held-out {name}"] = [r[0].numpy() for r in reals.images]
        images = sample(model, 4, 50, generator=torch.Generator().manual_seed(0), class_label=label, batch_size=4)
        rows[f"samples, class {name}"] = [i[0].numpy() for i in images]
    save_montage(rows, out, overwrite=True)


def stages(provenance: dict) -> list[dict]:
    """The training stages of a package, first to last: its own provenance and, through ``started_from`` (pretrain
    --init-from), those of the packages it was continued from."""
    chain = [provenance]
    while (chain[-1].get("started_from") or {}).get("provenance"):
        chain.append(chain[-1]["started_from"]["provenance"])
    return chain[::-1]


def initial_weights(arguments: dict) -> str:
    """What a first stage started from: the name of the package it was --init-from, or "random weights"."""
    return Path(arguments["init_from"]).name if arguments.get("init_from") else "random weights"


def start_row(arguments: dict) -> str:
    """The card's "start" row: the package the first stage was --init-from, or a from-scratch initialisation."""
    if not arguments.get("init_from"):
        return "| start | random initialisation (MONAI's defaults); the class embeddings are learnt from step 0 |"
    return (f"| start | the weights of `{initial_weights(arguments)}` (the demo T1w model); its class embeddings start "
            "at zero, so step 0 is that model for every class |")


def stage_rows(chain: list[dict]) -> list[str]:
    """One card row per stage: where it started, steps, learning rate, weight average, wall time."""
    rows = []
    for number, stage in enumerate(chain, 1):
        training, arguments = stage["training"], stage["arguments"]
        start = f"stage {number - 1}" if number > 1 else initial_weights(arguments)
        average = (f", weights averaged (EMA {training['ema_decay']:g}, written as the model)"
                   if training.get("ema_decay") else "")
        rows.append(f"| training, stage {number} | from {start}: {training['steps']} steps × batch {training['batch']}, "
                    f"AdamW lr {training['lr']:g} ({arguments['warmup']} warm-up steps), seed {training['seed']}"
                    f"{average}; {training['wall_s'] / 3600:.2f} h on one CPU thread (2-core host, shared) |")
    return rows


def card_text(model: Path, config, assessments: dict, demo: dict, image_prefix: str, docs: str) -> str:
    """The card's markdown; image_prefix leads to its own images, docs to the docs/ folder (both relative to where
    the card is written)."""
    training = config.provenance["training"]
    chain = stages(config.provenance)
    classes = list(config.input.condition_classes)
    card = model_card(model)
    lines = [
        f"# Model card: {model.name}", "",
        "A class-conditioned 3D DDPM of healthy adult brain MRI in three contrasts — "
        f"{', '.join(f'class {i} = {c}' for i, c in enumerate(classes))} — trained by `diffusion-peft pretrain "
        "--contrast t1,t2,pd` on volumes from our cohort simulator. It is the **reconstruction prior** "
        "(`diffusion-peft reconstruct`), a multi-contrast synthesis model (`synthesize --contrast t2`), and the base "
        "to which FLAIR is added by controlled fine-tuning (a new class). It has never seen FLAIR. Not a clinical model.",
        "", "| | |", "|---|---|",
        f"| architecture | MONAI DiffusionModelUNet, channels {config.unet['channels']}, attention at the last level, "
        f"{config.unet['num_res_blocks']} res block per level, {config.unet['num_class_embeds']} class embeddings |",
        f"| parameters | {card['parameters']:,} ({card['size_mb']} MB of float32 weights) |",
        f"| grid | {' × '.join(map(str, config.input.shape))} voxels at {config.input.spacing[0]:g} mm (RAS) |",
        f"| noise schedule | {config.schedule.num_train_timesteps} steps, {config.schedule.schedule}, "
        f"**{config.schedule.prediction_type}** |",
        start_row(chain[0]["arguments"]),
        f"| training data | {training['volumes'] + training['validation_volumes']} simulated volumes "
        f"({(training['volumes'] + training['validation_volumes']) // len(classes)} subjects × "
        f"{', '.join(classes)}), {training['validation_volumes']} of them held out for validation |",
        *stage_rows(chain),
        f"| final loss (mean of last 50 steps) | {training['final_loss_mean_last_50']:.4f}; best validation "
        f"{training['best_val_loss']:.4f} (stage {len(chain)}) |", "",
        "Exact commands: `scripts/build_prior_model.sh` (both stages, each resumable, then the assessment below and "
        "this card; stage 2 alone: `scripts/continue_prior_model.sh`).",
        "", f"![loss curve of stage {len(chain)}]({image_prefix}loss_curve.png)", "",
        "## How good are its samples?", "",
        f"Per class, {assessments[classes[0]]['samples']} samples (DDIM {assessments[classes[0]]['ddim_steps']} steps, "
        f"seed 0, 8 at a time) against {assessments[classes[0]]['reals']} held-out simulated subjects of that contrast "
        "(simulator seed 5000, never seen in training), in the model's range [−1, 1]; beside it the demo T1w model, "
        "assessed by the same command on the same held-out T1w subjects. Features: the shipped feature network "
        f"([evaluation]({docs}evaluation.md#the-feature-network)); precision and recall with k = 3.", "",
        "| measure | " + " | ".join(f"class {c}" for c in classes) + " | demo model, T1w |",
        "|---|" + "---|" * (len(classes) + 1)]
    for key, label in ROWS:
        lines.append(f"| {label} | " + " | ".join(f"{assessments[c][key]:.3f}" for c in classes)
                     + f" | {demo[key]:.3f} |")
    t1 = assessments["t1"]
    lines += ["", f"On T1w against the demo model: FID {t1['fid_sample_real']:.1f} vs {demo['fid_sample_real']:.1f}, "
              f"pixel MMD² {t1['mmd_sample_real']:.4f} vs {demo['mmd_sample_real']:.4f} (lower = closer to the held-out "
              f"distribution), precision {t1['precision']:.2f} vs {demo['precision']:.2f}, recall {t1['recall']:.2f} vs "
              f"{demo['recall']:.2f}; MS-SSIM diversity ratio {t1['diversity_ratio']:.2f} vs {demo['diversity_ratio']:.2f}"
              " (1 = the cohort's, above 1 = less varied). One draw of 16 samples each; the seed-to-seed spread was "
              "not measured.", "",
              f"![held-out reals and samples per class]({image_prefix}montage.png)", "",
              "The montage: per class, 4 held-out reals above 4 samples (DDIM 50, seed 0). The lateral ventricles "
              "show in the samples: bright in all four T2w samples, dark in three of the four T1w ones (faint in the "
              "second), and in PD as faint as in the reals.", "",
              *(line.format(docs=docs) for line in HISTORY),
              "## Limitations", "",
              "- FID, MMD and precision/recall here come from 16 samples and a small feature network trained on the "
              "simulator; they rank models on this grid, they are not comparable with published FIDs.",
              "- The grid is coarse (6 mm): ventricles are a few voxels wide and the cortex is not resolved.",
              *[f"- Class {c}'s samples vary less than the held-out reals by MS-SSIM (diversity ratio "
                f"{assessments[c]['diversity_ratio']:.2f}, realism {assessments[c]['realism_ratio']:.2f}: a little "
                "mean-like), although their feature Vendi score is not lower than the reals'." for c in classes
                if assessments[c]["diversity_ratio"] > 1.2 and
                assessments[c]["vendi_features_samples"] >= assessments[c]["vendi_features_reals"]],
              *[f"- Class {c} has the lowest realism ratio ({assessments[c]['realism_ratio']:.2f})." for c in classes
                if assessments[c]["realism_ratio"] < 0.8],
              "- Trained and assessed on simulated data only; it says nothing about scanner data.", ""]
    return "\n".join(lines)


def main():
    model, workdir, prefix = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    config = read_model_config(model)
    classes = list(config.input.condition_classes)
    assessments = {c: json.loads(Path(f"{prefix}_{c}/assessment.json").read_text()) for c in classes}
    demo = json.loads(Path(f"{prefix}_demo_t1/assessment.json").read_text())
    history = json.loads((workdir / "history.json").read_text())
    save_loss_curve(history["losses"], model / "loss_curve.png", [tuple(v) for v in history["val_losses"]],
                    title=f"{model.name} pretraining", overwrite=True)
    montage(model, model / "montage.png", classes)
    (model / "assessment.json").write_text(json.dumps({"classes": assessments, "demo_model_t1": demo}, indent=2))
    (model / "MODEL_CARD.md").write_text(card_text(model, config, assessments, demo, "", "../../../docs/"))
    images = REPO / "docs" / "images"
    for name in ("loss_curve.png", "montage.png"):
        shutil.copy(model / name, images / f"prior_model_{name}")
    (REPO / "docs" / "prior_model.md").write_text(card_text(model, config, assessments, demo, "images/prior_model_", ""))
    print(np.round([assessments[c]["mmd_sample_real"] for c in classes], 4))


if __name__ == "__main__":
    main()
