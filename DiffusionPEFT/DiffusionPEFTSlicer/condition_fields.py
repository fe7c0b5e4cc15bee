"""Generate's fields for a conditioned model: one number field per condition (label: its name; limits: the range
it was trained on, when known; starting at the chosen value), in the form layout of a container of the .ui."""

from __future__ import annotations

from typing import Callable

import qt

from .conditions import Condition

DECIMALS = 4
UNBOUNDED = 1e6  # the limits of a condition whose range the bundle did not record (stepped by 0.01)
STEPS_PER_RANGE = 100


class ConditionFields:
    """``onEdited(values)`` gets every field's value by name after the user changed one."""

    def __init__(self, container, onEdited: Callable[[dict[str, float]], None]):
        self._form = container.layout()
        self._onEdited = onEdited
        self._conditions: list[Condition] = []
        self._fields: dict[str, object] = {}

    def show(self, conditions: list[Condition], values: dict[str, float]) -> None:
        """Fields for ``conditions`` (made again only when they differ from the shown ones) set to ``values``; a
        field that holds its value already is left alone (the user may be typing in it)."""
        if conditions != self._conditions:
            self._rebuild(conditions)
        for name, field in self._fields.items():
            if field.value != values[name]:
                field.blockSignals(True)
                field.setValue(values[name])
                field.blockSignals(False)

    def values(self) -> dict[str, float]:
        return {name: field.value for name, field in self._fields.items()}

    def _rebuild(self, conditions: list[Condition]) -> None:
        while self._form.rowCount():
            self._form.removeRow(0)
        self._conditions, self._fields = list(conditions), {}
        for condition in conditions:
            field = qt.QDoubleSpinBox()
            low, high = condition.range or (-UNBOUNDED, UNBOUNDED)
            field.setDecimals(DECIMALS)
            field.setRange(low, high)
            field.setSingleStep((high - low) / STEPS_PER_RANGE if condition.range else 0.01)
            field.toolTip = _toolTip(condition)
            field.connect("valueChanged(double)", lambda value: self._onEdited(self.values()))
            self._form.addRow(f"{condition.name}:", field)
            self._fields[condition.name] = field


def _toolTip(condition: Condition) -> str:
    """``Ventricular volume: 0 to 1 (the range the model was trained on); default 0.5.``"""
    text = f"{condition.label or condition.name}: "
    if condition.range:
        text += f"{condition.range[0]:g} to {condition.range[1]:g} (the range the model was trained on); "
    return text + f"default {condition.default:g}."
