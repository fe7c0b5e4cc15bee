"""The module's smaller helpers: loss curve nodes, panel texts, model catalog, backend queries, dependencies."""

from __future__ import annotations

import sys
import zipfile

import pytest
import slicer_standins

slicer_standins.install()

from DiffusionPEFTSlicer import backend_queries, dependencies, formatting, model_catalog  # noqa: E402
from DiffusionPEFTSlicer.launcher import BackendLauncher, backendEnvironment  # noqa: E402
from DiffusionPEFTSlicer.loss_curve import LossCurve  # noqa: E402


def test_loss_curve_is_a_table_drawn_by_a_chart():
    slicer_standins.freshScene()
    curve = LossCurve()
    for step, loss in ((1, 0.5), (2, 0.25), (3, 0.125)):
        curve.add(step, loss)
    assert curve.points() == [(1, 0.5), (2, 0.25), (3, 0.125)]
    assert curve.chartNode.GetPlotSeriesNodeID() == curve.seriesNode.GetID()
    assert curve.seriesNode.GetTableNodeID() == curve.tableNode.GetID()
    curve.reset()
    assert curve.points() == []


def test_panel_texts():
    event = {"event": "progress", "stage": "finetune", "step": 120, "total": 400, "loss": 0.0312345, "eta_s": 85}
    assert formatting.progressText(event) == "%p% — finetune 120/400 — loss 0.03123 — 1 min 25 s left"
    assert formatting.durationText(3725) == "1 h 2 min"
    assert formatting.parameterCountText(166_700_000) == "166.7 M"
    assert formatting.errorText("a < b", "try c") == "<b>a &lt; b</b><br>try c"


def test_model_catalog_lists_packages_and_imports_without_overwriting(tmp_path):
    source = tmp_path / "source" / "brain"
    source.mkdir(parents=True)
    (source / "model.json").write_text("{}")
    users = tmp_path / "users"
    first = model_catalog.importModelPackage(source / "model.json", users)
    second = model_catalog.importModelPackage(source, users)
    assert (first.name, second.name) == ("brain", "brain-2") and (second / "model.json").is_file()
    with zipfile.ZipFile(users / "zipped.zip", "w") as archive:
        archive.writestr("model.json", "{}")
    (users / "not-a-model").mkdir()
    names = [(entry.name, entry.origin) for entry in model_catalog.listModels(users) if entry.origin == "user"]
    assert names == [("brain", "user"), ("brain-2", "user"), ("zipped", "user")]
    with pytest.raises(ValueError, match="not a model package"):
        model_catalog.importModelPackage(users / "not-a-model", users)


def test_model_card_comes_from_the_backend(tiny_model_dir):
    launcher = BackendLauncher([sys.executable], backendEnvironment())
    card = backend_queries.modelCard(launcher, tiny_model_dir)
    assert card["grid"]["shape"] == [16, 16, 16] and card["parameters"] > 0
    text = formatting.modelCardText(card, {"cudaAvailable": False, "torch": "2.x", "cuda": None})
    assert "16×16×16" in text and "device: cpu" in text


def test_missing_distributions_are_found_without_importing_them(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nnibabel>=5.0\nno-such-distribution-xyz>=1 ; python_version>'3'\n")
    assert dependencies.missingDistributions(requirements) == ["no-such-distribution-xyz>=1 ; python_version>'3'"]
