"""The memory planner's prediction against measured CPU peaks: grids × methods × activation checkpointing.

Each cell runs in a fresh process (one torch thread): the demo model's architecture with random weights on a
grid, the method injected, in-memory random volumes, the real Trainer. One optimizer step first (AdamW's state,
oneDNN's kernels and the allocator's pools now exist), then the measured step: its peak resident memory above
what was resident when it began (paradigms/peak_memory.py: VmHWM reset, minus VmRSS). What that step adds is
the batch, the activations, the gradients and the update's scratch — the planner's ``gradients + activations``;
its weights and optimizer state are resident before the step and are counted exactly (tensor sizes), so they
are left out of both sides.

Two allocators: ``fixed`` runs the cell with glibc's mmap threshold fixed at 128 KiB (MALLOC_MMAP_THRESHOLD_),
so every tensor above that is returned to the system when freed and the resident peak is the tensors' peak;
``default`` is glibc as a user runs it, whose dynamic threshold (up to 32 MiB) keeps freed tensors below it in
the heap, adding a fragmentation excess on top.

``--models`` instead predicts (no measurement) the jobs of the big models on a GPU: TenVOO's 166.7 M-parameter
UNet at 160×224×160 and the two model-zoo bundles (their exact architectures from their configs, built on fake
tensors), per method, precision and checkpointing, and the smallest of 24, 40 and 80 GB GPUs each fits.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_memory_planner.py [--grids 32x40x32 40x48x40 48x56x48]
       [--methods tenvoo-l lora] [--default-allocator-methods tenvoo-l] [--batch 1] [--out docs/benchmarks]
       OMP_NUM_THREADS=1 python benchmarks/bench_memory_planner.py --models [--out docs/benchmarks]
Writes memory_planner_cpu.{json,md}, or with --models memory_planner_models.{json,md} (docs/memory.md quotes both).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from allocators import allocator_environment  # noqa: E402

MB = 1e6


def cpu_seconds() -> float:
    import resource

    own, cells = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + cells.ru_utime + cells.ru_stime


def parse_grid(text: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in text.lower().split("x"))


def demo_config(grid):
    from dataclasses import replace

    from DiffusionPEFTLib.models import read_model_config
    from DiffusionPEFTLib.resources import demo_model_dir

    config = read_model_config(demo_model_dir())
    return replace(config, input=replace(config.input, shape=tuple(grid)))


def predicted(cell: dict) -> dict:
    from DiffusionPEFTLib.footprint import Job, TrainingSetup, footprint

    started = time.perf_counter()
    job = Job(demo_config(cell["grid"]), cell["batch"], "train",
              TrainingSetup.of(cell["method"], checkpointing=cell["checkpointing"]))
    found = footprint(job)
    return {"predicted_step_mb": (found.gradients + found.activations) / MB, "predicted_total_mb": found.total / MB,
            "weights_mb": found.weights / MB, "optimizer_mb": found.optimizer / MB,
            "trace_s": time.perf_counter() - started}


def measure_cell(cell: dict) -> dict:
    """In this (fresh) process: one warm-up step, then the measured step's peak above its start."""
    import tempfile

    import torch

    from DiffusionPEFTLib.adapters import inject
    from DiffusionPEFTLib.models import DiffusionModel
    from DiffusionPEFTLib.paradigms.peak_memory import PeakMemory
    from DiffusionPEFTLib.training import Trainer, TrainConfig
    from DiffusionPEFTLib.training.data import TrainingVolumes

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = demo_config(cell["grid"])
    model = DiffusionModel(config)
    adapters = inject(model.unet, cell["method"])
    images = torch.rand(max(2, cell["batch"]), 1, *cell["grid"])
    data = TrainingVolumes(images, None, [Path(f"v{i}") for i in range(len(images))])
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(model, list(adapters.trainable_parameters()), data,
                          TrainConfig(steps=2, batch_size=cell["batch"], lr=1e-4, checkpoint_every=0,
                                      precision="fp32", checkpointing=cell["checkpointing"]), workdir)
        model.train()
        trainer._optimizer_step()
        peak = PeakMemory("cpu")
        peak.start()
        started = time.perf_counter()
        trainer._optimizer_step()
        seconds = time.perf_counter() - started
        return {"measured_step_mb": peak.peak_mb(), "step_s": seconds, "how": peak.source}


def run_cell(cell: dict, allocator: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--cell", json.dumps(cell)], capture_output=True, text=True,
                          env=allocator_environment(allocator), cwd=ROOT, check=False)
    if done.returncode:
        raise RuntimeError(f"cell {cell} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| grid | method | checkpointing | predicted (MB) | measured, fixed threshold (MB) | ratio "
             "| measured, default glibc (MB) | ratio |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        default = row.get("default")
        lines.append(f"| {'×'.join(map(str, row['grid']))} | {row['method']} | {'on' if row['checkpointing'] else 'off'} "
                     f"| {row['predicted_step_mb']:.0f} | {row['measured_step_mb']:.0f} | {row['ratio']:.2f} "
                     f"| {f'{default[0]:.0f} | {default[1]:.2f}' if default else '– | –'} |")
    return "\n".join(lines)


GPUS_GB = (24, 40, 80)


def big_model_jobs() -> list[tuple[str, "Job"]]:
    """(model name, job) for the docs' table: fine-tuning and sampling of the big models on a GPU."""
    from bench_gpu import bundle_config

    from DiffusionPEFTLib.footprint import Job, TrainingSetup
    from DiffusionPEFTLib.models import preset_config

    jobs = []
    tenvoo = preset_config("tenvoo")
    for method, options in (("tenvoo-l", {"rank": 4}), ("lora", {"rank": 4}), ("full", {})):
        for precision, checkpointing in (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)):
            if method != "tenvoo-l" and precision == "fp32" and not checkpointing:
                continue
            setup = TrainingSetup.of(method, "tenvoo" if method != "full" else None, options, precision=precision,
                                     checkpointing=checkpointing)
            jobs.append(("TenVOO UNet 166.7 M, 160×224×160", Job(tenvoo, 1, "train", setup, "cuda")))
    jobs.append(("TenVOO UNet 166.7 M, 160×224×160", Job(tenvoo, 1, "sample", device="cuda")))
    for name, label in (("brain", "brain LDM bundle (553 M UNet on 20×28×20 latents, 160×224×160)"),
                        ("brats", "BraTS LDM bundle (189 M UNet on 36×44×28 latents, 144×176×112)")):
        config = bundle_config(name)
        for precision, checkpointing in (("fp32", False), ("bf16", True)):
            setup = TrainingSetup.of("tenvoo-l", None, {"rank": 4}, precision=precision, checkpointing=checkpointing)
            jobs.append((label, Job(config, 1, "train", setup, "cuda")))
        jobs.append((label, Job(config, 1, "sample", device="cuda")))
    return jobs


def predict_models(out: Path) -> None:
    from DiffusionPEFTLib.footprint import GIB, footprint

    rows = []
    for model, job in big_model_jobs():
        started = time.perf_counter()
        found = footprint(job)
        what = (f"{job.setup.method} {'r4 ' if job.setup.options else ''}fine-tuning" if job.mode == "train"
                else "sampling (one denoising step, then decoding)")
        fits = [gb for gb in GPUS_GB if found.total <= 0.8 * gb * GIB]
        rows.append({"model": model, "job": what, "precision": job.setup.precision if job.mode == "train" else "fp32",
                     "checkpointing": job.setup.checkpointing, **{k: v / GIB for k, v in found.as_dict().items()},
                     "smallest_gpu_gb": fits[0] if fits else None, "trace_s": time.perf_counter() - started})
        print(json.dumps(rows[-1]), flush=True)
    lines = ["| model | job | precision | checkpointing | weights | gradients + AdamW | activations | total (GiB) "
             "| smallest GPU that fits |", "|---|---|---|---|---:|---:|---:|---:|---|"]
    for row in rows:
        gpu = f"{row['smallest_gpu_gb']} GB" if row["smallest_gpu_gb"] else f"none of {', '.join(map(str, GPUS_GB))} GB"
        lines.append(f"| {row['model']} | {row['job']} | {row['precision']} | {'on' if row['checkpointing'] else 'off'} "
                     f"| {row['weights']:.2f} | {row['gradients'] + row['optimizer']:.2f} | {row['activations']:.2f} "
                     f"| {row['total']:.2f} | {gpu} |")
    text = ("# Memory planner: the big models on a GPU (predicted)\n\nBatch 1, CUDA autocast policy, AdamW. A GPU "
            "fits a job when the prediction is at most 80 % of its memory (the default budget). Predictions only: "
            "no GPU measured these yet (benchmarks/bench_gpu.py does).\n\n" + "\n".join(lines) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory_planner_models.json").write_text(json.dumps(rows, indent=1))
    (out / "memory_planner_models.md").write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", nargs="+", type=parse_grid, default=[(32, 40, 32), (40, 48, 40), (48, 56, 48)])
    parser.add_argument("--methods", nargs="+", default=["tenvoo-l", "lora"])
    parser.add_argument("--default-allocator-methods", nargs="*", default=["tenvoo-l"],
                        help="methods also measured with glibc's default allocator settings")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    parser.add_argument("--models", action="store_true", help="predict the big models' GPU jobs instead")
    parser.add_argument("--cell", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cell:
        print(json.dumps(measure_cell(json.loads(args.cell))))
        return 0
    import torch

    torch.set_num_threads(1)
    if args.models:
        predict_models(args.out)
        return 0
    rows = []
    started = time.perf_counter()
    for grid in args.grids:
        for method in args.methods:
            for checkpointing in (False, True):
                cell = {"grid": list(grid), "method": method, "checkpointing": checkpointing, "batch": args.batch}
                row = {**cell, **predicted(cell), **run_cell(cell, "fixed")}
                row["ratio"] = row["measured_step_mb"] / row["predicted_step_mb"]
                if method in args.default_allocator_methods:
                    measured = run_cell(cell, "default")["measured_step_mb"]
                    row["default"] = [measured, measured / row["predicted_step_mb"]]
                rows.append(row)
                note = f" default glibc ratio {row['default'][1]:.2f}" if "default" in row else ""
                print(f"{grid} {method:9s} ckpt={checkpointing!s:5s} predicted {row['predicted_step_mb']:7.0f} MB "
                      f"measured {row['measured_step_mb']:7.0f} MB ratio {row['ratio']:.2f}{note}", flush=True)
    ratios = [row["ratio"] for row in rows]
    defaults = [row["default"][1] for row in rows if "default" in row]
    summary = {"cells": len(rows), "ratio_min": min(ratios), "ratio_max": max(ratios),
               "within_20_percent": sum(0.8 <= r <= 1.2 for r in ratios),
               "default_allocator_ratio_range": [min(defaults), max(defaults)] if defaults else None,
               "wall_s": time.perf_counter() - started, "cpu_s": cpu_seconds()}
    import torch

    meta = {"torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
            "threads": 1, "batch": args.batch, "architecture": "demo model (channels 32, 64, 64; 1 res block; "
            "attention at the last level)", "precision": "fp32",
            "measured": "peak RSS of the second optimizer step above its start, fresh process per cell"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory_planner_cpu.json").write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows},
                                                                  indent=1))
    text = (f"# Memory planner vs measured CPU peaks\n\n{meta['architecture']}, batch {args.batch}, fp32, one "
            f"thread, torch {meta['torch']}. Measured: {meta['measured']}. Predicted: the planner's gradients + "
            f"activations (its weights and optimizer state are resident before the measured step).\n\n"
            f"{table(rows)}\n\nFixed threshold: {summary['within_20_percent']} of {summary['cells']} cells within "
            f"±20 %; measured / predicted from {summary['ratio_min']:.2f} to {summary['ratio_max']:.2f}."
            + (f" Default glibc: measured / predicted from {defaults[0]:.2f} to {defaults[1]:.2f}."
               if (defaults := summary["default_allocator_ratio_range"]) else "")
            + f" Wall time {summary['wall_s']:.0f} s, CPU time {summary['cpu_s']:.0f} s (this process and its "
            "cells).\n")
    (args.out / "memory_planner_cpu.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
