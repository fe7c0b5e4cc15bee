"""JSON documents (model.json, job.json) checked against a JSON Schema, with one clear message.

Uses the ``jsonschema`` package (Draft 2020-12); the first, most relevant violation is reported with
its location written the way a user would look for it (``input.shape[1]``).
"""

from __future__ import annotations

from typing import Any

from .errors import DiffusionPEFTError


def validate_document(document: Any, schema: dict, source: str, error: type[DiffusionPEFTError], hint: str) -> None:
    """Raise ``error(message, hint)`` naming the field and the problem when ``document`` breaks ``schema``."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    problem = best_match(Draft202012Validator(schema).iter_errors(document))
    if problem is None:
        return
    location = field_path(problem.absolute_path)
    if problem.validator == "required":
        missing = next(name for name in problem.validator_value if name not in problem.instance)
        raise error(f"{source} is missing the field '{_join(location, missing)}'.", hint=hint)
    if problem.validator == "additionalProperties":
        raise error(f"{source}: {problem.message} (at {location or 'the top level'}).", hint=hint)
    shown = repr(problem.instance)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    expected = problem.schema.get("description") or problem.message
    raise error(f"{source}: the field '{location or '(top level)'}' is {shown}; {expected}.", hint=hint)


def field_path(parts) -> str:
    """('input', 'shape', 1) → 'input.shape[1]'."""
    text = ""
    for part in parts:
        text = f"{text}[{part}]" if isinstance(part, int) else _join(text, part)
    return text


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
