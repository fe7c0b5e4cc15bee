"""Train the shipped 3D feature network (Resources/FeatureNet) on simulator volumes, validate it, write it.

Data: 900 simulated subjects on the demo grid (32×40×32 at 6 mm): a third each healthy, with white-matter
hyperintensities and with a tumour, each third in four cohorts at SNR 15, 25, 40 and 80; atrophy drawn from
[0, 1]; all four contrasts, normalised as the models see them. Labels the simulator knows: contrast, lesion
type, atrophy, tissue fractions, and the noise level (std in the model range). Augmentation: shifts,
left–right flips, and either Gaussian blur or added Gaussian noise, whose σ are labels too.
The last HELD_OUT_FRACTION of each cohort's subjects is never trained on: the held-out accuracies come from
them. The degradation table (every metric; the FID ranking) uses a new cohort (VALIDATION_SEED). Both go
into feature_net.json and CARD.md.

Usage: OMP_NUM_THREADS=1 python scripts/build_feature_net.py [--out Resources/FeatureNet]
       (about 6 minutes of CPU on one thread, 2 GB of memory)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.metrics.degradations import degraded_sets  # noqa: E402
from DiffusionPEFTLib.metrics.feature_net import (CONFIG_NAME, CONTRASTS, FORMAT_VERSION, FRACTIONS, LESIONS,  # noqa: E402
                                                  WEIGHTS_NAME, FeatureNet, load_feature_net)
from DiffusionPEFTLib import metrics  # noqa: E402
from DiffusionPEFTLib.models.config import InputSpec  # noqa: E402
from DiffusionPEFTLib.simulate import simulate_cohort  # noqa: E402

SHAPE, SPACING = (32, 40, 32), (6.0, 6.0, 6.0)
ARCHITECTURE = {"channels": [16, 32, 48, 64]}
SUBJECTS_PER_COHORT, SNRS = 75, (15.0, 25.0, 40.0, 80.0)  # per lesion type, one cohort per SNR
HELD_OUT_FRACTION = 0.2
STEPS, BATCH, LEARNING_RATE, SEED = 3000, 16, 2e-3, 0
MAX_SHIFT = 2  # voxels per axis (the border is background)
BLUR_SHARE, MAX_BLUR = 0.3, 2.0  # this share of a batch is blurred, σ ~ U(0, MAX_BLUR) voxels
NOISE_SHARE, MAX_NOISE = 0.3, 0.2  # another share gets Gaussian noise, σ ~ U(0, MAX_NOISE) in the model range
REGRESSIONS = ("atrophy", "fractions", "noise", "blur")  # MSE on standardised targets
VALIDATION_SEED, RANKING_SET_SIZE = 1000, 32  # a new SNR-40 cohort; volumes per set in the degradation ranking
TABLE_COLUMNS = (("fid", ".1f"), ("feature_mmd", ".3f"), ("precision", ".2f"), ("recall", ".2f"), ("density", ".2f"),
                 ("coverage", ".2f"), ("feature_vendi", ".2f"), ("ms_ssim_vendi", ".2f"), ("ms_ssim_to_real", ".3f"),
                 ("pixel_mmd", ".3f"))


def simulate(spec: InputSpec, seed: int) -> dict[str, np.ndarray]:
    """Every volume with its labels: images (M, X, Y, Z) in the model range, contrast, lesions (M,) int, atrophy (M,),
    fractions (M, 4), noise (M,) = the noise std in the model range, subject (M,), held_out (M,) bool.
    Cohort seeds: seed, seed + 1, …"""
    normalisation = spec.normalisation()
    rows = {key: [] for key in ("images", "contrast", "lesions", "atrophy", "fractions", "noise", "subject", "held_out")}
    first_held_out = round(SUBJECTS_PER_COHORT * (1 - HELD_OUT_FRACTION))
    for cohort_index, (lesion_index, snr) in enumerate(product(range(len(LESIONS)), SNRS)):
        cohort = simulate_cohort(SUBJECTS_PER_COHORT, seed=seed + cohort_index, atrophy=(0.0, 1.0), snr=snr,
                                 lesions=LESIONS[lesion_index], contrasts=CONTRASTS, shape=spec.shape, spacing=spec.spacing)
        for index, subject in enumerate(cohort):
            normal = np.array([subject.params["volumes_ml"][name] for name in FRACTIONS])
            for contrast_index, contrast in enumerate(CONTRASTS):
                data = subject.images[contrast].data
                params = normalisation.fit(data)
                rows["images"].append(params.apply(data))
                rows["noise"].append((params.target_high - params.target_low) / (params.source_high - params.source_low) / snr)
                rows["contrast"].append(contrast_index)
                rows["lesions"].append(lesion_index)
                rows["atrophy"].append(subject.params["atrophy"])
                rows["fractions"].append(normal / normal.sum())
                rows["subject"].append(cohort_index * SUBJECTS_PER_COHORT + index)
                rows["held_out"].append(index >= first_held_out)
    floats = ("images", "atrophy", "fractions", "noise")
    return {key: np.asarray(value, dtype=np.float32 if key in floats else None) for key, value in rows.items()}


def augment(x: torch.Tensor, noise: torch.Tensor, generator: torch.Generator):
    """Shift and left–right flip every volume of a batch (B, X, Y, Z) at random, then blur some (σ in voxels) or add
    noise to others (σ in the model range). ``noise``: each volume's own noise std. Return the volumes
    (B, 1, X, Y, Z), the blur σ (B,), the total noise std (B,), and which noise labels hold (blurring smooths the
    noise by an amount not worked out here)."""
    kind = torch.rand(len(x), generator=generator)
    blurred, noisy = kind < BLUR_SHARE, (kind >= BLUR_SHARE) & (kind < BLUR_SHARE + NOISE_SHARE)
    blur = torch.where(blurred, torch.rand(len(x), generator=generator) * MAX_BLUR, 0.0)
    added = torch.where(noisy, torch.rand(len(x), generator=generator) * MAX_NOISE, 0.0)
    volumes = []
    for index in range(len(x)):
        shift = torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (3,), generator=generator).tolist()
        flip = [0] if torch.rand(1, generator=generator) < 0.5 else []  # axis X = left–right
        volume = torch.roll(x[index], shift, dims=(0, 1, 2)).flip(flip)
        if blur[index] > 0:
            volume = torch.from_numpy(ndimage.gaussian_filter(volume.numpy(), float(blur[index])))
        volumes.append(volume + added[index] * torch.randn(volume.shape, generator=generator))
    return torch.stack(volumes)[:, None], blur, torch.sqrt(noise**2 + added**2), ~blurred


def train(network: FeatureNet, data: dict, steps: int) -> tuple[dict, list[float]]:
    """AdamW with cosine decay on random augmented batches of the training volumes. Return the (mean, std) each
    regression target is standardised by (noise: its logarithm; blur: σ as it is) and the losses."""
    generator = torch.Generator().manual_seed(SEED)
    train_index = torch.from_numpy(np.flatnonzero(~data["held_out"]))
    images, native_noise = torch.from_numpy(data["images"]), torch.from_numpy(data["noise"])
    labels = {name: torch.from_numpy(data[name]) for name in ("contrast", "lesions", "atrophy", "fractions")}
    scale = {name: (labels[name][train_index].mean(0), labels[name][train_index].std(0)) for name in ("atrophy", "fractions")}
    log_noise = native_noise[train_index].log()
    scale.update(noise=(log_noise.mean(), log_noise.std()), blur=(torch.tensor(0.0), torch.tensor(1.0)))
    optimiser = torch.optim.AdamW(network.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    losses = []
    network.train()
    for step in range(steps):
        batch = train_index[torch.randint(len(train_index), (BATCH,), generator=generator)]
        x, blur, noise, noise_known = augment(images[batch], native_noise[batch], generator)
        out = network.predict(x)
        target = {name: labels[name][batch] for name in ("atrophy", "fractions")} | {"noise": noise.log(), "blur": blur}
        error = {name: (out[name] - (target[name] - scale[name][0]) / scale[name][1]) ** 2 for name in REGRESSIONS}
        loss = (F.cross_entropy(out["contrast"], labels["contrast"][batch]) + F.cross_entropy(out["lesions"], labels["lesions"][batch])
                + error["atrophy"].mean() + error["fractions"].mean() + error["blur"].mean()
                + (error["noise"] * noise_known).sum() / noise_known.sum().clamp_min(1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == steps - 1:
            print(f"step {step}: loss {np.mean(losses[-200:]):.4f}", flush=True)
    network.eval()
    return scale, losses


@torch.no_grad()
def set_centre(network: FeatureNet, images: np.ndarray) -> None:
    """Centre and scale the features on the pooled features of ``images`` (M, X, Y, Z)."""
    network.set_centre(torch.cat([network.pooled(torch.from_numpy(images[i:i + 64])[:, None])
                                  for i in range(0, len(images), 64)]))


@torch.no_grad()
def held_out_accuracy(network: FeatureNet, data: dict, scale: dict) -> dict[str, float]:
    """On the held-out volumes: contrast and lesion accuracy, atrophy MAE and R², tissue-fraction MAE; on copies
    blurred with σ = 0, 1, 2 voxels in turn the blur MAE, and on copies given noise σ = 0, 0.05, 0.1 in turn
    the noise-std R² and median relative error."""
    index = np.flatnonzero(data["held_out"])
    generator = torch.Generator().manual_seed(SEED)
    clean = torch.from_numpy(data["images"][index])
    blur = torch.tensor([0.0, 1.0, 2.0]).repeat(len(index) // 3 + 1)[:len(index)]
    added = torch.tensor([0.0, 0.05, 0.1]).repeat(len(index) // 3 + 1)[:len(index)]
    blurred = torch.stack([torch.from_numpy(ndimage.gaussian_filter(v.numpy(), float(s))) for v, s in zip(clean, blur)])
    noisy = clean + added[:, None, None, None] * torch.randn(clean.shape, generator=generator)

    def predict(volumes: torch.Tensor, name: str) -> np.ndarray:
        estimate = torch.cat([network.predict(volumes[i:i + 64, None])[name] for i in range(0, len(volumes), 64)])
        return (estimate * scale[name][1] + scale[name][0]).numpy() if name in scale else estimate.numpy()

    def r2(estimate: np.ndarray, truth: np.ndarray) -> float:
        return float(1 - ((estimate - truth) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())

    atrophy, truth = predict(clean, "atrophy"), data["atrophy"][index]
    lesions = predict(clean, "lesions").argmax(1)
    noise = np.exp(predict(noisy, "noise"))
    true_noise = np.sqrt(data["noise"][index] ** 2 + added.numpy() ** 2)
    return {
        "volumes": int(len(index)),
        "contrast_accuracy": float((predict(clean, "contrast").argmax(1) == data["contrast"][index]).mean()),
        "lesion_accuracy": float((lesions == data["lesions"][index]).mean()),
        "lesion_presence_accuracy": float(((lesions > 0) == (data["lesions"][index] > 0)).mean()),
        "atrophy_mae": float(np.abs(atrophy - truth).mean()),
        "atrophy_r2": r2(atrophy, truth),
        "fraction_mae": float(np.abs(predict(clean, "fractions") - data["fractions"][index]).mean()),
        "blur_mae_voxels": float(np.abs(predict(blurred, "blur") - blur.numpy()).mean()),
        "noise_r2": r2(noise, true_noise),
        "noise_median_relative_error": float(np.median(np.abs(noise / true_noise - 1))),
    }


def validation_cohort(spec: InputSpec) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """2·RANKING_SET_SIZE new subjects at SNR 40 (lesions none, wmh, tumour in turn): their T1w and T2w volumes."""
    normalisation = spec.normalisation()
    count = 2 * RANKING_SET_SIZE
    t1, t2 = [], []
    for lesion_index, lesions in enumerate(LESIONS):
        size = len(range(lesion_index, count, len(LESIONS)))
        for subject in simulate_cohort(size, seed=VALIDATION_SEED + lesion_index, atrophy=(0.0, 1.0), lesions=lesions,
                                       contrasts="t1,t2", shape=spec.shape, spacing=spec.spacing):
            t1.append(normalisation.fit(subject.images["t1"].data).apply(subject.images["t1"].data))
            t2.append(normalisation.fit(subject.images["t2"].data).apply(subject.images["t2"].data))
    return t1, t2


def degradation_table(network: FeatureNet, t1: list[np.ndarray], t2: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """Every metric of each degraded set (:func:`degraded_sets`, made from every other subject of the validation
    cohort) against the reference (the remaining T1w); RANKING_SET_SIZE volumes per set. The last two columns
    are the older metrics, for comparison: mean MS-SSIM to the reals (64 pairs) and MMD on voxels."""
    reference = t1[::2]  # alternate, so both halves mix the lesion types
    table = {}
    for name, volumes in degraded_sets(reference, t1[1::2], t2[1::2]).items():
        table[name] = {"fid": metrics.fid(reference, volumes, network),
                       "feature_mmd": metrics.feature_mmd(reference, volumes, network),
                       **metrics.precision_recall(reference, volumes, network=network),
                       "feature_vendi": metrics.feature_vendi(volumes, network),
                       "ms_ssim_vendi": metrics.ms_ssim_vendi(volumes, data_range=2.0),
                       "ms_ssim_to_real": metrics.cross_ms_ssim(volumes, reference, data_range=2.0, max_pairs=64),
                       "pixel_mmd": metrics.mmd(reference, volumes)}
    table["reference itself"] = {"feature_vendi": metrics.feature_vendi(reference, network),
                                 "ms_ssim_vendi": metrics.ms_ssim_vendi(reference, data_range=2.0)}
    return table


def write(out: Path, network: FeatureNet, record: dict) -> str:
    """weights.safetensors, then feature_net.json (each via a temporary name) into ``out``; return the sha256."""
    from safetensors.torch import save as save_safetensors

    weights = save_safetensors({k: v.detach().contiguous() for k, v in network.state_dict().items()})
    digest = hashlib.sha256(weights).hexdigest()
    spec = {"format_version": FORMAT_VERSION,
            "architecture": {"class": "DiffusionPEFTLib.metrics.feature_net.FeatureNet", "arguments": ARCHITECTURE},
            "input": {"shape": list(network.input.shape), "spacing": list(network.input.spacing),
                      "orientation": "RAS", "intensity": network.input.intensity},
            "features": {"dim": network.feature_dim, "pooling": "mean and max over space of the last conv",
                         "centred": "minus the mean of the pooled features over the training volumes, divided by the "
                                    "root-mean variance of their dimensions (total variance over the training volumes = dim)"},
            "heads": {"contrast": list(CONTRASTS), "lesions": list(LESIONS),
                      "atrophy": "A, standardised by training.target_scale",
                      "fractions": [f"{name} / normal tissue, standardised" for name in FRACTIONS],
                      "noise": "log of the noise std in the model range, standardised",
                      "blur": "Gaussian blur σ in voxels"},
            **record, "weights_sha256": digest}
    out.mkdir(parents=True, exist_ok=True)
    for name, content in ((WEIGHTS_NAME, weights), (CONFIG_NAME, json.dumps(spec, indent=2, ensure_ascii=False).encode())):
        temporary = out / f".{name}.partial"
        temporary.write_bytes(content)
        temporary.replace(out / name)
    return digest


def card_text(spec: dict) -> str:
    """CARD.md: what the network is, what it was trained on, how well it does, and its limits."""
    training, validation = spec["training"], spec["validation"]
    held_out, ranking = validation["held_out"], validation["degradations"]
    table_rows = "\n".join(f"| {name} | " + " | ".join(f"{row[key]:{form}}" if key in row else "" for key, form in TABLE_COLUMNS)
                           + " |" for name, row in ranking["metrics"].items())
    return f"""# DiffusionPEFT feature network (3D, simulator-trained)

A small 3D CNN whose pooled activations are the features of the distribution metrics in
`DiffusionPEFTLib.metrics` (FID, feature MMD, precision/recall/density/coverage, Vendi score). It needs
no download. Built by `scripts/build_feature_net.py`; described in `docs/evaluation.md`.

- **Input**: one volume on a {"×".join(map(str, spec["input"]["shape"]))} grid at {spec["input"]["spacing"][0]:g} mm
  (RAS), intensities percentile-scaled to [-1, 1] as the diffusion models see them; other grids are
  resampled onto it.
- **Architecture**: stride-2 stem, three stages of (3³ conv, stride-2 3³ conv), a last 3³ conv, batch
  norm and SiLU after every conv, widths {spec["architecture"]["arguments"]["channels"]}; spatial mean and
  max of the last 64 channels → {spec["features"]["dim"]} features, centred on their mean over the training
  volumes and divided by one scale (their total variance over the training volumes is
  {spec["features"]["dim"]}). Heads (shipped, used for training and checks only): contrast, lesion type,
  atrophy, tissue fractions, noise std, blur σ.
- **Training data**: {training["data"]}. Held out: {training["held_out"]}.
- **Training**: {training["steps"]} steps of batch {training["batch"]}, {training["optimiser"]}; augmentation:
  {training["augmentation"]}. {training["cpu_seconds"]["training"]} s of CPU on one thread (simulation
  {training["cpu_seconds"]["simulation"]} s).
- **Weights**: `weights.safetensors`, sha256 `{spec["weights_sha256"]}` (checked on load; never unpickled).

## Held-out accuracy ({held_out["volumes"]} volumes of subjects never trained on)

| label | result |
|---|---|
| contrast (t1/t2/pd/flair) | {held_out["contrast_accuracy"]:.1%} correct |
| lesion type (none/wmh/tumour) | {held_out["lesion_accuracy"]:.1%} correct (chance 33 %); lesion present or not: {held_out["lesion_presence_accuracy"]:.1%} |
| atrophy A ∈ [0, 1] | MAE {held_out["atrophy_mae"]:.3f}, R² {held_out["atrophy_r2"]:.2f} |
| tissue fractions (CSF, ventricles, GM, WM of normal tissue) | MAE {held_out["fraction_mae"]:.4f} |
| noise std (copies with added σ 0, 0.05, 0.1) | R² {held_out["noise_r2"]:.2f}, median relative error {held_out["noise_median_relative_error"]:.1%} |
| blur σ (copies blurred with σ 0, 1, 2 voxels) | MAE {held_out["blur_mae_voxels"]:.2f} voxels |

## Validation: the metrics on degraded sets

{ranking["reference"]}; {ranking["set_size"]} volumes per set. Blur: Gaussian σ in voxels (1 voxel = 6 mm);
noise: Gaussian σ in the model range (a simulated scan at SNR 40 has about 0.045); mean image: the
reference's voxel-wise mean, repeated; other contrast: the same subjects' T2w.

| set against the reference | FID | feature MMD | precision | recall | density | coverage | Vendi (features) | Vendi (MS-SSIM) | MS-SSIM to real | pixel MMD |
|---|---|---|---|---|---|---|---|---|---|---|
{table_rows}

Precision/recall/density/coverage with k = {ranking["k"]}; the Vendi scores are of the set itself (n = {ranking["set_size"]}).
The last two columns are the older metrics: MS-SSIM to real ranks the mean image *best* and pixel
MMD does not see noise — the reason for the feature metrics.

Held-out reals are closest; the mild degradations (blur σ = 1 voxel, noise σ = 0.05) come next; the
mean image and another contrast are farther. A 12 mm blur (σ = 2 voxels on this grid) leaves little
anatomy and ranks with the failure modes: the mean image looks like a plausible brain, and FID charges
it only for the missing spread (the reference's total variance), while heavy blur moves every volume
outside the real distribution. `Testing/Python/test_feature_metrics.py` checks this ranking on a
smaller cohort (12 volumes a set).

## Limits

- Trained on simulated brains only (one template anatomy, no skull); features of real scans are less
  tested, and differences the simulator cannot make (folding patterns, vessels, artefacts) are unseen.
- The network was *taught* blur σ and noise level (they are labels during training), so the ranking
  above shows that these axes are present, not that unseen artefacts are detected.
- Lesion type is only weakly encoded at 6 mm (see the table): a generator that drops small lesions is
  not reliably caught by these features.
- Within one contrast the features vary along few directions (atrophy, noise, lesions, pose), so the
  feature Vendi score of 32 simulated T1w is about 2: it tells a collapsed set (1) from a real one,
  not finer differences in diversity; the MS-SSIM Vendi score spreads more.
- FID is biased upwards for small sets (it grows about as D / n): compare FIDs of sets of equal size only.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "Resources" / "FeatureNet")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    spec = InputSpec(shape=SHAPE, spacing=SPACING)
    started = time.process_time()
    data = simulate(spec, SEED)
    simulated = time.process_time() - started
    print(f"simulated {len(data['images'])} volumes in {simulated:.0f} s CPU", flush=True)
    network = FeatureNet(spec, **ARCHITECTURE)
    started = time.process_time()
    scale, losses = train(network, data, args.steps)
    trained = time.process_time() - started
    set_centre(network, data["images"][~data["held_out"]])
    accuracy = held_out_accuracy(network, data, scale)
    print(json.dumps(accuracy), flush=True)
    table = degradation_table(network, *validation_cohort(spec))
    print(json.dumps(table, ensure_ascii=False), flush=True)
    cohorts = len(LESIONS) * len(SNRS)
    record = {
        "training": {
            "data": (f"DiffusionPEFTLib.simulate: {cohorts * SUBJECTS_PER_COHORT} subjects in {cohorts} cohorts of "
                     f"{SUBJECTS_PER_COHORT} (lesions {', '.join(LESIONS)} × SNR {', '.join(f'{s:g}' for s in SNRS)}; cohort "
                     f"seeds {SEED}–{SEED + cohorts - 1}), atrophy U(0, 1), bias 0.15, contrasts {', '.join(CONTRASTS)}; "
                     f"{len(data['images'])} volumes"),
            "held_out": f"last {HELD_OUT_FRACTION:.0%} of each cohort's subjects ({int(data['held_out'].sum())} volumes)",
            "steps": args.steps, "batch": BATCH, "optimiser": f"AdamW lr {LEARNING_RATE}, cosine decay, weight decay 1e-4",
            "augmentation": (f"shifts up to {MAX_SHIFT} voxels, left–right flips; {BLUR_SHARE:.0%} blurred σ ~ U(0, {MAX_BLUR:g}) "
                             f"voxels, {NOISE_SHARE:.0%} added noise σ ~ U(0, {MAX_NOISE:g})"),
            "seed": SEED, "final_loss": float(np.mean(losses[-100:])), "torch_threads": 1,
            "cpu_seconds": {"simulation": round(simulated), "training": round(trained)},
            "target_scale": {name: [value.tolist() for value in pair] for name, pair in scale.items()},
        },
        "validation": {"held_out": accuracy,
                       "degradations": {"set_size": RANKING_SET_SIZE, "reference": (
                           f"T1w of a new SNR-40 cohort (seeds {VALIDATION_SEED}–{VALIDATION_SEED + 2}, lesions none, "
                           "wmh, tumour); degraded sets from the other half of it"), "k": 3, "metrics": table}},
    }
    digest = write(args.out, network, record)
    load_feature_net(args.out)  # the written folder loads (sha256 checked)
    (args.out / "CARD.md").write_text(card_text(json.loads((args.out / CONFIG_NAME).read_text())))
    print(f"wrote {args.out} (sha256 {digest[:12]}…)")


if __name__ == "__main__":
    main()
