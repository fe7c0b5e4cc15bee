"""Small real stand-ins for the parts of Slicer that the ``slicer-core`` wheel lacks.

``slicer-core`` gives a real MRML scene, volume and storage nodes, slice logics and ``slicer.util``;
it has no ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``, ``slicer.i18n``,
``slicer.app`` and no PythonQt ``qt`` module. These classes do just enough, for real, to import
``DiffusionPEFT.py``, run its Logic against a real scene and drive its Widget (``qt`` is PySide6
speaking PythonQt, :mod:`pythonqt_standins`). No MagicMock anywhere: a class derived from a mock
silently becomes a mock and every test of it passes.
"""

from __future__ import annotations

import enum
import sys
import tempfile
import types
import typing
from pathlib import Path

from PySide6.QtWidgets import QApplication, QVBoxLayout

import parameter_gui_standin
import pythonqt_standins
import slicer
import slicer.util
import vtk

REPOSITORY = Path(__file__).resolve().parents[2]
MODULE_FOLDER = REPOSITORY / "DiffusionPEFT"


# slicer.i18n ---------------------------------------------------------------------------------------

def tr(text: str) -> str:
    return text


def translate(context: str, text: str) -> str:
    return text


# slicer.parameterNodeWrapper -----------------------------------------------------------------------

class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class Decimals:
    def __init__(self, value: int):
        self.value = value


class SingleStep:
    def __init__(self, value):
        self.value = value


def _splitAnnotated(hint):
    """(base type, annotations) of ``Annotated[T, ...]`` or (T, [])."""
    if typing.get_origin(hint) is typing.Annotated:
        base, *annotations = typing.get_args(hint)
        return base, annotations
    return hint, []


def _isNodeType(base) -> bool:
    return isinstance(base, type) and issubclass(base, slicer.vtkMRMLNode)


class _Parameter:
    """One field stored in a vtkMRMLScriptedModuleNode: a string parameter, or a node reference."""

    def __init__(self, name: str, hint, default):
        self.name = name
        self.type, self.annotations = _splitAnnotated(hint)
        self.default = default if default is not None else self._typeDefault()
        for annotation in self.annotations:
            if isinstance(annotation, Choice) and self.default not in annotation.choices:
                raise ValueError(f"default of {name} is not one of {annotation.choices}")

    @property
    def isNode(self) -> bool:
        return _isNodeType(self.type)

    def _typeDefault(self):
        if _isNodeType(self.type):
            return None
        if issubclass(self.type, enum.Enum):
            return next(iter(self.type))
        return self.type()

    def read(self, node):
        if _isNodeType(self.type):
            return node.GetNodeReference(self.name)
        if self.name not in node.GetParameterNames():
            return self.default
        text = node.GetParameter(self.name)
        if self.type is bool:
            return text == "True"
        if issubclass(self.type, enum.Enum):
            return self.type[text]
        return self.type(text)

    def write(self, node, value) -> None:
        if _isNodeType(self.type):
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
            return
        for annotation in self.annotations:
            if isinstance(annotation, Choice) and value not in annotation.choices:
                raise ValueError(f"{self.name}: {value!r} is not one of {annotation.choices}")
            if isinstance(annotation, WithinRange) and not annotation.minimum <= value <= annotation.maximum:
                raise ValueError(f"{self.name}: {value!r} is outside [{annotation.minimum}, {annotation.maximum}]")
        node.SetParameter(self.name, value.name if isinstance(value, enum.Enum) else str(value))


def parameterNodeWrapper(cls):
    """Typed properties over a scripted module node, like Slicer's decorator, with its GUI binding
    (:mod:`parameter_gui_standin`) and the node's observer methods."""
    hints = typing.get_type_hints(cls, include_extras=True)
    cls.allParameters = {name: _Parameter(name, hint, cls.__dict__.get(name)) for name, hint in hints.items()}
    for name, parameter in cls.allParameters.items():
        setattr(cls, name, property(lambda self, p=parameter: p.read(self.parameterNode),
                                    lambda self, value, p=parameter: p.write(self.parameterNode, value)))

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        self.guiConnections = {}

    cls.__init__ = __init__
    cls.connectGui = parameter_gui_standin.connectGui
    cls.disconnectGui = parameter_gui_standin.disconnectGui
    cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback, priority)
    cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
    return cls


# slicer.ScriptedLoadableModule ---------------------------------------------------------------------

class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = type(self).__name__


class ScriptedLoadableModuleLogic:
    """``getParameterNode`` returns the module's singleton vtkMRMLScriptedModuleNode, as in Slicer."""

    def __init__(self, parent=None):
        self.moduleName = type(self).__name__.removesuffix("Logic")

    def getParameterNode(self):
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            node = scene.AddNode(node)
        return node


class ModulePanel(pythonqt_standins.STANDARD_WIDGETS["QWidget"]):
    """The module's panel in Slicer's module area (qSlicerScriptedLoadableModuleWidget)."""

    def __init__(self):
        super().__init__()
        self.setLayout(QVBoxLayout())
        self.isEntered = False


class ScriptedLoadableModuleWidget:
    """``parent``: the module panel (made here when None); ``layout``: its layout; resources beside the module."""

    def __init__(self, parent=None):
        self.parent = parent if parent is not None else ModulePanel()
        self.layout = self.parent.layout()
        self.moduleName = type(self).__name__.removesuffix("Widget")

    def setup(self) -> None:
        """Slicer adds its "Reload and Test" section here in developer mode."""

    def resourcePath(self, filename: str) -> str:
        return str(MODULE_FOLDER / "Resources" / filename)


class ScriptedLoadableModuleTest:
    def delayDisplay(self, message, msec=0):
        print(message)


# slicer.app ----------------------------------------------------------------------------------------

class SliceView:
    """One slice view of the layout: a real slice logic with its slice and composite nodes."""

    def __init__(self, name: str, orientation: str):
        self._logic = slicer.vtkMRMLSliceLogic()
        self._logic.SetMRMLScene(slicer.mrmlScene)
        self._logic.AddSliceNode(name).SetOrientation(orientation)

    def sliceLogic(self):
        return self._logic

    def mrmlSliceNode(self):
        return self._logic.GetSliceNode()

    def mrmlSliceCompositeNode(self):
        return self._logic.GetSliceCompositeNode()


class LayoutManager:
    """``slicer.app.layoutManager()``: the Red, Yellow and Green views of the current scene in Slicer's
    default planes (axial, sagittal, coronal), made again for each new scene; ``layout`` is the last set."""

    ORIENTATIONS = {"Red": "Axial", "Yellow": "Sagittal", "Green": "Coronal"}

    def __init__(self):
        self.layout = None
        self._scene = None
        self._views: dict[str, SliceView] = {}

    def _currentViews(self) -> dict[str, SliceView]:
        if self._scene is not slicer.mrmlScene:
            self._scene = slicer.mrmlScene
            slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self._scene)
            self._views = {name: SliceView(name, plane) for name, plane in self.ORIENTATIONS.items()}
        return self._views

    def setLayout(self, layout: int) -> None:
        self.layout = layout

    def sliceWidget(self, name: str) -> SliceView:
        return self._currentViews()[name]

    def mrmlSliceLogics(self):
        logics = vtk.vtkCollection()
        for view in self._currentViews().values():
            logics.AddItem(view.sliceLogic())
        return logics


class StandinApplication:
    """What the module asks of ``slicer.app``: a temporary path, event pumping, signals, the layout manager,
    the override cursor; not in testing mode (dialogs are shown, i.e. reach :class:`Dialogs`)."""

    applicationName = "Slicer"

    def __init__(self):
        self.temporaryPath = tempfile.mkdtemp(prefix="slicer-standin-")
        self.connections: list[tuple[str, typing.Callable]] = []
        self.layoutManagerStandin = LayoutManager()

    def processEvents(self) -> None:
        """Pumps Qt events when the tests made a QApplication."""
        application = QApplication.instance()
        if application is not None:
            application.processEvents()

    def connect(self, signal: str, slot) -> None:
        self.connections.append((signal, slot))

    def testingEnabled(self) -> bool:
        return False

    def layoutManager(self) -> LayoutManager:
        return self.layoutManagerStandin

    def setOverrideCursor(self, cursor) -> None:
        """No cursor offscreen."""

    def restoreOverrideCursor(self) -> None:
        """No cursor offscreen."""


class Dialogs:
    """``slicer.util``'s message boxes: records each text; confirmations take the next of ``answers``
    (True = OK), and fail the test when no answer was planned."""

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.confirmations: list[str] = []
        self.errors: list[str] = []

    def confirmOkCancelDisplay(self, text, windowTitle=None, parent=None, **kwargs) -> bool:
        self.confirmations.append(text)
        assert self.answers, f"unexpected confirmation: {text}"
        return self.answers.pop(0)

    def errorDisplay(self, text, windowTitle=None, parent=None, standardButtons=None, **kwargs) -> None:
        self.errors.append(text)

    def install(self, monkeypatch) -> "Dialogs":
        for name in ("confirmOkCancelDisplay", "errorDisplay"):
            monkeypatch.setattr(slicer.util, name, getattr(self, name))
        return self


class SampleDataLogic:
    """Records what ``registerSampleData`` offers to the Sample Data module."""

    registered: typing.ClassVar[list[dict]] = []

    @classmethod
    def registerCustomSampleDataSource(cls, **source) -> None:
        cls.registered.append(source)


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def install() -> None:
    """Register the stand-ins (only those Slicer-core lacks), a fresh scene, and the module folder on sys.path."""
    stand_ins = {
        "slicer.i18n": _module("slicer.i18n", tr=tr, translate=translate),
        "slicer.parameterNodeWrapper": _module(
            "slicer.parameterNodeWrapper", parameterNodeWrapper=parameterNodeWrapper, Choice=Choice,
            WithinRange=WithinRange, Decimals=Decimals, SingleStep=SingleStep),
        "slicer.ScriptedLoadableModule": _module(
            "slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
            ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
            ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
            ScriptedLoadableModuleTest=ScriptedLoadableModuleTest),
        "qt": pythonqt_standins.qtModule(),
        "SampleData": _module("SampleData", SampleDataLogic=SampleDataLogic),
    }
    for name, module in stand_ins.items():
        sys.modules.setdefault(name, module)
        if name.startswith("slicer."):
            setattr(slicer, name.split(".", 1)[1], sys.modules[name])
    if getattr(slicer, "app", None) is None:
        slicer.app = StandinApplication()
    slicer.mrmlScene = slicer.vtkMRMLScene()
    if str(MODULE_FOLDER) not in sys.path:
        sys.path.insert(0, str(MODULE_FOLDER))


def freshScene():
    """Replace ``slicer.mrmlScene`` with a new empty scene and return it."""
    slicer.mrmlScene = slicer.vtkMRMLScene()
    return slicer.mrmlScene

