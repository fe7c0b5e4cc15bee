"""Benchmark: our train step and DDIM sampling vs the plain MONAI tutorial loop, same model and inputs.

Baseline = MONAI's 3D DDPM tutorial: ``DiffusionInferer(DDPMScheduler)`` for the training step
(noise prediction → MSE → backward → AdamW) and ``DiffusionInferer.sample`` with a
``DDIMScheduler`` for sampling. Ours = ``DiffusionModel.loss`` and ``synthesis.sample``.
Timing alternates ours/baseline in one process, swapping who goes first each repeat (fair under
machine noise; neither always runs second); peak memory is measured in a fresh process per case
(CPU: peak RSS; CUDA: max allocated).

Usage: python benchmarks/bench_foundation.py [--sizes 32 64] [--repeats 5] [--ddim-steps 10] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from DiffusionPEFTLib.models import DiffusionModel, InputSpec, ModelConfig, ScheduleConfig  # noqa: E402
from DiffusionPEFTLib.synthesis import sample  # noqa: E402

UNET = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [32, 64, 64],
        "attention_levels": [False, False, True], "num_res_blocks": 1, "num_head_channels": [0, 0, 64],
        "norm_num_groups": 32, "use_flash_attention": True}


def build(size: int, device: torch.device) -> DiffusionModel:
    torch.manual_seed(0)
    config = ModelConfig(UNET, ScheduleConfig(prediction_type="epsilon"), InputSpec((size,) * 3, (1.0,) * 3))
    return DiffusionModel(config).to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_cases(size: int, device: torch.device, ddim_steps: int):
    """Return {name: callable} for the four cases, sharing one model and one set of inputs."""
    from monai.inferers import DiffusionInferer
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    model = build(size, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0 = torch.randn(1, 1, size, size, size, device=device)
    noise = torch.randn_like(x0)
    t = torch.tensor([437], device=device)
    kwargs = dict(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0005, beta_end=0.0195,
                  clip_sample=False)
    inferer = DiffusionInferer(DDPMScheduler(**kwargs))
    ddim = DDIMScheduler(**kwargs)
    ddim.set_timesteps(ddim_steps)

    def step(loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def ours_train():
        step(model.loss(x0, noise, t))

    def monai_train():
        prediction = inferer(inputs=x0, diffusion_model=model.unet, noise=noise, timesteps=t)
        step(F.mse_loss(prediction.float(), noise.float()))

    def ours_sample():
        sample(model, 1, ddim_steps, "ddim", generator=torch.Generator().manual_seed(0))

    def monai_sample():
        start = torch.randn(1, 1, size, size, size, generator=torch.Generator().manual_seed(0)).to(device)
        with torch.no_grad():
            inferer.sample(input_noise=start, diffusion_model=model.unet, scheduler=ddim, verbose=False)

    return {"train_ours": ours_train, "train_monai": monai_train, "ddim_ours": ours_sample, "ddim_monai": monai_sample}


def time_pair(cases, ours: str, base: str, repeats: int, device) -> tuple[list[float], list[float]]:
    times = {ours: [], base: []}
    for name in (ours, base):  # warm-up
        cases[name]()
    for repeat in range(repeats):  # swap the order every repeat so neither case always runs second
        for name in ((ours, base) if repeat % 2 == 0 else (base, ours)):
            sync(device)
            start = time.perf_counter()
            cases[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times[ours], times[base]


def peak_memory_mb(case: str, size: int, device: str, ddim_steps: int) -> float:
    """Run one case twice in a fresh process (this script with --peak-case) and return its peak MB."""
    command = [sys.executable, __file__, "--peak-case", case, "--sizes", str(size), "--device", device,
               "--ddim-steps", str(ddim_steps)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def report_peak(case: str, size: int, device: torch.device, ddim_steps: int) -> None:
    cases = make_cases(size, device, ddim_steps)
    cases[case]()
    cases[case]()
    if device.type == "cuda":
        print(torch.cuda.max_memory_allocated() / 1e6)
    else:
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ddim-steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--peak-case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.peak_case:
        report_peak(args.peak_case, args.sizes[0], device, args.ddim_steps)
        return
    rows = []
    for size in args.sizes:
        cases = make_cases(size, device, args.ddim_steps)
        for kind in ("train", "ddim"):
            ours, base = time_pair(cases, f"{kind}_ours", f"{kind}_monai", args.repeats, device)
            row = {
                "case": "train step" if kind == "train" else f"DDIM {args.ddim_steps} steps",
                "size": f"{size}³", "ours_s": statistics.median(ours), "monai_s": statistics.median(base),
                "ours_peak_mb": peak_memory_mb(f"{kind}_ours", size, args.device, args.ddim_steps),
                "monai_peak_mb": peak_memory_mb(f"{kind}_monai", size, args.device, args.ddim_steps),
            }
            row["time_ratio"] = row["ours_s"] / row["monai_s"]
            row["memory_ratio"] = row["ours_peak_mb"] / row["monai_peak_mb"]
            rows.append(row)
            print(json.dumps(row))
        del cases
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    lines = [f"Device: {device_name}; torch {torch.__version__}; model channels (32,64,64), attention at the last level, "
             f"flash/SDPA attention; median of {args.repeats} repeats alternating ours/MONAI, order swapped each repeat; peak = "
             f"{'max CUDA allocated' if device.type == 'cuda' else 'process peak RSS'}.", "",
             "| case | size | ours (s) | MONAI tutorial (s) | time ratio | ours peak (MB) | MONAI peak (MB) | memory ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['size']} | {r['ours_s']:.3f} | {r['monai_s']:.3f} | {r['time_ratio']:.3f} | "
                     f"{r['ours_peak_mb']:.0f} | {r['monai_peak_mb']:.0f} | {r['memory_ratio']:.3f} |")
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = device.type
    (out / f"foundation_{tag}.json").write_text(json.dumps({"device": device_name, "rows": rows}, indent=2))
    (out / f"foundation_{tag}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
