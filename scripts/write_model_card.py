"""Write the model card of a pretrained package: MODEL_CARD.md + loss_curve.png + montage.png in the
package folder, and the same card as docs/demo_model.md.

Usage: python scripts/write_model_card.py MODEL_DIR WORKDIR ASSESSMENT_DIR
(WORKDIR holds history.json from pretrain; ASSESSMENT_DIR holds assessment.json and montage.png from assess.)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.commands.info import model_card  # noqa: E402
from DiffusionPEFTLib.metrics import ms_ssim_settings  # noqa: E402
from DiffusionPEFTLib.models import read_model_config  # noqa: E402
from DiffusionPEFTLib.plots import save_loss_curve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def card_text(model: Path, config, assessment: dict, image_prefix: str) -> str:
    training = config.provenance["training"]
    arguments = config.provenance["arguments"]
    intensity = config.input.intensity
    settings = ms_ssim_settings(config.input.shape)
    a = assessment
    return "\n".join([
        f"# Model card: {model.name}", "",
        "A small 3D DDPM of healthy adult T1-weighted brain MRI, pretrained by `diffusion-peft pretrain` on "
        "volumes from our cohort simulator (ICBM152 2009a anatomy, random pose and smooth warps, mild "
        "atrophy 0–0.3, bias field, Rician noise at SNR 40). It is the embedded default of the demo and the "
        "base model for fine-tuning examples; it is **not** a clinical model.", "",
        "| | |", "|---|---|",
        f"| architecture | MONAI DiffusionModelUNet, channels {config.unet['channels']}, attention at level "
        f"{config.unet['attention_levels'].index(True)}, {config.unet['num_res_blocks']} res block per level, "
        f"SDPA attention |",
        f"| parameters | {model_card(model)['parameters']:,} ({model_card(model)['size_mb']} MB of float32 weights) |",
        f"| grid | {' × '.join(map(str, config.input.shape))} voxels at {config.input.spacing[0]:g} mm (RAS) |",
        f"| intensities | per-volume percentile scaling ({intensity['lower']:g}th → {intensity['range'][0]:g}, "
        f"{intensity['upper']:g}th → {intensity['range'][1]:g}) |",
        f"| noise schedule | {config.schedule.num_train_timesteps} steps, {config.schedule.schedule} "
        f"{config.schedule.beta_start}→{config.schedule.beta_end}, **{config.schedule.prediction_type}** |",
        f"| training data | {training['volumes']} simulated subjects ({training['validation_volumes']} more for "
        f"validation) |",
        f"| training | {training['steps']} steps × batch {training['batch']}, AdamW lr {training['lr']:g} "
        f"({arguments['warmup']} warm-up steps), seed {training['seed']}, {training['device']} |",
        f"| wall time | {training['wall_s'] / 3600:.2f} h on 2 CPU cores |",
        f"| final loss (mean of last 50 steps) | {training['final_loss_mean_last_50']:.4f}"
        + (f"; best validation {training['best_val_loss']:.4f}" if training["best_val_loss"] is not None else "")
        + " |", "",
        "Exact commands: `scripts/build_demo_model.sh` (pretrain arguments: "
        f"`{json.dumps({k: v for k, v in arguments.items() if k in ('shape', 'spacing', 'channels', 'batch', 'lr', 'prediction')})}`).", "",
        f"![loss curve]({image_prefix}loss_curve.png)", "",
        "## How good are its samples?", "",
        f"{a['samples']} samples (DDIM {a['ddim_steps']} steps) against {a['reals']} held-out simulated subjects "
        "(never seen in training), in the model's intensity range [−1, 1]:", "",
        "| measure | value | reference |", "|---|---|---|",
        f"| MS-SSIM sample ↔ held-out real | {a['ms_ssim_sample_real']:.3f} | real ↔ real {a['ms_ssim_real_real']:.3f} "
        f"→ ratio **{a['realism_ratio']:.2f}** (target ≥ 0.8) |",
        f"| MS-SSIM sample ↔ sample (diversity) | {a['ms_ssim_sample_sample']:.3f} | real ↔ real "
        f"{a['ms_ssim_real_real']:.3f} → ratio {a['diversity_ratio']:.2f} (1 = the cohort's own diversity) |",
        f"| MMD² samples ↔ held-out reals | {a['mmd_sample_real']:.3f} | training-set mean image repeated: "
        f"{a['mmd_mean_real']:.3f} (a generator must beat it) |",
        f"| MS-SSIM training mean ↔ held-out real | {a['ms_ssim_mean_real']:.3f} | (why MS-SSIM-to-real alone "
        "rewards blur) |", "",
        f"![held-out reals, samples, training mean]({image_prefix}montage.png)", "",
        f"MS-SSIM uses a {settings.kernel_size}-voxel kernel and {len(settings.weights)} scales at this grid "
        "(the size rule in `metrics/similarity.py`). "
        "MMD² uses a Gaussian kernel on 2×-block-averaged volumes with the median-distance bandwidth.", "",
        "## Limitations", "",
        f"- {'Samples are less varied than the cohort (diversity ratio above 1).' if a['diversity_ratio'] > 1 else 'Samples are as varied as the cohort or more (diversity ratio at most 1).'}",
        "- Head shape, pose and tissue contrast are learned; inner structure (ventricle and sulcal edges) is "
        "blotchier than in the reals at this model size and training length (see the montage). More steps "
        "(`STEPS=... scripts/build_demo_model.sh`, resumable) sharpen it.",
        "- Trained and assessed on simulated data only; it says nothing about scanner data.",
    ]) + "\n"


def main():
    model, workdir, assessment_dir = (Path(a) for a in sys.argv[1:4])
    config = read_model_config(model)
    history = json.loads((workdir / "history.json").read_text())
    assessment = json.loads((assessment_dir / "assessment.json").read_text())
    save_loss_curve(history["losses"], model / "loss_curve.png", [tuple(v) for v in history["val_losses"]],
                    title=f"{model.name} pretraining")
    shutil.copy(assessment_dir / "montage.png", model / "montage.png")
    shutil.copy(assessment_dir / "assessment.json", model / "assessment.json")
    (model / "MODEL_CARD.md").write_text(card_text(model, config, assessment, ""))
    images = REPO / "docs" / "images"
    shutil.copy(model / "loss_curve.png", images / "demo_model_loss_curve.png")
    shutil.copy(model / "montage.png", images / "demo_model_montage.png")
    (REPO / "docs" / "demo_model.md").write_text(card_text(model, config, assessment, "images/demo_model_"))


if __name__ == "__main__":
    main()
