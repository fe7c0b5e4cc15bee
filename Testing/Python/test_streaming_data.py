"""Streaming training data (--data-loading stream | cache | persistent, --workers): the same batches as with every
volume in memory, exact resume across loading modes, the persistent cache in the work folder, user errors from
reader processes, memory flat in the number of volumes, latent models streaming what they encode."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
import torch
from conftest import TINY_ARCH, TINY_TRANSLATION_ARCH, run_cli, smooth_volume
from safetensors.torch import load_file

from DiffusionPEFTLib.context import RunContext
from DiffusionPEFTLib.errors import InputError, MemoryBudgetError
from DiffusionPEFTLib.memory import MemoryBudget
from DiffusionPEFTLib.models.config import InputSpec, ModelConfig, ScheduleConfig
from DiffusionPEFTLib.models.diffusion_model import DiffusionModel
from DiffusionPEFTLib.training import TrainConfig, Trainer, find_volume_files
from DiffusionPEFTLib.training.streaming import CACHE_FOLDER, DataLoading, StreamingVolumes, training_data
from DiffusionPEFTLib.volumes import write_volume

SPEC = InputSpec((16, 16, 16), (4.0, 4.0, 4.0))
TINY_UNET = dict(spatial_dims=3, in_channels=1, out_channels=1, num_res_blocks=1, channels=(8, 16, 16),
                 attention_levels=(False, False, True), norm_num_groups=8, num_head_channels=(0, 0, 16))


pytestmark = pytest.mark.usefixtures("one_thread")  # measured and compared runs use one thread


def draws(data, count: int, batch: int, tmp_path: Path) -> list:
    """The first ``count`` micro-batches a seeded trainer draws from ``data`` (augmentation on)."""
    torch.manual_seed(0)
    model = DiffusionModel(ModelConfig(dict(TINY_UNET), ScheduleConfig(), SPEC))
    trainer = Trainer(model, list(model.parameters()), data, TrainConfig(steps=1, batch_size=batch, seed=5), tmp_path)
    return [trainer.next_batch() for _ in range(count)]


@pytest.mark.parametrize("mode,workers", [("stream", 0), ("cache", 1), ("persistent", 2)])
def test_streamed_batches_equal_the_in_memory_batches(tmp_path, volume_folder, mode, workers):
    """6 volumes, global micro-batch 4: epochs end inside batches; pairs (translation) included."""
    files = find_volume_files([volume_folder])
    sources = files[::-1]  # every volume paired with another one on the same grid
    small = RunContext(budget=MemoryBudget(170_000))  # cache: room for 5 of the 6 volumes, 2 of the 6 pairs
    for pairs in (None, sources):
        memory = training_data(files, SPEC, DataLoading(), RunContext(), tmp_path, sources=pairs)
        streamed = training_data(files, SPEC, DataLoading(mode, workers), small, tmp_path, sources=pairs)
        assert isinstance(streamed, StreamingVolumes) and len(streamed) == 6
        for a, b in zip(draws(memory, 4, 4, tmp_path), draws(streamed, 4, 4, tmp_path)):
            assert (a.condition is None) == (pairs is None)
            for name in ("x0", "noise", "timesteps", "labels", "condition"):
                first, second = getattr(a, name), getattr(b, name)
                assert second is None if first is None else torch.equal(first, second), name
    if mode == "persistent":  # one cached file per item (volumes and pairs), inside the work folder
        assert len(list((tmp_path / CACHE_FOLDER).glob("*.pt"))) == 12


def test_resume_with_streaming_continues_an_in_memory_run_exactly(tmp_path, volume_folder):
    common = ["pretrain", volume_folder, *TINY_ARCH, "--seed", "4", "--batch", "2", "--val-fraction", "0.2",
              "--val-every", "2", "--checkpoint-every", "2"]
    assert run_cli(*common, "--steps", "4", "--out", tmp_path / "full")[0] == 0
    work = tmp_path / "work"
    code, events = run_cli(*common, "--steps", "2", "--out", tmp_path / "part", "--workdir", work,
                           "--data-loading", "persistent", "--workers", "1")
    assert code == 0, events.events
    cached = sorted((work / CACHE_FOLDER).glob("*.pt"))
    assert len(cached) == 6
    code, events = run_cli(*common, "--steps", "4", "--out", tmp_path / "part", "--workdir", work, "--resume",
                           "--overwrite", "--data-loading", "stream")
    assert code == 0, events.events
    assert any("Resumed from step 2" in e["message"] for e in events.of("log"))
    full, resumed = (load_file(tmp_path / name / "weights.safetensors") for name in ("full", "part"))
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    histories = [json.loads((folder / "history.json").read_text()) for folder in (tmp_path / "full.work", work)]
    assert histories[0] == histories[1] and len(histories[0]["val_losses"]) == 2
    assert sorted((work / CACHE_FOLDER).glob("*.pt")) == cached  # the stream run neither used nor grew the cache


def test_user_errors_come_back_from_reader_processes_before_training(tmp_path, volume_folder):
    files = find_volume_files([volume_folder])[:3]
    damaged = tmp_path / "damaged.nii.gz"
    damaged.write_bytes(gzip.compress(b"not a volume" * 50))
    with pytest.raises(InputError, match="damaged.nii.gz.*damaged"):
        training_data([*files, damaged], SPEC, DataLoading("stream", 1), RunContext(), tmp_path)
    with pytest.raises(InputError, match="damaged.nii.gz.*damaged"):  # read into the cache before the check
        training_data([damaged, *files], SPEC, DataLoading("cache", 1), RunContext(), tmp_path)
    far = smooth_volume(seed=1)
    far.affine[:3, 3] += 500.0  # 500 mm away: shows none of its source's anatomy
    write_volume(far, tmp_path / "far.nii.gz")
    with pytest.raises(InputError, match="covers 0%") as caught:
        training_data([files[0], tmp_path / "far.nii.gz"], SPEC, DataLoading("persistent", 1), RunContext(), tmp_path,
                      sources=files[:2])
    assert "same subject" in caught.value.hint
    assert len(list((tmp_path / CACHE_FOLDER).glob("*.pt"))) == 1  # the good pair only


def test_a_set_over_the_memory_budget_is_refused_in_memory_and_streams(tmp_path, volume_folder):
    files = find_volume_files([volume_folder])
    spec = InputSpec((32, 32, 32), (2.0, 2.0, 2.0))  # 131 kB per volume on the grid, 786 kB for the six
    context = RunContext(budget=MemoryBudget(400_000))
    with pytest.raises(MemoryBudgetError) as caught:
        training_data(files, spec, DataLoading(), context, tmp_path)
    assert "--data-loading stream" in caught.value.hint
    streamed = training_data(files, spec, DataLoading("cache"), context, tmp_path)
    assert sum(1 for _ in streamed.items(list(range(6)))) == 6
    assert any("Caching 1 of 6" in e["message"] for e in context.events.of("log"))


GROWTH_SCRIPT = """
import json, sys
from pathlib import Path
from DiffusionPEFTLib.context import RunContext
from DiffusionPEFTLib.models.config import InputSpec
from DiffusionPEFTLib.training import find_volume_files
from DiffusionPEFTLib.training.streaming import DataLoading, training_data

def resident_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096

folder, work, mode, count = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
spec = InputSpec((64, 64, 64), (1.0, 1.0, 1.0))
files = find_volume_files([folder])
for _ in training_data(files[:2], spec, DataLoading(), RunContext(), work).items([0, 1]):
    pass  # warm up: first-use allocations are not the volumes'
chosen = [files[i % len(files)] for i in range(count)]  # repeats read like new files
before = peak = resident_bytes()
data = training_data(chosen, spec, DataLoading(mode), RunContext(), work)
for _ in data.items(list(range(count))):
    peak = max(peak, resident_bytes())
print(json.dumps((max(peak, resident_bytes()) - before) / 2**20))
"""


def test_streaming_memory_stays_flat_in_the_number_of_volumes(tmp_path, volume_folder):
    """Measured in a fresh process each (a long test process reuses freed heap without growing): resident memory
    while reading every volume of a 64³ grid (1 MiB each), for 4 and 36 volumes; in memory it grows by ~1 MiB
    per volume, streamed it does not grow."""
    import subprocess
    import sys

    growth = {}
    for mode in ("memory", "stream"):
        for count in (4, 36):
            done = subprocess.run([sys.executable, "-c", GROWTH_SCRIPT, str(volume_folder), str(tmp_path), mode,
                                   str(count)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert done.returncode == 0, done.stderr[-2000:]
            growth[mode, count] = json.loads(done.stdout.strip().splitlines()[-1])
    assert growth["memory", 36] - growth["memory", 4] > 22, growth  # ≈ 32 MiB more for 32 more volumes
    assert growth["stream", 36] - growth["stream", 4] < 4, growth


def test_latent_finetuning_streams_the_volumes_it_encodes(tmp_path):
    from test_bundle_import import scans, tiny_bundle

    package = tmp_path / "package"
    assert run_cli("import-bundle", tiny_bundle(tmp_path), "--out", package)[0] == 0
    common = ["finetune", package, scans(tmp_path, 3), "--method", "lora", "--steps", "2", "--condition", "age=0.6"]
    assert run_cli(*common, "--out", tmp_path / "memory")[0] == 0
    code, events = run_cli(*common, "--out", tmp_path / "streamed", "--data-loading", "stream", "--workers", "1")
    assert code == 0, events.events
    memory, streamed = (load_file(tmp_path / name / "adapter.safetensors") for name in ("memory", "streamed"))
    assert memory.keys() == streamed.keys() and all(torch.equal(memory[k], streamed[k]) for k in memory)
    provenance = json.loads((tmp_path / "streamed" / "adapter.json").read_text())["provenance"]
    assert provenance["data_loading"] == "stream" and provenance["processes"] == 1


def test_translate_train_streams_pairs_like_memory(tmp_path, translation_cohort):
    """Same weights and the same source signature (read again, streamed, after training)."""
    common = ["translate-train", translation_cohort / "manifest.json", "--source", "t1", "--target", "flair",
              *TINY_TRANSLATION_ARCH, "--steps", "2", "--batch", "2"]
    assert run_cli(*common, "--out", tmp_path / "memory")[0] == 0
    code, events = run_cli(*common, "--out", tmp_path / "stream", "--data-loading", "stream", "--workers", "1")
    assert code == 0, events.events
    memory, streamed = (load_file(tmp_path / name / "weights.safetensors") for name in ("memory", "stream"))
    assert all(torch.equal(memory[k], streamed[k]) for k in memory)
    signatures = [json.loads((tmp_path / name / "model.json").read_text())["translation"]["source_signature"]
                  for name in ("memory", "stream")]
    assert signatures[0] == signatures[1] and signatures[0]["threshold"] > 0
