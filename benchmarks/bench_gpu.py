"""GPU benchmark: full-size fine-tuning and latent synthesis, each beside the memory planner's prediction.

1. TenVOO-L (rank 4, the "tenvoo" targets) fine-tuning of TenVOO's 166.7 M-parameter pixel UNet at 160×224×160,
   batch 1, bf16 + activation checkpointing, through the real Trainer (random weights and volumes: the cost does
   not depend on the values). Peak memory = ``torch.cuda.max_memory_allocated`` over the measured steps (weights,
   adapter, AdamW state, activations: what the planner predicts, ``device="cuda"``), seconds per step = median of
   ``--steps`` steps after ``--warmup``. The same for bf16 without checkpointing and for fp32 with checkpointing
   when the planner says they fit in 90 % of this GPU (more points to check the planner against).
2. Synthesis with the architecture of the model zoo's ``brain_image_synthesis_latent_diffusion_model`` (its
   configs as Testing/Python/bundles.py states them; random weights): one volume, ``--sampling-steps`` DDIM steps on
   the 20×28×20 latent grid, then decoding to 160×224×160 — seconds per UNet step, decoding seconds, total, peak.

Usage (one GPU; about 2–4 minutes on an H100; CUDA build of torch):
    python benchmarks/bench_gpu.py [--steps 5] [--warmup 2] [--sampling-steps 50] [--out docs/benchmarks]
Writes gpu.json and gpu.md into --out. Without CUDA it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "Testing" / "Python"))  # bundles.py: the bundles' published configs

GIB = 1024**3


def bundle_config(name: str = "brain"):
    """The model.json an import of the model zoo's brain (``brain_image_synthesis_latent_diffusion_model``) or BraTS
    (``brats_mri_generative_diffusion``) bundle gives — read from their configs alone, no weights."""
    import bundles

    from DiffusionPEFTLib.models.bundle import read_bundle

    inference, metadata = {"brain": (bundles.BRAIN_INFERENCE, bundles.BRAIN_METADATA),
                           "brats": (bundles.BRATS_INFERENCE, bundles.BRATS_METADATA)}[name]
    with tempfile.TemporaryDirectory() as folder:
        bundles.write_bundle(Path(folder) / "bundle", inference, metadata, networks=None)  # configs only
        return read_bundle(Path(folder) / "bundle").config


def synchronize():
    import torch

    torch.cuda.synchronize()


def reset_peak():
    import torch

    synchronize()
    torch.cuda.reset_peak_memory_stats()


def peak_bytes() -> int:
    import torch

    synchronize()
    return torch.cuda.max_memory_allocated()


def release():
    import torch

    torch.cuda.empty_cache()


def fine_tuning_case(config, precision: str, checkpointing: bool, steps: int, warmup: int, device: str = "cuda") -> dict:
    """A TenVOO-L step of the real Trainer on the GPU: measured peak and median seconds, and the prediction."""
    import torch

    from DiffusionPEFTLib.adapters import inject
    from DiffusionPEFTLib.footprint import Job, TrainingSetup, footprint
    from DiffusionPEFTLib.models import DiffusionModel
    from DiffusionPEFTLib.training import Trainer, TrainConfig, TrainingVolumes

    setup = TrainingSetup.of("tenvoo-l", "tenvoo", {"rank": 4}, precision=precision, checkpointing=checkpointing)
    predicted = footprint(Job(config, 1, "train", setup, "cuda"))
    torch.manual_seed(0)
    model = DiffusionModel(config)
    parameters = model.parameter_count()
    adapters = inject(model.unet, "tenvoo-l", "tenvoo", rank=4)
    volumes = TrainingVolumes(torch.rand(2, 1, *config.input.shape), None, ["v0", "v1"])
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(model, list(adapters.trainable_parameters()), volumes,
                          TrainConfig(steps=10**6, lr=1e-4, checkpoint_every=0, precision=precision,
                                      checkpointing=checkpointing), workdir, device=device)
        model.train()
        for _ in range(warmup):
            trainer._optimizer_step()
        reset_peak()
        seconds = []
        for _ in range(steps):
            started = time.perf_counter()
            trainer._optimizer_step()
            synchronize()
            seconds.append(time.perf_counter() - started)
        peak = peak_bytes()
    del trainer, model, adapters
    release()
    return {"case": f"TenVOO-L r4, {parameters / 1e6:.1f} M UNet, {'×'.join(map(str, config.input.shape))}, batch 1, "
                    f"{precision}"
                    f"{' + checkpointing' if checkpointing else ''}",
            "precision": precision, "checkpointing": checkpointing, "trainable_parameters": predicted.gradients // 4,
            "measured_peak_gib": peak / GIB, "predicted_peak_gib": predicted.total / GIB,
            "measured_over_predicted": peak / predicted.total, "seconds_per_step_median": statistics.median(seconds),
            "seconds_per_step": seconds}


def synthesis_case(config, sampling_steps: int, device: str = "cuda") -> dict:
    import torch

    from DiffusionPEFTLib.footprint import Job, footprint
    from DiffusionPEFTLib.models.diffusion_model import build_unet
    from DiffusionPEFTLib.models.latent_model import LatentDiffusionModel, LatentSpec, build_autoencoder
    from DiffusionPEFTLib.synthesis import sample

    predicted = footprint(Job(config, 1, "sample", device="cuda"))
    torch.manual_seed(0)
    networks = []
    for network in (build_unet(config.unet, initialise=False),
                    build_autoencoder(LatentSpec.from_dict(config.latent).autoencoder, initialise=False)):
        network = network.to(device)  # uninitialised, then random weights drawn on the device (553 M parameters)
        with torch.no_grad():
            for tensor in network.parameters():
                tensor.normal_(0.0, 0.02) if tensor.dim() > 1 else tensor.zero_()
        networks.append(network)
    model = LatentDiffusionModel(config, *networks).to(device).eval()
    sample(model, 1, steps=2)  # warm-up: kernels, cuDNN plans
    reset_peak()
    started = time.perf_counter()
    sample(model, 1, steps=sampling_steps)
    synchronize()
    total = time.perf_counter() - started
    peak = peak_bytes()
    latent = torch.randn(1, model.out_channels, *model.grid_shape, device=device)
    synchronize()
    started = time.perf_counter()
    model.decode(latent)
    synchronize()
    decode = time.perf_counter() - started
    parameters = sum(p.numel() for p in model.unet.parameters())
    return {"case": f"brain LDM bundle ({parameters / 1e6:.0f} M UNet + autoencoder), one volume "
                    f"{'×'.join(map(str, config.input.shape))}, {sampling_steps} DDIM steps on "
                    f"{'×'.join(map(str, model.grid_shape))} + decoding, fp32",
            "measured_peak_gib": peak / GIB, "predicted_peak_gib": predicted.total / GIB,
            "measured_over_predicted": peak / predicted.total, "seconds_total": total, "seconds_decode": decode,
            "seconds_per_unet_step": (total - decode) / sampling_steps}


def markdown(meta: dict, training: list[dict], synthesis: dict) -> str:
    lines = [f"# GPU benchmark\n\n{meta['device']}, torch {meta['torch']}, CUDA {meta['cuda']}; run "
             f"{meta['date']}.\n", "## Fine-tuning step (real Trainer)\n",
             "| case | measured peak (GiB) | predicted (GiB) | measured / predicted | s / step (median) |",
             "|---|---:|---:|---:|---:|"]
    for row in training:
        lines.append(f"| {row['case']} | {row['measured_peak_gib']:.2f} | {row['predicted_peak_gib']:.2f} | "
                     f"{row['measured_over_predicted']:.2f} | {row['seconds_per_step_median']:.2f} |")
    lines += ["", "## Latent synthesis (random weights)\n",
              "| case | measured peak (GiB) | predicted (GiB) | measured / predicted | s / UNet step | decoding (s) | "
              "total (s) |", "|---|---:|---:|---:|---:|---:|---:|",
              f"| {synthesis['case']} | {synthesis['measured_peak_gib']:.2f} | {synthesis['predicted_peak_gib']:.2f} | "
              f"{synthesis['measured_over_predicted']:.2f} | {synthesis['seconds_per_unet_step']:.3f} | "
              f"{synthesis['seconds_decode']:.2f} | {synthesis['seconds_total']:.1f} |", "",
              "Measured peak: `torch.cuda.max_memory_allocated` over the measured steps (tensors only; the CUDA "
              "context and the caching allocator's reserve are not in it, nor in the prediction).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="measured fine-tuning steps per case")
    parser.add_argument("--warmup", type=int, default=2, help="fine-tuning steps before measuring")
    parser.add_argument("--sampling-steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu.py needs a CUDA GPU and a CUDA build of torch; none is available here "
              f"(torch {torch.__version__}). Nothing was run or written.", file=sys.stderr)
        return 2
    from DiffusionPEFTLib.footprint import Job, TrainingSetup, footprint
    from DiffusionPEFTLib.models import preset_config

    started = time.perf_counter()
    device = torch.cuda.get_device_properties(0)
    bf16 = torch.cuda.is_bf16_supported()
    config = preset_config("tenvoo")
    cases = [("bf16" if bf16 else "fp16", True)]
    for precision, checkpointing in (("bf16" if bf16 else "fp16", False), ("fp32", True)):
        setup = TrainingSetup.of("tenvoo-l", "tenvoo", {"rank": 4}, precision=precision, checkpointing=checkpointing)
        if footprint(Job(config, 1, "train", setup, "cuda")).total < 0.9 * device.total_memory:
            cases.append((precision, checkpointing))
    training = []
    for precision, checkpointing in cases:
        training.append(fine_tuning_case(config, precision, checkpointing, args.steps, args.warmup))
        print(json.dumps(training[-1]), flush=True)
    synthesis = synthesis_case(bundle_config("brain"), args.sampling_steps)
    print(json.dumps(synthesis), flush=True)
    meta = {"device": f"{device.name} ({device.total_memory / GIB:.0f} GiB)", "torch": torch.__version__,
            "cuda": torch.version.cuda, "date": time.strftime("%Y-%m-%d"), "wall_s": time.perf_counter() - started}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps({"meta": meta, "fine_tuning": training, "synthesis": synthesis},
                                                  indent=1))
    (args.out / "gpu.md").write_text(markdown(meta, training, synthesis))
    print(markdown(meta, training, synthesis))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
