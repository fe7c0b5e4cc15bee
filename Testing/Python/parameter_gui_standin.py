"""Two-way binding of parameter-node fields and panel widgets, as Slicer's ``connectGui`` does it.

Slicer (``parameterNodeWrapper/wrapper.py`` and ``guiConnectors.py``) picks a connector by the exact
widget class and the field type, writes each field into its widget at once (without blocking the
widget's signals: a path field fires ``currentPathChanged`` with "." for an empty Path), writes a
widget's value into its field on each change, and rewrites every widget when the node is modified.
"""

from __future__ import annotations

import pathlib

import vtk

SLICER_PARAMETER_NAME = "SlicerParameterName"


class Connector:
    """One widget ↔ one field: ``signal`` tells a change, ``read``/``write`` convert the value."""

    def __init__(self, widget, parameter):
        self.widget = widget
        kind = type(widget).__name__
        annotations = {type(a).__name__: a for a in parameter.annotations}
        if "WithinRange" in annotations and kind in ("QSpinBox", "QDoubleSpinBox"):
            widget.setRange(annotations["WithinRange"].minimum, annotations["WithinRange"].maximum)
        if "Decimals" in annotations:
            widget.setDecimals(annotations["Decimals"].value)
        if "SingleStep" in annotations:
            widget.setSingleStep(annotations["SingleStep"].value)
        if kind == "QComboBox" and "Choice" in annotations:
            choices = annotations["Choice"].choices
            widget.clear()
            widget.addItems([str(c) for c in choices])
            self.signal, self.read = widget.currentIndexChanged, lambda: choices[widget.currentIndex]
            self.write = lambda value: widget.setCurrentIndex(choices.index(value))
        elif kind == "QCheckBox" and parameter.type is bool:
            self.signal, self.read, self.write = widget.toggled, lambda: widget.checked, widget.setChecked
        elif kind in ("QSpinBox", "QDoubleSpinBox") and parameter.type in (int, float):
            self.signal, self.read, self.write = widget.valueChanged, lambda: widget.value, widget.setValue
        elif kind == "ctkPathLineEdit" and parameter.type is pathlib.Path:
            self.signal, self.read = widget.currentPathChanged, lambda: pathlib.Path(widget.currentPath)
            self.write = lambda value: widget.setCurrentPath(str(value))
        elif kind == "qMRMLNodeComboBox" and parameter.isNode:
            self.signal, self.read, self.write = widget.currentNodeChanged, widget.currentNode, widget.setCurrentNode
        else:
            raise RuntimeError(f"Unable to create GUI connector from {parameter.type} to widget type {kind}")


def connectGui(wrapper, gui) -> int:
    """Bind the widgets of ``gui`` (an object whose attributes are widgets) that name a field; return a tag."""
    widgets = {w.property(SLICER_PARAMETER_NAME): w for w in vars(gui).values()
               if hasattr(w, "property") and w.property(SLICER_PARAMETER_NAME)}
    connectors = {name: Connector(widget, wrapper.allParameters[name]) for name, widget in widgets.items()}
    state = {"updating": False}

    def toGui(*_):
        if state["updating"]:
            return
        state["updating"] = True
        try:
            for name, connector in connectors.items():
                connector.write(getattr(wrapper, name))
        finally:
            state["updating"] = False

    def fromGui(name, connector):
        def changed(*_):
            if not state["updating"]:
                setattr(wrapper, name, connector.read())
        return changed

    for name, connector in connectors.items():
        connector.write(getattr(wrapper, name))
        connector.slot = fromGui(name, connector)
        connector.signal.connect(connector.slot)
    tag = wrapper.parameterNode.AddObserver(vtk.vtkCommand.ModifiedEvent, toGui)
    wrapper.guiConnections[tag] = connectors
    return tag


def disconnectGui(wrapper, tag: int) -> None:
    for connector in wrapper.guiConnections.pop(tag).values():
        connector.signal.disconnect(connector.slot)
    wrapper.parameterNode.RemoveObserver(tag)
