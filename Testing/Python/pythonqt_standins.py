"""A ``qt`` module for the tests: PySide6 classes that speak PythonQt, so the module's Widget runs unchanged.

PythonQt (Slicer's Qt binding) reads and writes Qt properties as attributes (``label.text = "…"``,
``button.enabled``, ``combo.count``), connects by signature (``button.connect("clicked(bool)", slot)``)
and names widgets by ``objectName`` (``widget.name``, used by ``slicer.util.childWidgetVariables``).
:func:`pythonQtStyle` adds exactly that to a PySide6 class; :class:`QUiLoader` builds a .ui from such
classes. QSettings and QFileDialog are in-memory stand-ins so no test touches the user's settings or
opens a dialog.
"""

from __future__ import annotations

import types
import typing

from PySide6 import QtCore, QtUiTools, QtWidgets

# Qt properties the module's code reads or writes as attributes.
ATTRIBUTE_PROPERTIES = ("text", "enabled", "count", "currentIndex", "value", "checked", "toolTip")


def _connect(self, signature: str, slot) -> None:
    """PythonQt's ``connect("valueChanged(int)", slot)``."""
    getattr(self, signature.split("(", 1)[0]).connect(slot)


def _attributeProperty(name: str) -> property:
    return property(lambda self: self.property(name), lambda self, value: self.setProperty(name, value))


def pythonQtStyle(cls):
    """Class decorator: PythonQt's connect, ``name`` and attribute access to the Qt properties above."""
    cls.connect = _connect
    cls.name = property(lambda self: self.objectName())
    metaObject = cls.staticMetaObject
    for name in ATTRIBUTE_PROPERTIES:
        if metaObject.indexOfProperty(name) >= 0 and name not in cls.__dict__:
            setattr(cls, name, _attributeProperty(name))
    return cls


def _styled(base):
    return pythonQtStyle(type(base.__name__, (base,), {"__module__": __name__}))


STANDARD_WIDGETS = {name: _styled(getattr(QtWidgets, name)) for name in (
    "QWidget", "QFrame", "QLabel", "QPushButton", "QCheckBox", "QComboBox", "QSpinBox", "QDoubleSpinBox", "QLineEdit",
    "QProgressBar", "QPlainTextEdit")}
QTimer = _styled(QtCore.QTimer)


class QUiLoader(QtUiTools.QUiLoader):
    """Builds every widget of a .ui from the PythonQt-style classes (standard ones and the CTK/MRML
    look-alikes of ``panel_shims``); other classes fall back to PySide6's."""

    def __init__(self, parent=None):
        super().__init__(parent)
        from panel_shims import SHIMS

        self._classes = {**STANDARD_WIDGETS, **{cls.__name__: cls for cls in SHIMS}}

    def createWidget(self, className, parent=None, name=""):
        cls = self._classes.get(className)
        if cls is None:
            return super().createWidget(className, parent, name)
        widget = cls(parent)
        widget.setObjectName(name)
        return widget


class QSettings:
    """In-memory settings shared by all instances (``value(key, default)``, ``setValue``)."""

    store: typing.ClassVar[dict] = {}

    def value(self, key, default=None):
        return self.store.get(key, default)

    def setValue(self, key, value) -> None:
        self.store[key] = value


class QFileDialog:
    """Answers file dialogs from ``answers`` (a test fills it; "" = the user cancelled) and records each
    caption in ``asked``. PythonQt returns the chosen path as a string."""

    answers: typing.ClassVar[list[str]] = []
    asked: typing.ClassVar[list[str]] = []

    @classmethod
    def _answer(cls, caption: str) -> str:
        cls.asked.append(caption)
        return cls.answers.pop(0) if cls.answers else ""

    @classmethod
    def getExistingDirectory(cls, parent=None, caption="", *arguments) -> str:
        return cls._answer(caption)

    @classmethod
    def getOpenFileName(cls, parent=None, caption="", *arguments) -> str:
        return cls._answer(caption)


def qtModule() -> types.ModuleType:
    """The ``qt`` module as the Widget sees it in Slicer."""
    module = types.ModuleType("qt")
    module.__dict__.update(STANDARD_WIDGETS)
    module.__dict__.update(QTimer=QTimer, QUiLoader=QUiLoader, QSettings=QSettings, QFileDialog=QFileDialog,
                           QFile=QtCore.QFile, Qt=QtCore.Qt, QApplication=QtWidgets.QApplication)
    return module
