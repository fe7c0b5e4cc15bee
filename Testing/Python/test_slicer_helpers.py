"""The module's smaller helpers: loss curve nodes, panel texts, model catalog, backend queries, dependencies."""

from __future__ import annotations

import sys
import time
import types
import zipfile
from pathlib import Path

import pytest
import slicer_standins

slicer_standins.install()

import slicer  # noqa: E402
from DiffusionPEFTSlicer import backend_queries, conditions, dependencies, formatting, model_catalog  # noqa: E402
from DiffusionPEFTSlicer.job_result import JobResult  # noqa: E402
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
    assert formatting.parameterCountText(512) == "512"
    assert (formatting.sizeText(12_345_678), formatting.sizeText(2_500), formatting.sizeText(7)) == ("12.3 MB", "2.5 kB", "7 B")
    assert formatting.errorText("a < b", "try c") == "<b>a &lt; b</b><br>try c"


def test_trainable_text_splits_adapter_and_norms_unless_only_base_parameters_train():
    counts = {"adapter": 539_392, "extra": 61_632, "base": 166_669_313, "total": 601_024,
              "share": 601_024 / 166_669_313}
    assert formatting.trainableText(counts) == ("trainable parameters: 601,024 = 0.36 % of 166,669,313 "
                                                "(adapter 539,392 + norms/biases 61,632)")
    full = {"adapter": 0, "extra": 2_920_289, "base": 2_920_289, "total": 2_920_289, "share": 1.0}
    assert formatting.trainableText(full) == "trainable parameters: 2,920,289 = 100.00 % of 2,920,289"


def test_memory_text_says_when_not_even_the_smallest_settings_fit():
    plan = {"batch": 2, "setup": {"method": "full", "precision": "fp16", "checkpointing": True},
            "predicted": {"total": 30 * 1024**3}, "budget_bytes": int(19.2 * 1024**3), "where": "on this GPU",
            "fits": False, "proposal": None}
    assert formatting.memoryText(plan) == (
        "Does not fit on this GPU with fp16 + checkpointing at batch 2: about 30.00 GiB, its budget is 19.20 GiB. "
        "Not even bf16 + checkpointing at batch 1 fits: use a smaller model or a device with more memory.")


def test_condition_values_keep_what_the_model_admits_and_take_its_defaults_otherwise():
    card = {"task": "latent", "latent": {"conditions": [{"name": "age", "label": "Age", "default": 0.1, "range": [0, 1]},
                                                        {"name": "c1", "label": "", "default": 0.0, "range": None}]}}
    age, c1 = conditions.modelConditions(card)
    assert (age.label, age.range, c1.range) == ("Age", (0, 1), None)
    assert conditions.modelConditions({"task": "synthesis"}) == [] and conditions.modelConditions(None) == []
    chosen = conditions.chosenValues([age, c1], "age=7,c1=-3.5,gender=1,broken")
    assert chosen == {"age": 0.1, "c1": -3.5}  # age 7 is out of its range; gender is not a condition of this model
    assert conditions.conditionText(chosen) == "age=0.1,c1=-3.5"
    assert conditions.parseConditionText(conditions.conditionText({"age": 1 / 3})) == {"age": 1 / 3}  # exact
    assert "conditions: age, c1" in formatting.modelCardText(card, None)


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


def pollUntilDone(query: backend_queries.BackgroundQuery, answers: list, timeout: float = 60) -> None:
    """Poll ``query`` like the panel's timer does until it ends (or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while query.poll() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not query.poll() and len(answers) <= 1


def test_model_card_comes_from_the_backend_in_the_background(tiny_model_dir):
    answers = []
    launcher = BackendLauncher([sys.executable], backendEnvironment())
    started = time.monotonic()
    query = backend_queries.modelCard(launcher, tiny_model_dir, onAnswer=answers.append, onFailure=answers.append)
    assert time.monotonic() - started < 1.0 and answers == []  # started, not waited for
    pollUntilDone(query, answers)
    (card,) = answers
    assert card["grid"]["shape"] == [16, 16, 16] and card["parameters"] > 0
    text = formatting.modelCardText(card, {"cudaAvailable": False, "torch": "2.x", "cuda": None})
    assert "16×16×16" in text and "device: cpu" in text


def test_adapter_plan_counts_come_from_the_backend_dry_run(tiny_model_dir):
    from DiffusionPEFTLib.adapters import plan_adapter
    from DiffusionPEFTLib.models import read_model_config

    answers = []
    launcher = BackendLauncher([sys.executable], backendEnvironment())
    query = backend_queries.adapterPlan(launcher, tiny_model_dir, "tenvoo-l", 2, "tenvoo",
                                        onAnswer=answers.append, onFailure=answers.append)
    pollUntilDone(query, answers)
    expected = plan_adapter(read_model_config(tiny_model_dir).unet, "tenvoo-l", "tenvoo", rank=2).counts
    assert answers[0]["method"] == "tenvoo-l" and answers[0]["counts"] == expected.as_dict()
    assert formatting.trainableText(answers[0]["counts"]).startswith(f"trainable parameters: {expected.total:,} = ")


def test_selection_methods_get_neither_rank_nor_targets():
    lora = {"method": "lora", "rank": 8, "targets": "attention"}
    assert backend_queries.adapterOptions("lora", 8, "attention") == lora
    assert backend_queries.adapterOptions("full", 8, "attention") == {"method": "full"}


def pythonQuery(code: str, answers: list, **options) -> backend_queries.BackgroundQuery:
    launcher = BackendLauncher([sys.executable], backendEnvironment())
    return backend_queries.BackgroundQuery([sys.executable, "-c", code], launcher, onAnswer=answers.append,
                                           onFailure=answers.append, **options).start()


def test_a_failed_query_reports_the_backend_error_line_and_hint():
    answers = []
    pollUntilDone(pythonQuery(
        "import sys; print('[info] reading', file=sys.stderr); print('error (model): Model not found: x', "
        "file=sys.stderr); print('hint: Give a model package.', file=sys.stderr); sys.exit(2)", answers), answers)
    (failure,) = answers
    assert (failure.message, failure.hint) == ("error (model): Model not found: x", "Give a model package.")


def test_a_superseded_query_is_killed_and_delivers_nothing_and_a_stuck_one_times_out():
    answers = []
    superseded = pythonQuery("import time; time.sleep(30); print('{}')", answers)
    superseded.cancel()
    pollUntilDone(superseded, answers, timeout=5)
    assert answers == []
    pollUntilDone(pythonQuery("import time; time.sleep(30)", answers, timeoutSeconds=0.3), answers, timeout=10)
    assert "did not answer within 0.3 s" in answers[0].message


def test_a_python_without_a_dependency_is_a_setup_problem_not_a_traceback(tmp_path):
    traceback = ["Traceback (most recent call last):", '  File "x.py", line 1', "ModuleNotFoundError: No module named 'torch'"]
    with pytest.raises(backend_queries.JobFailed) as failure:
        backend_queries.answerOf(1, "", traceback)
    assert failure.value.message == "The Python package 'torch' is not installed." and "Setup" in failure.value.hint
    result = JobResult(tmp_path)
    for line in [*traceback[:2], "ModuleNotFoundError: No module named 'monai.networks'"]:
        result.addStderr(line)
    result.finish(1, killed=False)
    assert result.error["message"] == "The Python package 'monai' is not installed." and "Setup" in result.error["hint"]
    broken = JobResult(tmp_path)  # a broken backend is not something Install dependencies fixes
    broken.addStderr("ModuleNotFoundError: No module named 'DiffusionPEFTLib.plan'")
    broken.finish(1, killed=False)
    assert "exit code 1" in broken.error["message"] and "DiffusionPEFTLib.plan" in broken.error["hint"]


def test_missing_distributions_are_found_without_importing_them(tmp_path, monkeypatch):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nnibabel>=5.0\nno-such-distribution-xyz>=1 ; python_version>'3'\n")
    assert dependencies.missingDistributions(requirements) == ["no-such-distribution-xyz>=1 ; python_version>'3'"]
    installed = dependencies.installedVersion
    monkeypatch.setattr(dependencies, "installedVersion", lambda name: "2.4.1+cu121" if name == "torch" else installed(name))
    assert dependencies.missingDistributions(requirements)[-1] == "torch>=2.8 (installed: 2.4.1+cu121)"
    assert dependencies.releaseOf("2.13.0+cpu") == (2, 13, 0) > dependencies.releaseOf("2.8") > (2, 4, 1)


class PyTorchUtilsLogic:
    """PyTorchUtils' logic: records installTorch calls; ``accept`` False = the user declines (it returns None)."""

    calls: list = []
    accept = True

    def installTorch(self, askConfirmation, torchVersionRequirement):
        self.calls.append((askConfirmation, torchVersionRequirement))
        return types.ModuleType("torch") if self.accept else None


class SlicerPackaging:
    """``slicer.packaging`` of Slicer 5.12: records what pip_ensure was asked to install, and with which constraints."""

    def __init__(self):
        self.ensured = []

    def load_requirements(self, path):
        return dependencies.requirements(Path(path))

    def pip_ensure(self, requirements, constraints=None, requester=None):
        self.ensured.append((requirements, Path(constraints).read_text(), requester))


@pytest.fixture
def pyTorchUtils(monkeypatch):
    """The PyTorch extension's module, with torch at ``version`` (None: not installed) as its metadata says."""
    state = types.SimpleNamespace(version="2.8.0+cu128")
    PyTorchUtilsLogic.calls, PyTorchUtilsLogic.accept = [], True
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.ModuleType("PyTorchUtils"))
    sys.modules["PyTorchUtils"].PyTorchUtilsLogic = PyTorchUtilsLogic
    installed = dependencies.installedVersion
    monkeypatch.setattr(dependencies, "installedVersion",
                        lambda name: state.version if name == "torch" else installed(name))
    return state


def test_torch_comes_through_pytorchutils_and_a_declined_install_stops_everything(pyTorchUtils, monkeypatch):
    packaging = SlicerPackaging()
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    pyTorchUtils.version, PyTorchUtilsLogic.accept = None, False
    with pytest.raises(RuntimeError, match="PyTorch was not installed"):
        dependencies.installDependencies()
    assert PyTorchUtilsLogic.calls == [(True, ">=2.8")] and packaging.ensured == []


def test_an_old_torch_is_refused_before_pip_runs(pyTorchUtils, monkeypatch):
    packaging = SlicerPackaging()
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    pyTorchUtils.version = "2.4.1+cu121"
    with pytest.raises(RuntimeError, match=r"2.4.1\+cu121 is too old.*>=2.8"):
        dependencies.installDependencies()
    assert PyTorchUtilsLogic.calls == [] and packaging.ensured == []


def test_slicer_5_12_ensures_the_rest_with_torch_pinned(pyTorchUtils, monkeypatch):
    packaging = SlicerPackaging()
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    dependencies.installDependencies()
    ((requirements, constraints, requester),) = packaging.ensured
    assert requirements == dependencies.requirements() and requester == "DiffusionPEFT"
    assert constraints == "torch==2.8.0+cu128\n" and PyTorchUtilsLogic.calls == []


def test_slicer_5_10_asks_then_pip_installs_the_missing_rest_with_torch_pinned(pyTorchUtils, monkeypatch):
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)  # not in 5.10: importing it fails
    monkeypatch.setattr(dependencies, "missingRequirements", lambda: ["nibabel>=5.0"])
    installs, dialogs = [], slicer_standins.Dialogs([False, True]).install(monkeypatch)
    monkeypatch.setattr(slicer.util, "pip_install", installs.append, raising=False)
    with pytest.raises(RuntimeError, match="declined"):
        dependencies.installDependencies()
    assert installs == []
    dependencies.installDependencies()
    ((nibabel, flag, constraints),) = installs
    assert (nibabel, flag) == ("nibabel>=5.0", "--constraint") and Path(constraints).read_text() == "torch==2.8.0+cu128\n"
    assert len(dialogs.confirmations) == 2 and "nibabel>=5.0" in dialogs.confirmations[0]
