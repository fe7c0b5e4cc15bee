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
    assert set(boundWidgets) == set(DiffusionPEFTParameterNode.allParameters)


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
    """Renders the panel; DIFFUSIONPEFT_WRITE_DOCS=1 also refreshes docs/images/panel.png."""
    from PySide6.QtCore import QSize
    from PySide6.QtWidgets import QComboBox, QLabel, QProgressBar, QTableWidgetItem, QWidget

    def child(cls, name):
        return panel.findChild(cls, name)

    for name, items in (("modelSelector", ["brain-t1-64mm (shipped)"]), ("deviceComboBox", ["auto"]),
                        ("adapterMethodComboBox", ["tenvoo-l"]), ("adapterTargetsComboBox", ["tenvoo"]),
                        ("trainingVolumesSelector", ["t1_001, t1_002, t1_003"]), ("referenceVolumeSelector", ["t1_001"]),
                        ("outputVolumeSelector", ["t1_001 synthesized"]), ("compareReferenceSelector", ["t1_001"]),
                        ("compareOutputSelector", ["t1_001 synthesized"]), ("generateTaskComboBox", ["synthesize"]),
                        ("samplerComboBox", ["ddim"])):
        child(QComboBox, name).addItems(items)
    child(QWidget, "modelPathLineEdit").setProperty("currentPath", "Resources/Models/brain-t1-64mm")
    child(QWidget, "adapterPathLineEdit").setProperty("currentPath", "jobs/20260301-finetune/adapter")
    child(QWidget, "userModelsFolderButton").setProperty("directory", "~/DiffusionPEFT/models")
    child(QLabel, "modelCardLabel").setText("<b>brain-t1-64mm</b><br>166.7 M parameters, 667 MB<br>"
                                            "grid 64×64×64 voxels at 2×2×2 mm<br>device: cuda (NVIDIA RTX A5000); "
                                            "torch 2.4.1, CUDA 12.1")
    panel.findChild(QWidget, "fineTuneButton").setText("Cancel")
    progress = child(QProgressBar, "fineTuneProgressBar")
    progress.setValue(30)
    progress.setFormat("%p% — finetune 120/400 — loss 0.031 — 3 min 20 s left")
    plot = child(QWidget, "lossPlotWidget")
    plot.points = [(step, 0.03 + 0.25 * 0.97 ** step + 0.004 * ((step * 7919) % 13) / 13) for step in range(121)]
    table = child(QWidget, "metricsTableView")
    table.setColumnCount(2)
    table.setHorizontalHeaderLabels(["Metric", "Value"])
    table.setRowCount(4)
    for row, (metric, value) in enumerate((("MS-SSIM", "0.912"), ("SSIM", "0.874"), ("PSNR (dB)", "29.8"),
                                           ("NRMSE", "0.081"))):
        table.setItem(row, 0, QTableWidgetItem(metric))
        table.setItem(row, 1, QTableWidgetItem(value))
    table.horizontalHeader().setStretchLastSection(True)
    child(QLabel, "statusLabel").setText("Fine-tuning… job folder: jobs/20260301-finetune")
    panel.resize(QSize(460, panel.sizeHint().height()))
    picture = PANEL_PICTURE if os.environ.get("DIFFUSIONPEFT_WRITE_DOCS") == "1" else tmp_path / "panel.png"
    picture.parent.mkdir(parents=True, exist_ok=True)
    assert panel.grab().save(str(picture))
    assert picture.stat().st_size > 20_000


def test_adapter_choices_equal_the_backend_registry():
    import DiffusionPEFT
    from DiffusionPEFTLib.adapters import METHODS, PRESETS

    assert sorted(DiffusionPEFT.ADAPTER_METHODS) == sorted(METHODS)
    assert DiffusionPEFT.ADAPTER_TARGETS == list(PRESETS)
