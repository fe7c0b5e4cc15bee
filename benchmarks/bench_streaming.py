"""Benchmark: peak memory of the training-data pipeline against the number of volumes, per --data-loading mode.

Each case runs in a fresh process: it builds the training data (``training_data``: every volume read,
put on the model grid and normalised; for ``memory`` all held, for the streaming modes each read and
dropped), then draws one epoch of batches through the real ``Trainer.next_batch`` (tiny U-Net, batch 2, so
augmentation and noise are included). Reported: peak resident memory (``ru_maxrss``) net of the same
process's baseline after the libraries, the model and the file list are set up, and the seconds the epoch
took. ``memory`` grows by one model-grid volume (4 bytes a voxel) per volume; the streaming modes do not.

Usage: python benchmarks/bench_streaming.py [--counts 8 32 64] [--grid 64 80 64] [--modes memory stream persistent]
                                            [--workers 0] [--out docs/benchmarks]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MIB = 2**20


def resident_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


def write_volumes(folder: Path, count: int, grid: tuple[int, int, int]) -> list[Path]:
    """``count`` smooth random volumes a little larger than the grid (1 mm voxels), so each is resampled."""
    import numpy as np
    from scipy import ndimage

    from DiffusionPEFTLib.volumes import Volume, write_volume

    paths = []
    for index in range(count):
        path = folder / f"vol{index:03d}.nii.gz"
        if not path.exists():
            rng = np.random.default_rng(index)
            data = ndimage.gaussian_filter(rng.random(tuple(s + 8 for s in grid)), 3.0).astype(np.float32)
            write_volume(Volume(data, np.eye(4)), path)
        paths.append(path)
    return paths


def case(mode: str, count: int, grid: list[int], workers: int, folder: str) -> dict:
    """One measurement (run in its own process by :func:`main`)."""
    import torch

    from DiffusionPEFTLib.context import RunContext
    from DiffusionPEFTLib.memory import MemoryBudget
    from DiffusionPEFTLib.models import DiffusionModel, InputSpec, ModelConfig, ScheduleConfig
    from DiffusionPEFTLib.training import Trainer, TrainConfig
    from DiffusionPEFTLib.training.streaming import DataLoading, training_data

    torch.set_num_threads(1)
    files = sorted(Path(folder).glob("vol*.nii.gz"))[:count]
    spec = InputSpec(tuple(grid), (1.0, 1.0, 1.0))
    unet = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [8, 16, 16],
            "attention_levels": [False, False, True], "num_res_blocks": 1, "num_head_channels": [0, 0, 16],
            "norm_num_groups": 8}
    model = DiffusionModel(ModelConfig(unet, ScheduleConfig(), spec))
    with tempfile.TemporaryDirectory() as work:
        baseline = resident_bytes()
        started = time.perf_counter()
        context = RunContext(budget=MemoryBudget.from_gb(64))
        data = training_data(files, spec, DataLoading(mode, workers), context, Path(work))
        trainer = Trainer(model, list(model.parameters()), data, TrainConfig(steps=1, batch_size=2), work)
        for _ in range(count // 2):
            trainer.next_batch()
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "volumes": count, "workers": workers, "peak_net_mib": round((peak - baseline) / MIB, 1),
            "volume_mib": round(4 * grid[0] * grid[1] * grid[2] / MIB, 2), "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--grid", type=int, nargs=3, default=[64, 80, 64])
    parser.add_argument("--modes", nargs="+", default=["memory", "stream", "persistent"])
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--case", nargs=2, metavar=("MODE", "COUNT"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(args.case[0], int(args.case[1]), args.grid, args.workers, args.folder)))
        return
    with tempfile.TemporaryDirectory() as folder:
        write_volumes(Path(folder), max(args.counts), tuple(args.grid))
        rows = []
        for mode in args.modes:
            for count in args.counts:
                done = subprocess.run([sys.executable, __file__, "--case", mode, str(count), "--grid", *map(str, args.grid),
                                       "--workers", str(args.workers), "--folder", folder],
                                      capture_output=True, text=True, check=True)
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"grid": args.grid, "machine": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), "measure": "peak RSS (ru_maxrss) net of the process baseline"}
    (out / "streaming_cpu.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Training-data peak memory vs number of volumes ({'×'.join(map(str, args.grid))} grid, "
             f"{rows[0]['volume_mib']} MiB per volume)", "",
             "Fresh process per case; peak resident memory net of the process's own baseline (libraries, model); "
             "one epoch of batches drawn by the trainer (batch 2). Made by `benchmarks/bench_streaming.py`.", "",
             "| --data-loading | volumes | peak net MiB | seconds |", "|---|---:|---:|---:|"]
    lines += [f"| {r['mode']} | {r['volumes']} | {r['peak_net_mib']} | {r['seconds']} |" for r in rows]
    (out / "streaming_cpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
