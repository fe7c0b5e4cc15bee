"""The output rule (DiffusionPEFTLib/files.py) against the ways earlier versions lost a user's files, and the
one-JSON-object-per-line event stream. Each data-loss test is the scenario that once deleted or replaced
something; it now must leave every byte where it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_ARCH, run_cli
from sandbox import make_sandbox, snapshot

from DiffusionPEFTLib.errors import InputError
from DiffusionPEFTLib.files import MARKER_NAME, staged
from DiffusionPEFTLib.models import load_model, save_model
from DiffusionPEFTLib.volumes import read_volume


@pytest.fixture
def user(tmp_path, tiny_model_dir, monkeypatch):
    root = make_sandbox(tmp_path / "user", tiny_model_dir)
    monkeypatch.chdir(root)
    return root


def refused_untouched(root: Path, *argv) -> dict:
    before = snapshot(root)
    code, events = run_cli(*argv)
    assert code != 0 and events.of("error"), events.events
    assert snapshot(root) == before
    return events.of("error")[0]


def test_import_into_the_current_folder_keeps_it(user):
    import torch

    torch.save(load_model(user / "model").unet.state_dict(), user / "state.pt")
    (user / "model.json").write_bytes((user / "model" / "model.json").read_bytes())
    error = refused_untouched(user, "import", "model.json", "state.pt", "--out", ".", "--overwrite")
    assert "contains the input" in error["message"]


def test_pretrain_onto_its_own_training_data_keeps_it(user):
    error = refused_untouched(user, "pretrain", "scans", *TINY_ARCH, "--steps", "1", "--out", "scans", "--overwrite")
    assert "is the input" in error["message"]


@pytest.mark.parametrize("out, flag", [("scans", "--resume"), ("model", "--overwrite")])
def test_finetune_never_replaces_its_data_or_base_model(user, out, flag):
    refused_untouched(user, "finetune", "model", "scans", "--steps", "1", flag, "--out", out)


def test_synthesize_onto_its_reference_and_evaluate_onto_a_volume(user):
    refused_untouched(user, "synthesize", "model", "--like", "ref.nii.gz", "--out", "ref.nii.gz", "--overwrite")
    refused_untouched(user, "evaluate", "existing.nii.gz", "ref.nii.gz", "--json", "existing.nii.gz", "--overwrite")


def test_synthesize_replaces_an_existing_volume_only_when_asked(user):
    error = refused_untouched(user, "synthesize", "model", "--steps", "2", "--out", "existing.nii.gz")
    assert "--overwrite" in error["hint"]
    old = read_volume(user / "existing.nii.gz").data
    code, events = run_cli("synthesize", "model", "--steps", "2", "--out", "existing.nii.gz", "--overwrite")
    assert code == 0, events.events
    new = read_volume(user / "existing.nii.gz")
    assert new.shape == (16, 16, 16) and not np.array_equal(new.data[:8, :8, :8], old[:8, :8, :8])
    assert sorted(p.name for p in user.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_failed_finetune_leaves_nothing_and_the_corrected_run_succeeds(user):
    before = snapshot(user)
    code, events = run_cli("finetune", "model", "scans", "--method", "full", "--lr", "1e30", "--steps", "3",
                           "--out", "adapter")
    assert code == 2 and "diverged" in events.of("error")[0]["message"]
    assert snapshot(user) == before  # neither adapter/ nor adapter.work/
    code, events = run_cli("finetune", "model", "scans", "--method", "lora", "--steps", "2", "--out", "adapter")
    assert code == 0, events.events
    assert (user / "adapter" / "adapter.json").is_file()


def test_cancelled_finetune_keeps_a_resumable_checkpoint_and_no_output(user):
    (user / "STOP").write_text("")
    code, events = run_cli("finetune", "model", "scans", "--method", "lora", "--steps", "3", "--out", "adapter",
                           "--stop-file", "STOP")
    error = events.of("error")[0]
    assert code == 130 and error["kind"] == "cancelled" and "--resume" in error["hint"]
    assert not (user / "adapter").exists() and (user / "adapter.work" / "checkpoint.pt").is_file()
    (user / "STOP").unlink()
    code, events = run_cli("finetune", "model", "scans", "--method", "lora", "--steps", "3", "--out", "adapter",
                           "--resume")
    assert code == 0, events.events
    assert json.loads((user / "adapter" / "adapter.json").read_text())["provenance"]["steps"] == 3


def test_overwrite_replaces_the_tools_own_folder_but_never_a_users_file(user):
    args = ["finetune", "model", "scans", "--method", "lora", "--steps", "1", "--out", "adapter"]
    assert run_cli(*args)[0] == 0
    first = (user / "adapter" / "adapter.safetensors").read_bytes()
    assert run_cli(*args, "--overwrite", "--seed", "5", "--workdir", "other.work")[0] == 0
    assert (user / "adapter" / "adapter.safetensors").read_bytes() != first
    marker = json.loads((user / "adapter" / MARKER_NAME).read_text())
    assert sorted(marker["files"]) == ["adapter.json", "adapter.safetensors"]
    (user / "adapter" / "my_notes.txt").write_text("mine")
    error = refused_untouched(user, *args, "--overwrite", "--workdir", "third.work")
    assert "my_notes.txt" in error["message"]


def test_save_model_api_refuses_existing_packages_unless_asked(user, tmp_path):
    model = load_model(user / "model")
    with pytest.raises(InputError, match="already exists"):
        save_model(model, user / "model")
    legacy = tmp_path / "legacy"  # a package written before markers existed: model.json + weights only
    legacy.mkdir()
    for name in ("model.json", "weights.safetensors"):
        (legacy / name).write_bytes((user / "model" / name).read_bytes())
    save_model(model, legacy, {"note": "replaced"}, overwrite=True)
    assert json.loads((legacy / "model.json").read_text())["provenance"]["note"] == "replaced"
    with pytest.raises(InputError, match="did not write"):
        save_model(model, user / "notes", overwrite=True)
    assert (user / "notes" / "patient_list.txt").read_text() == "a user's own file\n"


def test_a_failing_block_leaves_no_temporary_and_no_created_parent(tmp_path):
    target = tmp_path / "new" / "deeper" / "result"
    with pytest.raises(RuntimeError), staged(target, folder=True) as folder:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_is_a_link_to_an_input_is_refused(user):
    os.symlink(user / "ref.nii.gz", user / "link.nii.gz")
    error = refused_untouched(user, "synthesize", "model", "--like", "ref.nii.gz", "--out", "link.nii.gz",
                              "--overwrite")
    assert "is the input" in error["message"]


def _lines_are_events(text: str) -> list[dict]:
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert events and all(isinstance(e, dict) and "event" in e for e in events)
    return events


@pytest.mark.parametrize("argv, name", [(["info", "{model}", "--json"], "card"),
                                        (["finetune", "{model}", "--dry-run", "--json"], "plan")])
def test_json_documents_stay_one_event_per_line(capsys, tiny_model_dir, argv, name):
    from DiffusionPEFTLib.cli import main

    argv = [a.format(model=tiny_model_dir) for a in argv]
    assert main([*argv, "--events", "json"]) == 0
    events = _lines_are_events(capsys.readouterr().out)
    results = [e for e in events if e["event"] == "result"]
    assert len(results) == 1 and results[0]["name"] == name and isinstance(results[0]["value"], dict)
    assert main(argv) == 0  # at a terminal: the document alone on stdout
    assert json.loads(capsys.readouterr().out) == results[0]["value"]


def test_non_utf8_output_name_is_refused_before_sampling(tmp_path, tiny_model_dir):
    name = os.fsencode(tmp_path) + b"/sample\xff.nii.gz"
    completed = subprocess.run([sys.executable, "-m", "DiffusionPEFTLib", "synthesize", os.fsencode(tiny_model_dir),
                                "--steps", "50", "--out", name, "--events", "json"], capture_output=True)
    assert completed.returncode == 2, completed.stderr
    events = _lines_are_events(completed.stdout.decode())
    assert [e["event"] for e in events] == ["error"] and "UTF-8" in events[0]["message"]
    assert b"Traceback" not in completed.stderr
    assert list(tmp_path.iterdir()) == []


def test_work_folders_are_recognised_with_or_without_a_marker(tmp_path):
    from DiffusionPEFTLib.files import is_work_folder, work_folder

    with work_folder(tmp_path / "marked", keep_if="checkpoint.pt") as marked:
        pass
    legacy = tmp_path / "legacy"  # made before markers existed
    legacy.mkdir()
    (legacy / "checkpoint.pt").write_bytes(b"x")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "checkpoint.pt").write_bytes(b"x")
    (foreign / "thesis.docx").write_bytes(b"x")
    assert is_work_folder(marked) and is_work_folder(legacy)
    assert not is_work_folder(foreign) and not is_work_folder(tmp_path / "missing")
