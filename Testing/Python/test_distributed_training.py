"""Training on several processes (torchrun; gloo on the CPU here): a 2-process run equals a 1-process run with
the same global batch, every process keeps the same weights after every step (adapters that grow, mask or
sample ranks included), only the main process writes, a cancel on one process stops all, and a run whose
process was killed resumes to exactly the uninterrupted result."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY_ARCH, run_cli
from safetensors.torch import load_file
from test_adapters_support import tiny_unet

from DiffusionPEFTLib.adapters import TrainingCallback, inject, save_adapter
from DiffusionPEFTLib.cli import main
from DiffusionPEFTLib.events import ListSink
from DiffusionPEFTLib.models.config import InputSpec, ModelConfig, ScheduleConfig
from DiffusionPEFTLib.models.diffusion_model import DiffusionModel
from DiffusionPEFTLib.training import Trainer, TrainConfig, TrainingVolumes

REPOSITORY = Path(__file__).resolve().parents[2]
LORA = ["--method", "lora", "--rank", "2", "--seed", "3", "--checkpoint-every", "1", "--lr", "1e-3"]


pytestmark = pytest.mark.usefixtures("one_thread")  # measured and compared runs use one thread


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def join_group(rank: int, size: int, port: int) -> None:
    """What torchrun gives every process: its place in the group and where to meet."""
    torch.set_num_threads(1)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def cli_process(rank: int, size: int, port: int, argvs: list, folder: str) -> None:
    """One process of a distributed command: the command line of its rank; its exit code and events to a file."""
    join_group(rank, size, port)
    events = ListSink()
    code = main([str(a) for a in argvs[rank]], events=events)
    Path(folder, f"rank{rank}.json").write_text(json.dumps({"code": code, "events": events.events}))


def launch(argvs: list, folder: Path, join: bool = True):
    """Two forked processes (already importing everything: no interpreter start-up) running ``argvs[rank]``."""
    return mp.start_processes(cli_process, args=(2, free_port(), argvs, str(folder)), nprocs=2, join=join,
                              start_method="fork")


def reports(folder: Path) -> list[dict]:
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(2)]


def of(events: list[dict], kind: str) -> list[dict]:
    return [event for event in events if event["event"] == kind]


@pytest.fixture(scope="module")
def torchrun_finetune(tmp_path_factory, tiny_model_dir, volume_folder) -> Path:
    """``torchrun --nproc_per_node 2 -m DiffusionPEFTLib finetune … --batch 1 --events json`` for 6 steps."""
    folder = tmp_path_factory.mktemp("torchrun")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "DiffusionPEFTLib", "finetune", tiny_model_dir, volume_folder, *LORA, "--steps", "6",
               "--batch", "1", "--events", "json", "--threads", "1", "--out", folder / "adapter"]
    done = subprocess.run([str(part) for part in command], cwd=REPOSITORY, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    (folder / "events.jsonl").write_text(done.stdout)
    return folder


def test_torchrun_finetune_equals_one_process_with_the_same_global_batch(tmp_path, torchrun_finetune, tiny_model_dir,
                                                                         volume_folder):
    code, single = run_cli("finetune", tiny_model_dir, volume_folder, *LORA, "--steps", "6", "--batch", "2",
                           "--out", tmp_path / "adapter")
    assert code == 0, single.events
    events = [json.loads(line) for line in (torchrun_finetune / "events.jsonl").read_text().splitlines()
              if line.startswith("{")]
    # one process reports: one "done", one adapter, one progress event per step
    assert len(of(events, "done")) == 1 and len(of(events, "artifact")) == 1
    assert [e["step"] for e in of(events, "progress") if e["stage"] == "finetune"] == list(range(7))
    assert any("on 2 processes" in e["message"] for e in of(events, "log"))
    two = [e["loss"] for e in of(events, "progress") if "loss" in e]
    one = [e["loss"] for e in single.of("progress") if "loss" in e]
    assert two == pytest.approx(one, rel=1e-4)
    distributed, reference = (load_file(folder / "adapter.safetensors")
                              for folder in (torchrun_finetune / "adapter", tmp_path / "adapter"))
    assert distributed.keys() == reference.keys()
    for name in reference:  # Adam's first steps amplify float-rounding differences of near-zero gradients
        torch.testing.assert_close(distributed[name], reference[name], rtol=1e-3, atol=1e-3, msg=name)
    provenance = json.loads((torchrun_finetune / "adapter" / "adapter.json").read_text())["provenance"]
    assert provenance["processes"] == 2 and provenance["batch"] == 1


def test_a_killed_process_resumes_to_the_uninterrupted_result(tmp_path, torchrun_finetune, tiny_model_dir,
                                                              volume_folder):
    argv = ["finetune", tiny_model_dir, volume_folder, *LORA, "--steps", "6", "--batch", "1", "--threads", "1",
            "--out", tmp_path / "adapter"]
    checkpoint = tmp_path / "adapter.work" / "checkpoint.pt"
    context = launch([argv, argv], tmp_path, join=False)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(context.processes[1].pid, signal.SIGKILL)  # process 1 dies; process 0 loses its peer and stops
    context.processes[0].join(60)
    if context.processes[0].is_alive():
        os.kill(context.processes[0].pid, signal.SIGKILL)
        pytest.fail("process 0 did not stop after process 1 was killed")
    step = torch.load(checkpoint, weights_only=True)["step"]
    assert 1 <= step < 6 and not (tmp_path / "adapter").exists()
    survivor = json.loads((tmp_path / "rank0.json").read_text())
    error = of(survivor["events"], "error")[0]  # a message and a way on, not a crash report
    assert error["kind"] == "cancelled" and "lost contact" in error["message"] and "--resume" in error["hint"]

    launch([[*argv, "--resume"]] * 2, tmp_path)
    first, second = reports(tmp_path)
    assert first["code"] == second["code"] == 0, first["events"]
    assert any(f"Resumed from step {step}" in e["message"] for e in of(first["events"], "log"))
    assert second["events"] == []  # only the main process reports
    resumed, uninterrupted = (load_file(folder / "adapter.safetensors")
                              for folder in (tmp_path / "adapter", torchrun_finetune / "adapter"))
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in uninterrupted)


def test_pretrain_streamed_on_two_processes_and_a_cancel_on_one_stops_both(tmp_path, volume_folder):
    common = ["pretrain", volume_folder, *TINY_ARCH, "--seed", "2", "--steps", "3", "--val-fraction", "0.2",
              "--val-every", "3", "--threads", "1"]
    argv = [*common, "--batch", "1", "--out", tmp_path / "two", "--data-loading", "persistent", "--workers", "1"]
    launch([argv, argv], tmp_path)
    first, second = reports(tmp_path)
    assert first["code"] == second["code"] == 0 and second["events"] == []
    code, single = run_cli(*common, "--batch", "2", "--out", tmp_path / "one")
    assert code == 0
    two, one = (load_file(tmp_path / name / "weights.safetensors") for name in ("two", "one"))
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-3, atol=1e-4, msg=name)
    val = [e["value"] for e in of(first["events"], "metric") if e["name"] == "val_loss"]
    assert val == pytest.approx([e["value"] for e in single.of("metric") if e["name"] == "val_loss"], rel=1e-4)
    assert len(list((tmp_path / "two.work" / "data-cache").glob("*.pt"))) == 6  # each process cached its share

    stop = tmp_path / "STOP"
    stop.write_text("")
    cancelled = [*common, "--batch", "1", "--out", tmp_path / "cancelled"]
    launch([cancelled, [*cancelled, "--stop-file", stop]], tmp_path)  # only process 1 sees a stop file
    first, second = reports(tmp_path)
    assert first["code"] == second["code"] == 130
    assert of(first["events"], "error")[0]["kind"] == "cancelled"
    assert (tmp_path / "cancelled.work" / "checkpoint.pt").exists() and not (tmp_path / "cancelled").exists()


class WeightLog(TrainingCallback):
    """A digest of the adapter's state after every optimizer step."""

    def __init__(self, adapters):
        self.adapters, self.digests = adapters, []

    def after_step(self, trainer, step, batch):
        state = self.adapters.state_dict()
        self.digests.append(hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest())


METHODS = {"selora": dict(rank=1, max_rank=4, expand_every=1, threshold=1.0), "adalora": dict(rank=4, target_rank=2),
           "dylora": dict(rank=4, min_rank=1)}
TARGETS = r".*resnets\.0\.conv[12]\.conv"


def train_adapter(method: str, batch: int, workdir: Path) -> dict:
    """A few steps of ``method`` on a tiny U-Net: losses, per-step digests, ranks, checkpoint writes, adapter."""
    torch.manual_seed(0)
    model = DiffusionModel(ModelConfig(dict(spatial_dims=3, in_channels=1, out_channels=1, num_res_blocks=1,
                                            channels=(8, 16, 16), attention_levels=(False, False, True),
                                            norm_num_groups=8, num_head_channels=(0, 0, 16)),
                                       ScheduleConfig(), InputSpec((16, 16, 16), (4.0, 4.0, 4.0))), tiny_unet())
    adapters = inject(model.unet, method, TARGETS, **METHODS[method])
    volumes = TrainingVolumes(torch.rand(4, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1)), None, [])
    config = TrainConfig(steps=4, batch_size=batch, lr=1e-2, checkpoint_every=2, seed=7)
    log = WeightLog(adapters)
    trainer = Trainer(model, list(adapters.trainable_parameters()), volumes, config, workdir,
                      callbacks=[*adapters.make_callbacks(config.steps), log])
    writes = []
    write = trainer._write_checkpoint
    trainer._write_checkpoint = lambda path: (writes.append(trainer.step), write(path))
    result = trainer.run()
    return {"losses": result.losses, "digests": log.digests, "ranks": adapters.ranks(), "writes": writes,
            "adapters": adapters}


def adapter_process(rank: int, size: int, port: int, folder: str) -> None:
    join_group(rank, size, port)
    dist.init_process_group("gloo")
    try:
        for method in METHODS:
            outcome = train_adapter(method, 1, Path(folder, method))
            if rank == 0:
                save_adapter(outcome["adapters"], Path(folder, method, "adapter"), base_fingerprint="0" * 64,
                             base_architecture={})
            del outcome["adapters"]
            Path(folder, f"{method}-{rank}.json").write_text(json.dumps(outcome))
    finally:
        dist.destroy_process_group()


def test_adapters_that_change_ranks_stay_identical_on_every_process(tmp_path):
    mp.start_processes(adapter_process, args=(2, free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    for method in METHODS:
        first, second = (json.loads((tmp_path / f"{method}-{rank}.json").read_text()) for rank in range(2))
        assert first["digests"] == second["digests"] and len(first["digests"]) == 4, method  # after every step
        assert first["losses"] == second["losses"] and first["ranks"] == second["ranks"]
        assert first["writes"] == [2, 4, 4] and second["writes"] == []  # checkpoints: every 2 steps and the end
        saved = load_file(tmp_path / method / "adapter" / "adapter.safetensors")  # written by process 0
        digest = hashlib.sha256(b"".join(saved[k].numpy().tobytes() for k in sorted(saved))).hexdigest()
        assert digest == second["digests"][-1], method  # … holds process 1's final state too
        single = train_adapter(method, 2, tmp_path / f"{method}-single")
        assert single["ranks"] == first["ranks"], method
        if method != "selora":  # SeLoRA's growth test sums per-process Fisher traces: not one batch's
            assert first["losses"] == pytest.approx(single["losses"], rel=1e-4), method
    grown = json.loads((tmp_path / "selora-0.json").read_text())["ranks"]
    assert max(grown.values()) > 1  # SeLoRA did grow (its parameters changed shape) while distributed
