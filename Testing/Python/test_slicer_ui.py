"""The panel's .ui against the module code and the parameter node, loaded with PySide6 offscreen.

Checks that the .ui loads, that every ``self.ui.<name>`` the code touches exists, that the
``SlicerParameterName`` bindings and the parameter-node fields match one to one with widget types
Slicer's parameterNodeWrapper can connect, and renders docs/images/panel.png.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import pathlib  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import xml.etree.ElementTree as ElementTree  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import slicer_standins  # noqa: E402

slicer_standins.install()

import slicer  # noqa: E402
from DiffusionPEFT import DiffusionPEFTParameterNode  # noqa: E402

UI_FILE = slicer_standins.MODULE_FOLDER / "Resources" / "UI" / "DiffusionPEFT.ui"
MODULE_CODE = [slicer_standins.MODULE_FOLDER / "DiffusionPEFT.py",
               *sorted((slicer_standins.MODULE_FOLDER / "DiffusionPEFTSlicer").glob("*.py"))]
PANEL_PICTURE = slicer_standins.REPOSITORY / "docs" / "images" / "panel.png"

# Which widget classes Slicer's parameterNodeWrapper connects to which field types (guiConnectors.py).
CONNECTABLE = {
    "QCheckBox": {bool}, "QPushButton": {bool}, "QSpinBox": {int}, "QSlider": {int},
    "QDoubleSpinBox": {float}, "ctkSliderWidget": {float}, "QComboBox": {str, int, float, bool},
    "QLineEdit": {str}, "QTextEdit": {str}, "ctkPathLineEdit": {pathlib.Path}, "ctkDirectoryButton": {pathlib.Path},
}
NODE_SELECTORS = {"qMRMLNodeComboBox", "qMRMLSubjectHierarchyTreeView"}

# The shipped demo model (Resources/Models/demo-t1-32x40x32), as `diffusion-peft info --json` and
# `pretrain` (scripts/build_demo_model.sh) describe it, on the CPU build the picture was made with.
DEMO_MODEL = "demo-t1-32x40x32"
DEMO_CARD = {"path": f"Resources/Models/{DEMO_MODEL}", "parameters": 2_920_289, "size_mb": 11.7,
             "grid": {"shape": [32, 40, 32], "spacing_mm": [6.0, 6.0, 6.0]}}
DEMO_ENVIRONMENT = {"torch": "2.13.0+cpu", "cuda": None, "cudaAvailable": False, "gpu": None}
DEMO_ARCHITECTURE = {"spatial_dims": 3, "in_channels": 1, "out_channels": 1, "channels": [32, 64, 64],
                     "attention_levels": [False, False, True], "num_res_blocks": 1, "num_head_channels": [0, 0, 64],
                     "norm_num_groups": 32, "use_flash_attention": True}


@pytest.fixture(scope="module")
def uiTree():
    return ElementTree.parse(UI_FILE).getroot()


@pytest.fixture(scope="module")
def boundWidgets(uiTree):
    """SlicerParameterName → (widget class, widget element)."""
    bound = {}
    for element in uiTree.iter("widget"):
        for prop in element.findall("property[@name='SlicerParameterName']"):
            name = prop.find("string").text
            assert name not in bound, f"{name} is bound twice"
            bound[name] = (element.get("class"), element)
    return bound


@pytest.fixture(scope="module")
def application():
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication([])


@pytest.fixture(scope="module")
def panel(application):
    from panel_shims import SHIMS
    from PySide6.QtCore import QFile
    from PySide6.QtUiTools import QUiLoader

    loader = QUiLoader()
    for shim in SHIMS:
        loader.registerCustomWidget(shim)
    file = QFile(str(UI_FILE))
    assert file.open(QFile.ReadOnly)
    widget = loader.load(file)
    file.close()
    assert widget is not None, loader.errorString()
    return widget


def touchedNames() -> set[str]:
    return {name for path in MODULE_CODE for name in re.findall(r"self\.ui\.(\w+)", path.read_text())}


def test_every_widget_the_code_touches_exists(panel):
    from PySide6.QtWidgets import QWidget

    names = touchedNames()
    assert len(names) >= 15
    missing = sorted(name for name in names if panel.findChild(QWidget, name) is None)
    assert not missing, f"the module uses widgets the .ui lacks: {missing}"


def test_bindings_and_parameter_fields_match_one_to_one(boundWidgets):
    """But for the fields the panel keeps in step itself (their widgets come from the model's card)."""
    from DiffusionPEFTSlicer.parameter_node import PANEL_SYNCED_PARAMETERS

    assert PANEL_SYNCED_PARAMETERS == ("contrast", "conditionValues")
    assert all(DiffusionPEFTParameterNode.allParameters[name].type is str for name in PANEL_SYNCED_PARAMETERS)
    assert set(boundWidgets) == set(DiffusionPEFTParameterNode.allParameters) - set(PANEL_SYNCED_PARAMETERS)


def test_every_generate_row_the_panel_shows_has_its_widget_and_label(panel):
    from DiffusionPEFTSlicer.model_tasks import GENERATE_TASKS
    from DiffusionPEFTSlicer.widget import TASK_INPUTS
    from PySide6.QtWidgets import QWidget

    rows = [*TASK_INPUTS, "contrastComboBox", "conditionsFrame"]
    assert {task for tasks in TASK_INPUTS.values() for task in tasks} == set(GENERATE_TASKS)
    missing = [name for row in rows for name in (row, f"{row}Label") if panel.findChild(QWidget, name) is None]
    assert not missing, f"the .ui lacks these Generate rows: {missing}"


def test_every_binding_is_a_widget_type_slicer_can_connect(boundWidgets):
    for name, (widgetClass, element) in boundWidgets.items():
        parameter = DiffusionPEFTParameterNode.allParameters[name]
        if isinstance(parameter.type, type) and issubclass(parameter.type, slicer.vtkMRMLNode):
            assert widgetClass in NODE_SELECTORS, name
            nodeTypes = [s.text for s in element.findall("property[@name='nodeTypes']/stringlist/string")]
            assert nodeTypes == [parameter.type.__name__], name
            continue
        assert parameter.type in CONNECTABLE.get(widgetClass, set()), f"{name}: {widgetClass} ↔ {parameter.type}"
        if widgetClass == "QComboBox":
            assert any(isinstance(a, slicer_standins.Choice) for a in parameter.annotations), f"{name} needs Choice"


def test_spin_box_ranges_equal_the_parameter_ranges(boundWidgets):
    for name, (widgetClass, element) in boundWidgets.items():
        if widgetClass not in ("QSpinBox", "QDoubleSpinBox"):
            continue
        (limits,) = [a for a in DiffusionPEFTParameterNode.allParameters[name].annotations
                     if isinstance(a, slicer_standins.WithinRange)]
        shown = [float(element.find(f"property[@name='{key}']/").text) for key in ("minimum", "maximum")]
        assert shown == [limits.minimum, limits.maximum], name


def test_custom_widgets_are_declared_with_a_qt_base(uiTree):
    declared = {c.find("class").text: c.find("extends").text for c in uiTree.iter("customwidget")}
    used = {w.get("class") for w in uiTree.iter("widget")}
    assert {c for c in used if c.startswith(("ctk", "qMRML"))} <= set(declared)
    assert all(base.startswith(("Q", "qMRML")) for base in declared.values())


def test_log_view_is_capped(panel):
    from PySide6.QtWidgets import QPlainTextEdit

    assert 0 < panel.findChild(QPlainTextEdit, "logTextEdit").maximumBlockCount() <= 10000


def test_module_code_is_qt6_safe_and_never_imports_torch():
    for path in MODULE_CODE:
        text = path.read_text()
        assert not re.search(r"QRegExp|QTextCodec|import torch|from torch", text), path
    probe = ("import sys, slicer_standins; slicer_standins.install(); import DiffusionPEFT; "
             "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], cwd=pathlib.Path(__file__).parent).returncode == 0


def test_panel_picture_is_rendered(panel, tmp_path):
    """Renders the panel mid-fine-tune with true values: the shipped demo model's card, the trainable share
    planned on its architecture, its memory plan on a CPU with a 16 GiB budget, and metrics of two simulated
    subjects. DIFFUSIONPEFT_WRITE_DOCS=1 also refreshes docs/images/panel.png."""
    from conftest import run_cli
    from DiffusionPEFTLib.adapters import plan_adapter
    from DiffusionPEFTLib.metrics import compare_volumes
    from DiffusionPEFTLib.simulate import simulate_subject
    from DiffusionPEFTSlicer import comparison, formatting
    from PySide6.QtCore import QSize
    from PySide6.QtWidgets import QComboBox, QLabel, QProgressBar, QSpinBox, QTableWidgetItem, QWidget

    def child(cls, name):
        return panel.findChild(cls, name)

    counts = plan_adapter(DEMO_ARCHITECTURE, "tenvoo-l", "tenvoo", rank=4).counts.as_dict()
    assert counts["base"] == DEMO_CARD["parameters"]
    code, events = run_cli("finetune", slicer_standins.REPOSITORY / DEMO_CARD["path"], "--plan", "--json", "--device",
                           "cpu", "--memory-budget-gb", "16")
    assert code == 0, events.events
    (memoryPlan,) = [event["value"] for event in events.of("result")]
    reference, output = (simulate_subject(seed, contrasts=("flair",)).images["flair"].data for seed in (0, 1))
    metrics = compare_volumes(output, reference)
    for name, items in (("modelSelector", [f"{DEMO_MODEL} (shipped)"]), ("deviceComboBox", ["auto"]),
                        ("adapterMethodComboBox", ["tenvoo-l"]), ("adapterTargetsComboBox", ["tenvoo"]),
                        ("trainingVolumesSelector", ["sub-002 flair, sub-003 flair, sub-004 flair"]),
                        ("referenceVolumeSelector", ["sub-000 flair"]), ("outputVolumeSelector", ["None"]),
                        ("compareReferenceSelector", ["sub-000 flair"]), ("compareOutputSelector", ["sub-001 flair"]),
                        ("generateTaskComboBox", ["synthesize"]), ("samplerComboBox", ["ddim"]),
                        ("precisionComboBox", ["auto"])):
        child(QComboBox, name).addItems(items)
    child(QWidget, "modelPathLineEdit").setProperty("currentPath", DEMO_CARD["path"])
    child(QWidget, "userModelsFolderButton").setProperty("directory", "~/DiffusionPEFT/models")
    child(QLabel, "modelCardLabel").setText(formatting.modelCardText(DEMO_CARD, DEMO_ENVIRONMENT))
    child(QLabel, "trainableLabel").setText(formatting.trainableText(counts))
    child(QLabel, "memoryLabel").setText(formatting.memoryText(memoryPlan))
    child(QSpinBox, "trainingStepsSpinBox").setValue(150)
    child(QWidget, "fineTuneButton").setText("Cancel")
    for name in ("generateButton", "compareButton"):
        child(QWidget, name).setEnabled(False)  # as while a job runs
    progress = child(QProgressBar, "fineTuneProgressBar")
    progress.setValue(40)
    progress.setFormat(formatting.progressText({"stage": "finetune", "step": 60, "total": 150, "loss": 0.12,
                                                "eta_s": 95}))
    noise = np.random.default_rng(0).random(60)  # an illustrative loss curve, like the progress text
    child(QWidget, "lossPlotWidget").points = [(step, 0.11 + 0.3 * 0.95 ** step + 0.02 * noise[step - 1])
                                               for step in range(1, 61)]
    table = child(QWidget, "metricsTableView")
    table.setColumnCount(2)
    table.setHorizontalHeaderLabels(["Metric", "Value"])
    table.setRowCount(len(comparison.METRIC_LABELS))
    for row, (metric, label) in enumerate(comparison.METRIC_LABELS.items()):
        table.setItem(row, 0, QTableWidgetItem(label))
        table.setItem(row, 1, QTableWidgetItem(f"{metrics[metric]:.4g}"))
    table.horizontalHeader().setStretchLastSection(True)
    panel.resize(QSize(460, panel.sizeHint().height()))
    picture = PANEL_PICTURE if os.environ.get("DIFFUSIONPEFT_WRITE_DOCS") == "1" else tmp_path / "panel.png"
    picture.parent.mkdir(parents=True, exist_ok=True)
    assert panel.grab().save(str(picture))
    assert picture.stat().st_size > 20_000


def test_adapter_choices_equal_the_backend_registry():
    from DiffusionPEFTLib.adapters import METHODS, PRESETS
    from DiffusionPEFTSlicer import parameter_node
    from DiffusionPEFTSlicer.backend_queries import SELECTION_METHODS

    assert sorted(parameter_node.ADAPTER_METHODS) == sorted(METHODS)
    assert sorted(SELECTION_METHODS) == sorted(name for name, method in METHODS.items() if not method.wraps_layers)
    assert parameter_node.ADAPTER_TARGETS == list(PRESETS)


def test_precision_choices_equal_the_backends():
    from DiffusionPEFTLib.training.precision import PRECISIONS
    from DiffusionPEFTSlicer import parameter_node

    assert parameter_node.PRECISIONS == list(PRECISIONS)


def test_reconstruction_choices_equal_the_backends():
    reconstruct = pytest.importorskip("DiffusionPEFTLib.commands.reconstruct")
    from DiffusionPEFTLib.reconstruction import RECONSTRUCTION_METHODS
    from DiffusionPEFTLib.reconstruction.masks import MASK_KINDS
    from DiffusionPEFTSlicer import parameter_node

    assert reconstruct.NAME == "reconstruct"
    assert parameter_node.UNDERSAMPLING_MASKS == list(MASK_KINDS)
    assert parameter_node.RECONSTRUCTION_METHODS == list(RECONSTRUCTION_METHODS)
