"""The real DiffusionPEFTWidget on a real MRML scene (slicer-core), driven as a user drives it.

PySide6 speaks PythonQt (``pythonqt_standins``, the CTK/MRML look-alikes of ``panel_shims``, the
parameter node's GUI binding of ``parameter_gui_standin``), and the backend is ``slow_backend.py``:
it takes BACKEND_DELAY_S per answer, so an action that waited for it could not return within
RESPONSIVE_S; running a process synchronously on the GUI thread fails the test outright.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import json  # noqa: E402
import pathlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import slicer_standins  # noqa: E402

slicer_standins.install()

import gui_thread  # noqa: E402
import pythonqt_standins  # noqa: E402
import slicer  # noqa: E402
import slow_backend  # noqa: E402
from bundles import BRAIN_NETWORKS, tiny_inference, tiny_metadata, write_bundle  # noqa: E402
from conftest import run_cli  # noqa: E402
from DiffusionPEFT import DiffusionPEFTWidget  # noqa: E402
from DiffusionPEFTSlicer import comparison, formatting, model_catalog, model_tasks  # noqa: E402
from DiffusionPEFTSlicer.conditions import modelConditions  # noqa: E402
from DiffusionPEFTSlicer.launcher import BackendLauncher, backendEnvironment  # noqa: E402
from DiffusionPEFTSlicer.logic import DiffusionPEFTLogic  # noqa: E402
from DiffusionPEFTSlicer.parameter_node import ADAPTER_METHODS, PRECISIONS, isSet  # noqa: E402
from DiffusionPEFTSlicer.volume_exchange import ijkToRas  # noqa: E402
from DiffusionPEFTSlicer.widget import TASK_INPUTS  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QFormLayout  # noqa: E402

SLOW_BACKEND = pathlib.Path(__file__).with_name("slow_backend.py")
BACKEND_DELAY_S = 1.5
RESPONSIVE_S = 0.5
SHIPPED_MODEL = slicer_standins.REPOSITORY / "Resources" / "Models" / "demo-t1-32x40x32"
KEY_INTERVAL_S = 0.03  # a fast typist; well below the panel's query delay
TRANSLATION = {"task": "translation", "translation": {"source": "t1", "target": "flair"}}  # in model.json and card
CONTRASTS = {"condition_classes": ["t1", "t2", "pd"]}  # a class-conditioned synthesis model
SYNTHESIZE_INPUTS = {"referenceVolumeSelector", "samplerComboBox", "sampleCountSpinBox", "samplingStepsSpinBox"}
TRANSLATE_INPUTS = {"sourceVolumeSelector", "targetVolumeSelector", "sampleCountSpinBox", "samplingStepsSpinBox"}
RECONSTRUCT_INPUTS = {"sourceVolumeSelector", "accelerationSpinBox", "undersamplingMaskComboBox", "coilsSpinBox",
                      "reconstructionMethodComboBox", "reconstructionSamplesSpinBox"}
AXIAL_6MM = np.diag([6.0, 6.0, 6.0, 1.0])
OBLIQUE = np.array([[np.cos(0.5), -np.sin(0.5), 0.0, 10.0], [np.sin(0.5), np.cos(0.5), 0.0, -5.0], [0.0, 0.0, 1.0, 3.0],
                    [0.0, 0.0, 0.0, 1.0]]) @ np.diag([6.0, 5.0, 7.5, 1.0])  # rotated about S, anisotropic


class SlowBackend:
    """The stand-in backend's environment (a test may change it: the launcher shares the dict) and every
    process the panel started, recorded where it starts them (a process killed at once leaves no other trace)."""

    def __init__(self, monkeypatch):
        self.environment = {**backendEnvironment(), "SLOW_BACKEND_DELAY": str(BACKEND_DELAY_S)}
        self.started: list[subprocess.Popen] = []
        started = self.started

        class RecordingPopen(subprocess.Popen):
            def __init__(self, argv, *arguments, **options):
                super().__init__(argv, *arguments, **options)
                started.append(self)

        monkeypatch.setattr(subprocess, "Popen", RecordingPopen)

    def processes(self, command: str) -> list[subprocess.Popen]:
        """The starts of ``command`` (``info``, ``finetune``, ``run``; ``-c`` for the torch probe)."""
        return [p for p in self.started if (p.args[2] if p.args[2] == "-c" else p.args[4]) == command]

    def calls(self, command: str) -> list[list[str]]:
        """argv of each start of ``command`` after ``-m DiffusionPEFTLib``."""
        return [p.args[4:] for p in self.processes(command)]

    def dryRuns(self) -> list[list[str]]:
        """argv of each ``finetune --dry-run`` (the trainable share)."""
        return [argv for argv in self.calls("finetune") if "--dry-run" in argv]

    def memoryPlans(self) -> list[list[str]]:
        """argv of each ``finetune --plan`` (the memory line)."""
        return [argv for argv in self.calls("finetune") if "--plan" in argv]


class Panel:
    """The widget and what a test needs around it: act, wait, the dialogs, the backend."""

    def __init__(self, widget, dialogs, backend, openSeconds):
        self.widget, self.ui, self.dialogs, self.backend, self.openSeconds = widget, widget.ui, dialogs, backend, openSeconds

    @property
    def parameters(self):
        return self.widget.logic.getParameterNode()

    @property
    def job(self):
        return self.widget.logic.activeJob

    def act(self, action) -> None:
        """Do what a user does (a click, a keystroke); it must return at once."""
        started = time.monotonic()
        action()
        elapsed = time.monotonic() - started
        assert elapsed < RESPONSIVE_S, f"the panel was frozen for {elapsed:.2f} s"

    def settle(self, seconds: float) -> None:
        """Let the event loop run (timers, polls) for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)

    def waitFor(self, condition, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            self.settle(0.02)

    def typePath(self, text: str) -> None:
        """Select the Package field's text and type ``text`` over it key by key ("": delete it)."""
        lineEdit = self.ui.modelPathLineEdit.lineEdit
        lineEdit.selectAll()
        if not text:
            self.act(lambda: QTest.keyClick(lineEdit, Qt.Key_Delete))
        for character in text:
            self.act(lambda c=character: QTest.keyClicks(lineEdit, c))
            self.settle(KEY_INTERVAL_S)

    def pastePath(self, path) -> None:
        """Paste ``path`` into the Package field."""
        self.act(lambda: self.ui.modelPathLineEdit.lineEdit.setText(str(path)))

    def chooseModel(self, folder: pathlib.Path, cardText: str, **description) -> pathlib.Path:
        """Paste a new model's path (``description``: more of its model.json); return once its card shows
        ``cardText``."""
        model = modelPackage(folder, **description)
        self.pastePath(model)
        self.waitFor(lambda: self.cardShows(cardText))
        return model

    def chooseTranslationModel(self, folder: pathlib.Path) -> pathlib.Path:
        """Paste a new translation model's path; return once its card has set the task."""
        model = self.chooseModel(folder, "translates t1 → flair", **TRANSLATION)
        assert self.parameters.generateTask == "translate"
        return model

    def chooseTask(self, task: str) -> None:
        """Pick ``task`` in Generate's Task list."""
        self.act(lambda: self.ui.generateTaskComboBox.setCurrentIndex(model_tasks.GENERATE_TASKS.index(task)))

    def chooseContrast(self, name: str) -> None:
        combo = self.ui.contrastComboBox
        index = combo.findText(name)
        self.act(lambda: (combo.setCurrentIndex(index), combo.activated.emit(index)))

    def contrasts(self) -> list[str]:
        combo = self.ui.contrastComboBox
        return [combo.itemText(index) for index in range(combo.count)]

    def conditionFields(self) -> dict:
        """Generate's condition fields by their label ("age:" → age)."""
        form = self.ui.conditionsFrame.layout()
        return {form.itemAt(row, QFormLayout.LabelRole).widget().text().removesuffix(":"):
                form.itemAt(row, QFormLayout.FieldRole).widget() for row in range(form.rowCount())}

    def typeNumber(self, field, text: str) -> None:
        """Select a number field's text and type ``text`` over it key by key."""
        self.act(field.selectAll)
        for character in text:
            self.act(lambda c=character: QTest.keyClicks(field, c))
            self.settle(KEY_INTERVAL_S)

    def shownInputs(self) -> set[str]:
        """The Generate rows shown now (TASK_INPUTS, Contrast and Conditions), each with its label."""
        shown = set()
        for name in [*TASK_INPUTS, "contrastComboBox", "conditionsFrame"]:
            widget, label = getattr(self.ui, name), getattr(self.ui, f"{name}Label")
            assert widget.isHidden() == label.isHidden(), name
            if not widget.isHidden():
                shown.add(name)
        return shown

    def startFineTune(self, volumes, steps: int) -> None:
        for node in volumes:
            self.ui.trainingVolumesSelector.setCheckState(node, Qt.Checked)
        self.ui.trainingStepsSpinBox.setValue(steps)
        self.act(self.ui.fineTuneButton.click)
        assert self.job is not None and self.job.running, self.ui.statusLabel.text

    def cardShows(self, text: str) -> bool:
        return text in self.ui.modelCardLabel.text


@pytest.fixture(scope="module")
def latentModel(tmp_path_factory) -> pathlib.Path:
    """A latent model imported for real (``import-bundle``) from a tiny bundle in the brain LDM's scheme: it is
    conditioned on age and ventricular_vol, defaults 0.25 and 0.5, range [0, 1]."""
    root = tmp_path_factory.mktemp("bundle")
    write_bundle(root / "bundle", tiny_inference(), tiny_metadata(), BRAIN_NETWORKS)
    code, events = run_cli("import-bundle", root / "bundle", "--out", root / "brain-ldm")
    assert code == 0, events.events
    return root / "brain-ldm"


@pytest.fixture(scope="module")
def application():
    return QApplication.instance() or QApplication([])


@pytest.fixture(autouse=True)
def slotErrorsFailTheTest(monkeypatch):
    """Qt reports an exception raised in a slot through sys.excepthook and goes on; here it fails the test."""
    errors = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, error, traceback: errors.append(error))
    yield
    assert not errors, f"a slot raised: {errors!r}"


@pytest.fixture(autouse=True)
def noProcessWaitsOnTheGuiThread(monkeypatch):
    """Any blocking process call from the GUI (main) thread fails the test."""
    gui_thread.refuseBlockingProcessCalls(monkeypatch)


@pytest.fixture
def backend(monkeypatch):
    return SlowBackend(monkeypatch)


@pytest.fixture
def panel(application, backend, tmp_path, monkeypatch):
    """The module panel opened on a fresh scene, with the slow backend and no user models."""
    slicer_standins.freshScene()
    pythonqt_standins.QSettings.store.clear()
    pythonqt_standins.QSettings.store[model_catalog.USER_MODELS_SETTING] = str(tmp_path / "my-models")
    pythonqt_standins.QFileDialog.answers.clear()
    pythonqt_standins.QFileDialog.asked.clear()
    dialogs = slicer_standins.Dialogs().install(monkeypatch)
    widget = DiffusionPEFTWidget()
    widget.logic = DiffusionPEFTLogic(BackendLauncher([sys.executable, str(SLOW_BACKEND)], backend.environment),
                                      jobsFolder=tmp_path / "jobs")
    started = time.monotonic()
    widget.setup()
    widget.parent.isEntered = True
    widget.enter()
    yield Panel(widget, dialogs, backend, time.monotonic() - started)
    widget.cleanup()
    if widget.logic.running:
        widget.logic.activeJob.wait()


def addVolumes(count: int, ijkToRAS=AXIAL_6MM) -> list:
    """Small smooth volumes in the scene, as a user loads them."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 8)] * 3, indexing="ij"))
    return [slicer.util.addVolumeFromArray((100 * np.exp(-(1 + i) * (grid ** 2).sum(axis=0))).astype(np.float32),
                                           ijkToRAS, f"scan {i}") for i in range(count)]


def modelPackage(folder: pathlib.Path, answerDelay: float = BACKEND_DELAY_S, **description) -> pathlib.Path:
    """A model folder the slow backend reads in ``answerDelay`` seconds; ``description``: more of its model.json."""
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"answerDelay": answerDelay, **description}))
    return folder


def volumeCount() -> int:
    return slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")


def lossPoints(panel) -> int:
    chart = panel.ui.lossPlotWidget.plotViewNode.GetPlotChartNode()
    return chart.GetNthPlotSeriesNode(0).GetTableNode().GetNumberOfRows()


def test_opening_asks_nothing_at_once_and_never_for_the_empty_path(panel):
    assert panel.backend.calls("info") == [] and panel.backend.calls("finetune") == []
    assert panel.openSeconds < BACKEND_DELAY_S
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32") and "trainable parameters: 4,050" in panel.ui.trainableLabel.text
                  and panel.ui.memoryLabel.text.startswith("Fits"))
    assert [argv[1] for argv in panel.backend.calls("info")] == [str(SHIPPED_MODEL)]
    assert len(panel.backend.dryRuns()) == 1 and len(panel.backend.memoryPlans()) == 1
    assert panel.ui.memoryLabel.text == "Fits on this GPU with bf16 at batch 1: about 4.80 GiB of its 19.20 GiB budget."


def test_the_model_selector_is_bound_to_the_model_fine_tune_uses(panel, tmp_path):
    selector, parameters = panel.ui.modelSelector, panel.parameters
    assert selector.currentIndex == 0 and pathlib.Path(selector.itemData(0)) == SHIPPED_MODEL
    assert parameters.modelPath == SHIPPED_MODEL and panel.ui.modelPathLineEdit.currentPath == str(SHIPPED_MODEL)
    panel.act(panel.ui.fineTuneButton.click)
    assert "training volume" in panel.ui.statusLabel.text  # the model is there; the volumes are missing
    panel.typePath(str(modelPackage(tmp_path / "elsewhere")))
    assert selector.currentIndex == -1 and parameters.modelPath == tmp_path / "elsewhere"
    panel.act(lambda: (selector.setCurrentIndex(0), selector.activated.emit(0)))
    assert panel.ui.modelPathLineEdit.currentPath == str(SHIPPED_MODEL) and parameters.modelPath == SHIPPED_MODEL
    panel.typePath("")
    assert selector.currentIndex == -1 and not isSet(parameters.modelPath)
    for node in addVolumes(1):
        panel.ui.trainingVolumesSelector.setCheckState(node, Qt.Checked)
    panel.act(panel.ui.fineTuneButton.click)
    assert "Choose a model first" in panel.ui.statusLabel.text and panel.job is None


def test_typing_a_path_asks_once_it_settles_and_an_empty_path_asks_nothing(panel, tmp_path):
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
    panel.typePath("")
    assert panel.ui.modelCardLabel.text == "No model chosen." and panel.ui.trainableLabel.text == ""
    assert panel.ui.memoryLabel.text == ""
    typed = modelPackage(tmp_path / "typed-model")
    panel.typePath(str(typed))
    panel.waitFor(lambda: panel.cardShows("typed-model") and "trainable" in panel.ui.trainableLabel.text)
    assert [argv[1] for argv in panel.backend.calls("info")] == [str(SHIPPED_MODEL), str(typed)]
    assert [argv[1] for argv in panel.backend.dryRuns()] == [str(SHIPPED_MODEL), str(typed)]
    assert [argv[1] for argv in panel.backend.memoryPlans()] == [str(SHIPPED_MODEL), str(typed)]


def test_a_newer_path_drops_the_query_under_way_and_its_stale_answer(panel, tmp_path):
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
    slow = 2 * BACKEND_DELAY_S  # without dropping it, first-model's card would come after second-model's
    first, second = modelPackage(tmp_path / "first-model", slow), modelPackage(tmp_path / "second-model")
    lineEdit = panel.ui.modelPathLineEdit.lineEdit
    panel.act(lambda: lineEdit.setText(str(first)))  # pasted
    panel.waitFor(lambda: len(panel.backend.calls("info")) == 2)  # first-model is being read
    firstReading = panel.backend.processes("info")[1]
    panel.act(lambda: lineEdit.setText(str(second)))
    panel.waitFor(lambda: firstReading.poll() is not None, timeout=RESPONSIVE_S)  # stopped, not left to run
    panel.waitFor(lambda: panel.cardShows("second-model"))
    panel.settle(slow)
    assert panel.cardShows("second-model") and not panel.cardShows("first-model")


def test_the_trainable_share_is_recounted_once_the_rank_settles(panel):
    panel.waitFor(lambda: "4,050" in panel.ui.trainableLabel.text)  # rank 4: 1000 per rank + 50
    for _ in range(3):
        panel.act(panel.ui.adapterRankSpinBox.stepUp)
        panel.settle(KEY_INTERVAL_S)
    assert panel.ui.trainableLabel.text == "trainable parameters: …"
    panel.waitFor(lambda: "7,050" in panel.ui.trainableLabel.text)
    ranks = [argv[argv.index("--rank") + 1] for argv in panel.backend.dryRuns()]
    assert ranks == ["4", "7"]


def test_save_adapter_before_any_adapter_exists_copies_nothing(panel, tmp_path):
    target = tmp_path / "saved"
    target.mkdir()
    pythonqt_standins.QFileDialog.answers.append(str(target))
    panel.act(panel.ui.saveAdapterButton.click)
    assert pythonqt_standins.QFileDialog.asked == [] and list(target.iterdir()) == []
    assert "no adapter to save" in panel.ui.statusLabel.text and not isSet(panel.parameters.adapterPath)


def test_fine_tune_runs_in_the_background_and_cancel_lets_it_save_a_checkpoint(panel):
    panel.startFineTune(addVolumes(2), steps=1000)
    assert panel.ui.fineTuneButton.text == "Cancel"
    assert not panel.ui.generateButton.enabled and not panel.ui.compareButton.enabled
    panel.waitFor(lambda: panel.ui.fineTuneProgressBar.value >= 0 and lossPoints(panel) >= 3)
    job = panel.job
    panel.act(panel.ui.fineTuneButton.click)
    assert panel.ui.fineTuneButton.text == "Cancelling…"
    panel.waitFor(lambda: not job.running)
    assert (job.folder / "adapter.work" / "checkpoint.pt").is_file()  # it stopped itself: not killed
    assert job.result.cancelled and "a checkpoint was saved" in panel.ui.statusLabel.text
    assert panel.ui.fineTuneButton.text == "Start fine-tuning" and panel.ui.generateButton.enabled


def test_a_trained_adapter_becomes_current_and_save_adapter_copies_it(panel, tmp_path):
    panel.startFineTune(addVolumes(2), steps=3)
    job = panel.job
    panel.waitFor(lambda: not job.running)
    adapter = job.folder / "adapter"
    assert panel.parameters.adapterPath == adapter and panel.ui.adapterPathLineEdit.currentPath == str(adapter)
    target = tmp_path / "my-adapters"
    pythonqt_standins.QFileDialog.answers.append(str(target))
    panel.act(panel.ui.saveAdapterButton.click)
    assert (target / "adapter" / "adapter.json").is_file() and panel.parameters.adapterPath == target / "adapter"


@pytest.mark.parametrize("stop", [True, False], ids=["stop-it", "let-it-finish"])
def test_closing_the_scene_asks_what_to_do_with_a_running_fine_tune(panel, stop):
    panel.startFineTune(addVolumes(2), steps=1000 if stop else 30)
    job = panel.job
    panel.waitFor(lambda: lossPoints(panel) >= 1)
    panel.dialogs.answers.append(stop)
    panel.act(lambda: slicer.mrmlScene.Clear(0))
    (question,) = panel.dialogs.confirmations
    assert "fine-tune is running" in question and str(job.folder) in question
    if stop:
        panel.waitFor(lambda: not job.running)
        assert job.result.cancelled and (job.folder / "adapter.work" / "checkpoint.pt").is_file()
        return
    assert job.running
    panel.waitFor(lambda: not job.running)
    assert job.result.succeeded and panel.parameters.adapterPath == job.folder / "adapter"


def test_compare_shows_both_volumes_in_the_same_plane_and_the_difference_visibly(panel):
    reference, output = addVolumes(2)
    panel.ui.compareReferenceSelector.setCurrentNode(reference)
    panel.ui.compareOutputSelector.setCurrentNode(output)
    layoutManager = slicer.app.layoutManager()
    red, yellow = layoutManager.sliceWidget("Red"), layoutManager.sliceWidget("Yellow")
    assert yellow.mrmlSliceNode().GetOrientation() == "Sagittal"  # Slicer's default for that view
    panel.act(panel.ui.compareButton.click)
    panel.waitFor(lambda: not panel.widget.logic.running)
    assert layoutManager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert red.mrmlSliceNode().GetOrientation() == yellow.mrmlSliceNode().GetOrientation() == "Axial"
    assert red.mrmlSliceCompositeNode().GetBackgroundVolumeID() == reference.GetID()
    assert yellow.mrmlSliceCompositeNode().GetBackgroundVolumeID() == output.GetID()
    assert yellow.mrmlSliceCompositeNode().GetForegroundOpacity() >= 0.3
    difference = slicer.mrmlScene.GetNodeByID(yellow.mrmlSliceCompositeNode().GetForegroundVolumeID())
    expected = slicer.util.arrayFromVolume(output) - slicer.util.arrayFromVolume(reference)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(difference), expected)
    display = difference.GetDisplayNode()
    assert display.GetColorNodeID() == comparison.DIFFERENCE_COLORS and display.GetLevel() == 0
    assert display.GetWindow() >= 2 * np.abs(expected).max() * 0.999
    table = panel.ui.metricsTableView
    assert [table.item(row, 0).text() for row in range(table.rowCount())] == ["MS-SSIM", "SSIM", "PSNR (dB)", "NRMSE"]


def test_without_torch_the_errors_point_to_setup(panel):
    panel.backend.environment["SLOW_BACKEND_NO_TORCH"] = "1"  # the queries start after the panel's delay
    panel.waitFor(lambda: all("torch" in label.text for label in (
        panel.ui.modelCardLabel, panel.ui.trainableLabel, panel.ui.memoryLabel)))
    for label in (panel.ui.modelCardLabel, panel.ui.trainableLabel, panel.ui.memoryLabel):
        assert "The Python package &#x27;torch&#x27; is not installed." in label.text and "Setup" in label.text
        assert "No module named" not in label.text and "See the log" not in label.text
    reference, output = addVolumes(2)
    panel.ui.compareReferenceSelector.setCurrentNode(reference)
    panel.ui.compareOutputSelector.setCurrentNode(output)
    panel.act(panel.ui.compareButton.click)
    panel.waitFor(lambda: not panel.widget.logic.running)
    assert "is not installed" in panel.ui.statusLabel.text and "Setup" in panel.ui.statusLabel.text


def test_check_dependencies_asks_the_backend_in_the_background(panel):
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
    panel.act(panel.ui.checkDependenciesButton.click)
    assert "Asking" in panel.ui.environmentLabel.text
    panel.waitFor(lambda: "Stand-in GPU" in panel.ui.environmentLabel.text)
    assert "torch 2.8.0+cu128, CUDA 12.8" in panel.ui.environmentLabel.text
    assert panel.cardShows("device: cuda (Stand-in GPU)")


def test_job_folders_are_shown_and_only_unused_ones_of_this_module_are_deleted(panel, tmp_path):
    reference, output = addVolumes(2)
    panel.ui.compareReferenceSelector.setCurrentNode(reference)
    panel.ui.compareOutputSelector.setCurrentNode(output)
    panel.act(panel.ui.compareButton.click)
    compareJob = panel.job
    panel.waitFor(lambda: not compareJob.running)
    panel.startFineTune(addVolumes(1), steps=2)
    fineTuneJob = panel.job
    panel.waitFor(lambda: not fineTuneJob.running)  # its adapter is now the current one
    jobs = panel.widget.logic.jobsFolder
    notAJob = jobs / "notes"
    notAJob.mkdir()
    (notAJob / "keep.txt").write_text("not made by a job")
    outside = modelPackage(tmp_path / "outside")
    (outside / "job.json").write_text("{}")
    (jobs / "link-to-outside").symlink_to(outside)
    assert str(jobs) in panel.ui.jobFoldersLabel.text and "Job folders: 2 (" in panel.ui.jobFoldersLabel.text
    panel.dialogs.answers.append(True)
    panel.act(panel.ui.deleteJobFoldersButton.click)
    (question,) = panel.dialogs.confirmations
    assert question.startswith("Delete 1 job folders") and str(jobs) in question
    assert not compareJob.folder.exists() and fineTuneJob.folder.is_dir()
    assert (notAJob / "keep.txt").is_file() and (outside / "job.json").is_file()
    assert "Job folders: 1 (" in panel.ui.jobFoldersLabel.text


def test_generate_offers_the_chosen_models_tasks_and_fine_tune_only_for_a_synthesis_model(panel, tmp_path):
    ui, parameters = panel.ui, panel.parameters
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
    assert parameters.generateTask == "synthesize" and ui.generateTaskComboBox.enabled  # or reconstruct
    assert ui.fineTuneButton.enabled and panel.shownInputs() == SYNTHESIZE_INPUTS  # no Contrast: no classes
    panel.pastePath(modelPackage(tmp_path / "t1-to-flair", **TRANSLATION))
    assert ui.generateTaskComboBox.enabled and ui.fineTuneButton.enabled  # nothing known about it yet
    panel.waitFor(lambda: panel.cardShows("translates t1 → flair"))
    assert parameters.generateTask == "translate" and ui.generateTaskComboBox.currentText() == "translate"
    assert not ui.generateTaskComboBox.enabled  # its only task
    assert panel.shownInputs() == TRANSLATE_INPUTS
    assert ui.sampleCountSpinBoxLabel.text == "Samples:"
    assert not ui.fineTuneButton.enabled and ui.memoryLabel.text == ""  # no memory plan for what it cannot fine-tune
    assert "t1-to-flair is a translation model" in ui.fineTuneButton.toolTip and "pairs" in ui.fineTuneButton.toolTip
    panel.act(lambda: (ui.modelSelector.setCurrentIndex(0), ui.modelSelector.activated.emit(0)))
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
    assert parameters.generateTask == "synthesize" and ui.sampleCountSpinBoxLabel.text == "Volumes:"
    assert ui.fineTuneButton.enabled and ui.fineTuneButton.toolTip == "Train the adapter; press again to cancel."
    assert panel.shownInputs() == SYNTHESIZE_INPUTS


def test_a_synthesis_model_also_reconstructs_and_a_task_it_does_not_run_is_not_kept(panel):
    ui, parameters = panel.ui, panel.parameters
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
    panel.chooseTask("reconstruct")
    assert parameters.generateTask == "reconstruct" and panel.shownInputs() == RECONSTRUCT_INPUTS
    assert (parameters.acceleration, parameters.undersamplingMask, parameters.coils, parameters.reconstructionMethod,
            parameters.reconstructionSamples) == (4.0, "equispaced", 1, "ddnm", 4)
    assert (ui.accelerationSpinBox.minimum(), ui.accelerationSpinBox.maximum()) == (1.5, 16.0)
    assert [ui.reconstructionMethodComboBox.itemText(i) for i in range(ui.reconstructionMethodComboBox.count)] == [
        "ddnm", "dds", "dps", "cs", "zero-filled"]
    panel.chooseTask("translate")  # not a synthesis model's task: back to its first
    assert parameters.generateTask == "synthesize" and ui.generateTaskComboBox.currentText() == "synthesize"
    assert panel.shownInputs() == SYNTHESIZE_INPUTS


def test_contrast_offers_the_classes_of_the_models_card_and_jobs_get_the_chosen_one(panel, tmp_path):
    ui, parameters = panel.ui, panel.parameters
    (reference,) = addVolumes(1)
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
    assert ui.contrastComboBox.isHidden() and panel.contrasts() == [] and parameters.contrast == ""
    panel.chooseModel(tmp_path / "prior", "classes: t1, t2, pd", **CONTRASTS)
    assert panel.shownInputs() == SYNTHESIZE_INPUTS | {"contrastComboBox"}
    assert panel.contrasts() == ["t1", "t2", "pd"] and parameters.contrast == "t1"  # its first, until one is chosen
    panel.chooseContrast("pd")
    assert parameters.contrast == "pd" and ui.contrastComboBox.currentText() == "pd"
    panel.chooseTask("reconstruct")
    assert "contrastComboBox" in panel.shownInputs()
    panel.chooseTask("synthesize")
    ui.referenceVolumeSelector.setCurrentNode(reference)
    panel.act(ui.generateButton.click)
    job = panel.job
    panel.waitFor(lambda: not job.running)
    assert job.result.succeeded, ui.statusLabel.text
    assert json.loads((job.folder / "job.json").read_text())["args"]["contrast"] == "pd"
    panel.chooseModel(tmp_path / "other-prior", "classes: flair, pd", condition_classes=["flair", "pd"])
    assert panel.contrasts() == ["flair", "pd"] and parameters.contrast == "pd"  # the chosen one, still offered
    panel.chooseModel(tmp_path / "t1-only", "classes: t1", condition_classes=["t1"])
    assert parameters.contrast == "t1" and ui.contrastComboBox.currentText() == "t1"
    panel.act(lambda: (ui.modelSelector.setCurrentIndex(0), ui.modelSelector.activated.emit(0)))
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
    assert ui.contrastComboBox.isHidden() and panel.contrasts() == [] and parameters.contrast == ""
    panel.act(ui.generateButton.click)
    job = panel.job
    panel.waitFor(lambda: not job.running)
    assert "contrast" not in json.loads((job.folder / "job.json").read_text())["args"]


@pytest.mark.parametrize("task", ["translate", "reconstruct"])
def test_a_source_task_runs_in_the_background_and_cancel_stops_it_gracefully(panel, tmp_path, task):
    ui = panel.ui
    (source,) = addVolumes(1)
    if task == "translate":
        panel.chooseTranslationModel(tmp_path / "t1-to-flair")
        ui.samplingStepsSpinBox.setValue(1000)
    else:
        panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
        panel.chooseTask("reconstruct")
        ui.reconstructionSamplesSpinBox.setValue(16)
    ui.sourceVolumeSelector.setCurrentNode(source)
    before = volumeCount()
    panel.act(ui.generateButton.click)
    job = panel.job
    assert job is not None and job.running, ui.statusLabel.text
    assert ui.generateButton.text == "Cancel" and not ui.compareButton.enabled and not ui.fineTuneButton.enabled
    panel.waitFor(lambda: ui.generateProgressBar.value >= 1)
    total = 1000 if task == "translate" else 16 * slow_backend.RECONSTRUCT_STEPS
    assert task in ui.generateProgressBar.format() and f"/{total}" in ui.generateProgressBar.format()
    panel.act(ui.generateButton.click)
    assert ui.generateButton.text == "Cancelling…"
    panel.waitFor(lambda: not job.running)
    noun = {"translate": "Translation", "reconstruct": "Reconstruction"}[task]
    assert job.result.cancelled and f"{noun} was cancelled." in ui.statusLabel.text  # it stopped itself: not killed
    assert volumeCount() == before and not (job.folder / "outputs").exists()
    assert ui.generateButton.text == "Generate" and ui.generateButton.enabled and ui.compareButton.enabled
    assert ui.fineTuneButton.enabled == (task == "reconstruct")  # a synthesis model, or still a translation model


def test_a_translation_and_its_uncertainty_map_land_beside_the_source_and_compare_scores_it(panel, tmp_path):
    ui, parameters = panel.ui, panel.parameters
    source, target = addVolumes(2, OBLIQUE)
    model = panel.chooseTranslationModel(tmp_path / "t1-to-flair")
    ui.sourceVolumeSelector.setCurrentNode(source)
    ui.targetVolumeSelector.setCurrentNode(target)
    ui.sampleCountSpinBox.setValue(2)
    ui.samplingStepsSpinBox.setValue(3)
    panel.act(ui.generateButton.click)
    job = panel.job
    panel.waitFor(lambda: not job.running)
    assert job.result.succeeded, ui.statusLabel.text
    spec = json.loads((job.folder / "job.json").read_text())
    assert spec["command"] == "translate" and spec["args"]["model"] == str(model)
    assert (spec["args"]["source"], spec["args"]["samples"], spec["args"]["steps"]) == ("inputs/source.nii", 2, 3)
    translated, uncertainty = job.result.nodes
    assert (translated.GetName(), uncertainty.GetName()) == ("scan 0 translated", "scan 0 translated std")
    for node in (translated, uncertainty):
        assert node not in (source, target)
        assert node.GetImageData().GetDimensions() == source.GetImageData().GetDimensions()
        np.testing.assert_array_equal(ijkToRas(node), OBLIQUE)
    assert parameters.outputVolume is translated and ui.compareOutputSelector.currentNode() is translated
    assert parameters.compareReferenceVolume is target and ui.compareReferenceSelector.currentNode() is target
    layoutManager = slicer.app.layoutManager()
    red, yellow = (layoutManager.sliceWidget(name).mrmlSliceCompositeNode() for name in ("Red", "Yellow"))
    assert layoutManager.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert red.GetBackgroundVolumeID() == source.GetID() and yellow.GetBackgroundVolumeID() == translated.GetID()
    assert yellow.GetForegroundVolumeID() == uncertainty.GetID() and 0.3 <= yellow.GetForegroundOpacity() < 1
    display = uncertainty.GetDisplayNode()
    assert display.GetColorNodeID() == comparison.UNCERTAINTY_COLORS
    largest = slicer.util.arrayFromVolume(uncertainty).max()
    assert display.GetWindow() == pytest.approx(largest) and display.GetLevel() == pytest.approx(largest / 2)
    panel.act(ui.compareButton.click)
    compareJob = panel.job
    panel.waitFor(lambda: not compareJob.running)
    assert compareJob.result.succeeded and ui.metricsTableView.rowCount() == 4
    evaluated = json.loads((compareJob.folder / "job.json").read_text())["args"]
    assert (evaluated["pred"], evaluated["ref"]) == ("inputs/output.nii", "inputs/reference.nii")
    assert yellow.GetBackgroundVolumeID() == translated.GetID() and red.GetBackgroundVolumeID() == target.GetID()


def test_a_reconstruction_lands_beside_its_source_with_its_zero_filled_image_std_and_metrics(panel, tmp_path):
    ui, parameters = panel.ui, panel.parameters
    source, other = addVolumes(2, OBLIQUE)
    before = slicer.util.arrayFromVolume(source).copy()
    model = panel.chooseModel(tmp_path / "prior", "classes: t1, t2, pd", **CONTRASTS)
    panel.chooseContrast("t2")
    panel.chooseTask("reconstruct")
    ui.compareReferenceSelector.setCurrentNode(other)
    ui.sourceVolumeSelector.setCurrentNode(source)
    ui.accelerationSpinBox.setValue(6.5)
    ui.undersamplingMaskComboBox.setCurrentIndex(2)
    ui.coilsSpinBox.setValue(8)
    ui.reconstructionMethodComboBox.setCurrentIndex(1)
    ui.reconstructionSamplesSpinBox.setValue(2)
    assert (parameters.acceleration, parameters.undersamplingMask, parameters.coils, parameters.reconstructionMethod,
            parameters.reconstructionSamples) == (6.5, "vd", 8, "dds", 2)
    panel.act(ui.generateButton.click)
    job = panel.job
    assert job is not None and job.running, ui.statusLabel.text
    panel.waitFor(lambda: not job.running)
    assert job.result.succeeded, ui.statusLabel.text
    spec = json.loads((job.folder / "job.json").read_text())
    assert spec["command"] == "reconstruct" and spec["options"] == {"device": "auto", "seed": 0}
    assert spec["args"] == {"model": str(model), "source": "inputs/source.nii", "out": "outputs/reconstruction.nii",
                            "acceleration": 6.5, "mask": "vd", "coils": 8, "method": "dds", "samples": 2,
                            "contrast": "t2"}
    reconstruction, zeroFilled, uncertainty, table = job.result.nodes
    assert [n.GetName() for n in (reconstruction, zeroFilled, uncertainty)] == [
        "scan 0 recon R6.5 dds", "scan 0 zero-filled R6.5", "scan 0 recon R6.5 dds std"]
    for node in (reconstruction, zeroFilled, uncertainty):
        assert node not in (source, other)
        assert node.GetImageData().GetDimensions() == source.GetImageData().GetDimensions()
        np.testing.assert_array_equal(ijkToRas(node), OBLIQUE)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(source), before)
    np.testing.assert_array_equal(ijkToRas(source), OBLIQUE)
    assert parameters.outputVolume is reconstruction and ui.compareOutputSelector.currentNode() is reconstruction
    assert parameters.compareReferenceVolume is source and ui.compareReferenceSelector.currentNode() is source
    layoutManager = slicer.app.layoutManager()
    red, yellow = (layoutManager.sliceWidget(name).mrmlSliceCompositeNode() for name in ("Red", "Yellow"))
    assert red.GetBackgroundVolumeID() == source.GetID() and yellow.GetBackgroundVolumeID() == reconstruction.GetID()
    assert yellow.GetForegroundVolumeID() == uncertainty.GetID()
    assert uncertainty.GetDisplayNode().GetColorNodeID() == comparison.UNCERTAINTY_COLORS
    view = ui.metricsTableView
    assert view.tableNode is table and [table.GetColumnName(c) for c in range(3)] == ["Metric", "Reconstruction",
                                                                                       "Zero-filled"]
    shown = {view.item(row, 0).text(): (float(view.item(row, 1).text()), float(view.item(row, 2).text()))
             for row in range(view.rowCount())}
    metrics = slow_backend.RECONSTRUCTION_METRICS
    assert list(shown) == ["SSIM", "PSNR (dB)", "NRMSE"]
    for label, name in (("SSIM", "ssim"), ("PSNR (dB)", "psnr"), ("NRMSE", "nrmse")):
        assert shown[label] == pytest.approx((metrics[name], metrics[f"zero_filled_{name}"]))


def test_a_translation_model_asked_to_synthesize_shows_the_backends_message(panel, tmp_path):
    ui = panel.ui
    (reference,) = addVolumes(1)
    ui.referenceVolumeSelector.setCurrentNode(reference)
    before = volumeCount()
    panel.pastePath(modelPackage(tmp_path / "t1-to-flair", **TRANSLATION))
    assert panel.parameters.generateTask == "synthesize"  # its card is not there yet
    panel.act(ui.generateButton.click)
    job = panel.job
    panel.waitFor(lambda: not job.running)
    assert "t1-to-flair is a translation model, not a synthesis model." in ui.statusLabel.text
    assert volumeCount() == before
    panel.waitFor(lambda: panel.parameters.generateTask == "translate")  # then its card comes, and the task follows


def test_a_conditioned_model_shows_a_field_per_condition_and_synthesize_gets_the_typed_values(panel, latentModel):
    from DiffusionPEFTLib.cli import build_parser
    from DiffusionPEFTLib.commands.info import model_card
    from DiffusionPEFTLib.jobs import job_to_argv, load_job

    ui, parameters = panel.ui, panel.parameters
    (reference,) = addVolumes(1)
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
    assert "conditionsFrame" not in panel.shownInputs() and panel.conditionFields() == {}
    panel.pastePath(latentModel)
    panel.waitFor(lambda: panel.cardShows("conditions: age, ventricular_vol"))
    assert parameters.generateTask == "synthesize" and not ui.generateTaskComboBox.enabled  # its only task
    assert panel.shownInputs() == SYNTHESIZE_INPUTS | {"conditionsFrame"} and ui.fineTuneButton.enabled
    conditions = modelConditions(model_card(latentModel))  # as the real backend's card tells them
    assert [(c.name, c.default, c.range) for c in conditions] == [("age", 0.25, (0.0, 1.0)),
                                                                  ("ventricular_vol", 0.5, (0.0, 1.0))]
    fields = panel.conditionFields()
    assert {name: (field.value, field.minimum(), field.maximum()) for name, field in fields.items()} == {
        c.name: (c.default, *c.range) for c in conditions}
    assert "Ventricular volume" in fields["ventricular_vol"].toolTip
    assert parameters.conditionValues == "age=0.25,ventricular_vol=0.5"
    panel.typeNumber(fields["age"], "0.6")
    panel.typeNumber(fields["ventricular_vol"], "0.3")
    assert parameters.conditionValues == "age=0.6,ventricular_vol=0.3"
    ui.referenceVolumeSelector.setCurrentNode(reference)
    panel.act(ui.generateButton.click)
    job = panel.job
    panel.waitFor(lambda: not job.running)
    assert job.result.succeeded, ui.statusLabel.text
    parser = build_parser()
    argv = job_to_argv(load_job(job.folder / "job.json"), parser)
    assert argv[argv.index("--condition") + 1] == "age=0.6,ventricular_vol=0.3"
    assert parser.parse_args(argv).condition == {"age": 0.6, "ventricular_vol": 0.3}
    panel.act(lambda: (ui.modelSelector.setCurrentIndex(0), ui.modelSelector.activated.emit(0)))
    panel.waitFor(lambda: panel.cardShows("demo-t1-32x40x32"))
    assert "conditionsFrame" not in panel.shownInputs() and panel.conditionFields() == {}
    assert parameters.conditionValues == ""
    panel.act(ui.generateButton.click)
    job = panel.job
    panel.waitFor(lambda: not job.running)
    assert job.result.succeeded and "condition" not in json.loads((job.folder / "job.json").read_text())["args"]


def test_the_memory_line_is_the_real_backends_plan_asked_in_the_background(panel, monkeypatch):
    ui = panel.ui
    panel.backend.environment.update(SLOW_BACKEND_REAL_PLAN="1", DIFFUSIONPEFT_MEMORY_GB="24")  # before the delay
    panel.act(lambda: ui.adapterMethodComboBox.setCurrentIndex(ADAPTER_METHODS.index("lora")))
    panel.act(lambda: ui.batchSizeSpinBox.setValue(2))
    panel.act(ui.checkpointingCheckBox.click)
    assert ui.memoryLabel.text == "checking memory…"
    panel.waitFor(lambda: len(panel.backend.memoryPlans()) == 1)
    for steps in (300, 400):  # not a memory setting: no new plan
        panel.act(lambda: ui.trainingStepsSpinBox.setValue(steps))
        panel.settle(KEY_INTERVAL_S)
    assert ui.memoryLabel.text == "checking memory…"
    monkeypatch.setenv("DIFFUSIONPEFT_MEMORY_GB", "24")
    code, events = run_cli("finetune", SHIPPED_MODEL, "--plan", "--json", "--method", "lora", "--rank", "4",
                           "--targets", "tenvoo", "--batch", "2", "--checkpointing")
    assert code == 0, events.events
    (plan,) = [event["value"] for event in events.of("result")]
    panel.waitFor(lambda: ui.memoryLabel.text != "checking memory…", timeout=180)
    assert ui.memoryLabel.text == formatting.memoryText(plan)
    assert ui.memoryLabel.text.startswith("Fits ") and " + checkpointing at batch 2: about " in ui.memoryLabel.text
    assert "of its 24.00 GiB budget." in ui.memoryLabel.text and ui.useProposedSettingsButton.isHidden()
    (argv,) = panel.backend.memoryPlans()
    assert argv == ["finetune", str(SHIPPED_MODEL), "--plan", "--json", "--method", "lora", "--rank", "4", "--targets",
                    "tenvoo", "--batch", "2", "--precision", "auto", "--checkpointing", "--device", "auto"]


def test_a_fine_tune_that_does_not_fit_gets_the_settings_that_fit_at_a_click(panel, tmp_path):
    from DiffusionPEFTLib.cli import build_parser
    from DiffusionPEFTLib.jobs import job_to_argv, load_job

    ui, parameters = panel.ui, panel.parameters
    panel.pastePath(modelPackage(tmp_path / "big", answerDelay=0.2))
    panel.act(lambda: ui.batchSizeSpinBox.setValue(8))
    panel.act(lambda: ui.precisionComboBox.setCurrentIndex(PRECISIONS.index("fp32")))
    panel.waitFor(lambda: ui.memoryLabel.text.startswith("Does not fit"))
    assert ui.memoryLabel.text == ("Does not fit on this GPU with fp32 at batch 8: about 64.00 GiB, its budget is "
                                   "19.20 GiB. Fits with bf16 + checkpointing at batch 4 (about 11.52 GiB).")
    assert not ui.useProposedSettingsButton.isHidden()
    panel.act(ui.useProposedSettingsButton.click)
    assert (parameters.precision, parameters.checkpointing, parameters.batchSize) == ("bf16", True, 4)
    assert (ui.precisionComboBox.currentText(), ui.checkpointingCheckBox.checked, ui.batchSizeSpinBox.value) == (
        "bf16", True, 4)
    assert ui.useProposedSettingsButton.isHidden() and ui.memoryLabel.text == "checking memory…"
    panel.waitFor(lambda: ui.memoryLabel.text.startswith("Fits"))
    assert ui.memoryLabel.text == "Fits on this GPU with bf16 + checkpointing at batch 4: about 11.52 GiB of its 19.20 GiB budget."
    panel.startFineTune(addVolumes(1), steps=2)
    job = panel.job
    panel.waitFor(lambda: not job.running)
    parser = build_parser()
    args = parser.parse_args(job_to_argv(load_job(job.folder / "job.json"), parser))
    assert (args.precision, args.checkpointing, args.batch) == ("bf16", True, 4)


def test_a_newer_setting_drops_the_memory_plan_under_way_and_its_stale_answer(panel, tmp_path):
    ui = panel.ui
    panel.pastePath(modelPackage(tmp_path / "model", answerDelay=1.0))  # plans take 1 s per volume of the batch
    panel.act(lambda: ui.batchSizeSpinBox.setValue(4))
    panel.waitFor(lambda: len(panel.backend.memoryPlans()) == 1)
    (older,) = [p for p in panel.backend.processes("finetune") if "--plan" in p.args]
    panel.act(lambda: ui.batchSizeSpinBox.setValue(1))
    panel.waitFor(lambda: older.poll() is not None, timeout=RESPONSIVE_S)  # stopped, not left to run
    panel.waitFor(lambda: ui.memoryLabel.text.startswith("Fits"))
    panel.settle(4.0)  # when batch 4's plan would have come
    assert "at batch 1: about 4.80 GiB" in ui.memoryLabel.text
    assert [argv[argv.index("--batch") + 1] for argv in panel.backend.memoryPlans()] == ["4", "1"]
