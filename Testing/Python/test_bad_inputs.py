"""Every user mistake ends in a clear message with a hint, a non-zero exit and no file written."""

import gzip
import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import TINY_ARCH, run_cli, smooth_volume

from DiffusionPEFTLib.volumes import write_volume


def _expect_error(events, code, kind, *words):
    assert code != 0
    errors = events.of("error")
    assert len(errors) == 1, events.events
    error = errors[0]
    assert error["kind"] == kind, error
    assert error["hint"], error
    text = (error["message"] + " " + error["hint"]).lower()
    for word in words:
        assert word.lower() in text, error
    assert not events.of("done")
    return error


def _nifti(path, data, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(path))
    return path


@pytest.mark.parametrize("name, data, words", [
    ("slice2d", np.random.rand(16, 16), ["3d"]),
    ("series4d", np.random.rand(8, 8, 8, 3), ["3d", "4d"]),
    ("nan", np.where(np.random.rand(8, 8, 8) > 0.9, np.nan, 1.0), ["nan"]),
    ("inf", np.where(np.random.rand(8, 8, 8) > 0.9, np.inf, 1.0), ["infinite"]),
    ("constant", np.full((8, 8, 8), 5.0), ["constant"]),
])
def test_unusable_volumes_are_refused(tmp_path, tiny_model_dir, name, data, words):
    bad = _nifti(tmp_path / f"{name}.nii.gz", data)
    out = tmp_path / "out.nii.gz"
    code, events = run_cli("synthesize", tiny_model_dir, "--like", bad, "--steps", "2", "--out", out)
    _expect_error(events, code, "input", *words)
    assert os.listdir(tmp_path) == [bad.name]


def test_corrupt_and_unreadable_files(tmp_path, tiny_model_dir):
    good = write_volume(smooth_volume(), tmp_path / "good.nii.gz")
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(gzip.compress(good.read_bytes()[:200]))
    code, events = run_cli("evaluate", corrupt, good)
    _expect_error(events, code, "input", "damaged")
    code, events = run_cli("evaluate", tmp_path / "missing.nii.gz", good)
    _expect_error(events, code, "input", "not found")
    code, events = run_cli("evaluate", tmp_path / "notes.txt", good)
    _expect_error(events, code, "input", ".nii.gz")


def test_pickled_checkpoint_with_code_is_never_executed(tmp_path, tiny_model_dir):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"weights": Payload()}, tmp_path / "evil.pt")
    code, events = run_cli("import", tiny_model_dir / "model.json", tmp_path / "evil.pt", "--out", tmp_path / "imported")
    _expect_error(events, code, "model", "code")
    assert not marker.exists()
    assert not (tmp_path / "imported").exists()


def test_plain_state_dict_checkpoint_imports(tmp_path, tiny_model_dir):
    from DiffusionPEFTLib.models import load_model

    model = load_model(tiny_model_dir)
    torch.save(model.unet.state_dict(), tmp_path / "plain.pt")
    code, events = run_cli("import", tiny_model_dir / "model.json", tmp_path / "plain.pt", "--out", tmp_path / "pkg.zip")
    assert code == 0, events.events
    imported = load_model(tmp_path / "pkg.zip")
    for name, tensor in model.unet.state_dict().items():
        assert torch.equal(imported.unet.state_dict()[name], tensor)


@pytest.mark.parametrize("field, path", [
    ("scheduler.prediction_type", ("scheduler", "prediction_type")),
    ("input.shape", ("input", "shape")),
    ("architecture.arguments.channels", ("architecture", "arguments", "channels")),
    ("format_version", ("format_version",)),
])
def test_missing_model_json_field_is_named(tmp_path, tiny_model_dir, field, path):
    broken = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    spec = json.loads((broken / "model.json").read_text())
    holder = spec
    for key in path[:-1]:
        holder = holder[key]
    del holder[path[-1]]
    (broken / "model.json").write_text(json.dumps(spec))
    code, events = run_cli("synthesize", broken, "--out", tmp_path / "o.nii.gz")
    _expect_error(events, code, "model", field)
    assert not (tmp_path / "o.nii.gz").exists()


def test_tampered_weights_fail_their_checksum(tmp_path, tiny_model_dir):
    broken = shutil.copytree(tiny_model_dir, tmp_path / "tampered")
    weights = bytearray((broken / "weights.safetensors").read_bytes())
    weights[-1] ^= 0xFF
    (broken / "weights.safetensors").write_bytes(bytes(weights))
    code, events = run_cli("synthesize", broken, "--out", tmp_path / "o.nii.gz")
    _expect_error(events, code, "model", "checksum")


def test_output_folder_not_writable(tmp_path, tiny_model_dir):
    if os.geteuid() == 0:
        target = tmp_path / "a_file" / "out.nii.gz"  # root ignores permissions: a file in the way instead
        (tmp_path / "a_file").write_text("")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out.nii.gz"
    code, events = run_cli("synthesize", tiny_model_dir, "--steps", "2", "--out", target)
    _expect_error(events, code, "input", "write")
    assert not events.of("progress")  # refused before any sampling


def test_volume_too_large_for_the_memory_budget(tmp_path, tiny_model_dir):
    big = write_volume(smooth_volume(shape=(40, 40, 40)), tmp_path / "big.nii.gz")
    code, events = run_cli("synthesize", tiny_model_dir, "--like", big, "--out", tmp_path / "o.nii.gz",
                           "--memory-budget-gb", "0.0005")
    _expect_error(events, code, "memory", "budget", "--memory-budget-gb")
    assert not (tmp_path / "o.nii.gz").exists()


def test_training_that_cannot_fit_is_refused_before_loading(tmp_path, volume_folder):
    code, events = run_cli("pretrain", volume_folder, "--out", tmp_path / "m", "--shape", "128", "128", "128",
                           "--batch", "8", "--memory-budget-gb", "4")
    _expect_error(events, code, "memory", "batch")
    assert not (tmp_path / "m").exists()


def test_bad_training_options(tmp_path, volume_folder):
    code, events = run_cli("pretrain", volume_folder, "--out", tmp_path / "m", "--shape", "16", "16", "15", "--steps", "1")
    _expect_error(events, code, "input", "divisible")
    code, events = run_cli("pretrain", tmp_path / "empty_dir_missing", "--out", tmp_path / "m")
    _expect_error(events, code, "input", "not found")


def test_unknown_command_in_job_file(tmp_path):
    (tmp_path / "job.json").write_text(json.dumps({"version": 1, "command": "explode", "args": {}}))
    code, events = run_cli("run", tmp_path / "job.json")
    _expect_error(events, code, "input", "unknown command")


def test_command_line_mistakes_become_error_events():
    code, events = run_cli("synthesize", "--steps", "many")
    _expect_error(events, code, "input", "--help")
