"""``diffusion-peft simulate``: files, manifest, progress events, and clear errors for bad options."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import run_cli

from DiffusionPEFTLib.simulate import write_cohort
from DiffusionPEFTLib.cancel import CancelToken
from DiffusionPEFTLib.errors import JobCancelled
from DiffusionPEFTLib.volumes import read_volume


def test_simulate_writes_every_subject_contrast_label_map_and_the_manifest(tmp_path):
    out = tmp_path / "cohort"
    code, events = run_cli("simulate", "--n", 2, "--contrasts", "t1,flair", "--lesions", "tumour",
                           "--atrophy", "0.1:0.5", "--shape", 20, 24, 20, "--spacing", 8, "--seed", 7, "--out", out)
    assert code == 0, events.events
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cohort_seed"] == 7 and [s["id"] for s in manifest["subjects"]] == ["sub-000", "sub-001"]
    for record in manifest["subjects"]:
        assert set(record["files"]) == {"t1", "flair", "tissue_labels", "lesion_labels"}
        assert 0.1 <= record["atrophy"] <= 0.5 and record["lesions"] == "tumour"
        volumes = {role: read_volume(out / path, check=False) for role, path in record["files"].items()}
        for volume in volumes.values():
            assert volume.shape == (20, 24, 20)
            np.testing.assert_allclose(volume.affine, volumes["t1"].affine, atol=1e-5)
        np.testing.assert_allclose(volumes["t1"].spacing, 8.0, atol=1e-6)
        assert (volumes["lesion_labels"].data > 0).any()
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [r["id"] for r in rows] == ["sub-000", "sub-001"] and float(rows[0]["tumour_core_ml"]) > 0
    progress = events.of("progress")
    assert [p["step"] for p in progress] == [0, 1, 2] and progress[-1]["total"] == 2
    assert events.of("done")[0]["outputs"] == [str(out / "manifest.json"), str(out / "manifest.csv")]
    assert not list(out.rglob(".*partial*"))


@pytest.mark.parametrize("argv, wrong", [
    (["--shape", "0", "24", "20"], "--shape"),
    (["--contrasts", "t1,dwi"], "dwi"),
    (["--atrophy", "0.6:0.2"], "Atrophy"),
    (["--n", "0"], "--n"),
    (["--spacing", "4", "4"], "--spacing"),
    (["--snr", "-3"], "--snr"),
])
def test_bad_options_are_input_errors_and_write_nothing(tmp_path, argv, wrong):
    out = tmp_path / "cohort"
    code, events = run_cli("simulate", "--out", out, *argv)
    assert code == 2
    error = events.of("error")[0]
    assert error["kind"] == "input" and wrong in error["message"] and error["hint"]
    assert not out.exists()


def test_cancel_stops_between_subjects_and_writes_no_manifest(tmp_path):
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        write_cohort(tmp_path / "cohort", 2, shape=(16, 16, 16), spacing=8.0, cancel=token)
    assert not (tmp_path / "cohort" / "manifest.json").exists()
