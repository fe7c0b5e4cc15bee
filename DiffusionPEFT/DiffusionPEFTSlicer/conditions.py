"""The numbers a conditioned model takes (an imported latent bundle: age, ventricular_vol, …), read from its card
(``diffusion-peft info --json``: ``latent.conditions``, as the import recorded them in model.json), and their
values as the backend's ``--condition`` text ``age=0.6,ventricular_vol=0.3`` (how the parameter node keeps them).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Condition:
    """``name`` as in ``--condition name=value``; ``label``: the bundle's words for it ("" if none); ``default``:
    the value the model takes when none is given; ``range``: (low, high) it was trained on, None when unknown."""

    name: str
    label: str
    default: float
    range: tuple[float, float] | None

    def admits(self, value: float) -> bool:
        return self.range is None or self.range[0] <= value <= self.range[1]


def modelConditions(card: dict | None) -> list[Condition]:
    """The conditions of the carded model, in the order of its condition vector; none while its card is unknown
    or for a model without any."""
    entries = ((card or {}).get("latent") or {}).get("conditions") or []
    return [Condition(entry["name"], entry.get("label") or "", float(entry["default"]),
                      tuple(entry["range"]) if entry.get("range") is not None else None) for entry in entries]


def conditionText(values: dict[str, float]) -> str:
    """{"age": 0.6, "ventricular_vol": 0.3} → ``age=0.6,ventricular_vol=0.3``."""
    return ",".join(f"{name}={float(value)!r}" for name, value in values.items())


def parseConditionText(text: str) -> dict[str, float]:
    """The inverse of :func:`conditionText`; pairs that are not ``name=number`` are left out."""
    values = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            continue
    return values


def chosenValues(conditions: list[Condition], text: str) -> dict[str, float]:
    """A value for every condition: the one in ``text`` when it is in the condition's range, else its default."""
    given = parseConditionText(text)
    return {c.name: given[c.name] if c.name in given and c.admits(given[c.name]) else c.default for c in conditions}
