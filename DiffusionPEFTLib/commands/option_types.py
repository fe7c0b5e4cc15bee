"""argparse ``type=`` callables that refuse out-of-range values with a message naming the rule.

argparse reports them as "argument --batch: must be a whole number ≥ 1 (got 0)", which the CLI turns
into an ``input`` error event, before any work starts.
"""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type) -> float | int:
    try:
        return kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {noun} (got {text!r})") from None


def int_at_least(low: int):
    """Whole numbers ≥ ``low``."""

    def parse(text: str) -> int:
        value = _number(text, int)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be a whole number ≥ {low} (got {value})")
        return value

    parse.__name__ = f"int ≥ {low}"
    return parse


def float_in(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False,
             allow_inf: bool = False):
    """Finite numbers in [low, high] (``low_open``/``high_open`` exclude the ends; ``allow_inf``: also +inf)."""
    left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
    shown = f"{left}{low:g}, {high:g}{right}" if high != math.inf else f"{left}{low:g}, ∞)"

    def parse(text: str) -> float:
        value = _number(text, float)
        inside = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if allow_inf and value == math.inf:
            return value
        if not math.isfinite(value) or not inside:
            noun = "a number (or inf)" if allow_inf else "a finite number"
            raise argparse.ArgumentTypeError(f"must be {noun} in {shown} (got {text})")
        return value

    parse.__name__ = f"number in {shown}"
    return parse


def condition_values(text: str) -> dict[str, float]:
    """'age=0.6,ventricular_vol=0.3' → {"age": 0.6, "ventricular_vol": 0.3} (which names exist, the model says)."""
    values = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(
                f"must be NAME=NUMBER pairs separated by commas, e.g. age=0.6 (got {item!r})")
        number = _number(value.strip(), float)
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"must be finite numbers (got {item!r})")
        values[name.strip()] = number
    return values


condition_values.__name__ = "NAME=NUMBER list"

positive_int = int_at_least(1)
at_least_two = int_at_least(2)  # metrics between volumes need pairs
non_negative_int = int_at_least(0)
positive_float = float_in(0.0, low_open=True)
non_negative_float = float_in(0.0)
fraction = float_in(0.0, 1.0, high_open=True)
unit_interval = float_in(0.0, 1.0)
