"""A MONAI bundle config (``configs/*.json``) read as data: literal values and ``@`` references, nothing else.

A bundle config mixes data with code: MONAI's ConfigParser ``eval``s every string that starts with ``$``
(``"$torch.load(@path)"``, but equally ``"$__import__('os').system(…)"``) and instantiates every ``_target_``.
Here no expression is ever run and nothing is instantiated: ``@name`` / ``@a::b::0`` (or ``@a#b#0``) references to
other entries of the same file are followed, and a value that is only an expression — or a ``%file::key`` macro
into another file — is an :class:`~DiffusionPEFTLib.errors.InputError` that names the entry, when that value is
needed. The text of an expression may be *read* (e.g. which ``@`` entries it refers to), never evaluated.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import InputError

REFERENCE = re.compile(r"@([A-Za-z_][\w]*(?:(?:::|#)[\w]+)*)")
SEPARATORS = re.compile(r"::|#")
EXPRESSION_HINT = ("DiffusionPEFT reads a bundle's configs as data and never runs their Python expressions. "
                   "Write the value itself (a number, list or text) into that entry of {file}")


class BundleConfig:
    """One JSON config of a bundle. ``document``: the parsed JSON object; ``source``: its name for messages."""

    def __init__(self, document: dict, source: str):
        self.document, self.source = document, source

    @classmethod
    def read(cls, path: Path) -> "BundleConfig":
        """InputError when the file is missing, not UTF-8 JSON, or not a JSON object."""
        source = f"{path.parent.name}/{path.name}"
        try:
            document = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path} is missing.", hint="Give the folder of a MONAI bundle (it holds "
                             "configs/inference.json and configs/metadata.json).") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{source} is not valid JSON ({getattr(exc, 'msg', exc)}).",
                             hint="Download the bundle again; only JSON configs are read (not YAML).") from None
        if not isinstance(document, dict):
            raise InputError(f"{source} is not a JSON object.", hint="Download the bundle again.")
        return cls(document, source)

    def get(self, key: str, default: Any = None) -> Any:
        """The entry ``key`` (a ``::``/``#`` path) as written, or ``default`` when it is absent."""
        try:
            return self._lookup(key)
        except KeyError:
            return default

    def resolve(self, value: Any, where: str) -> Any:
        """``value`` with every ``@`` reference replaced by what it refers to (recursively); InputError naming
        ``where`` for an expression, a macro, a reference to a missing entry, or a reference cycle."""
        return self._resolve(value, where, ())

    def resolve_entry(self, key: str) -> Any:
        """The entry ``key``, resolved (KeyError when it is absent)."""
        return self.resolve(self._lookup(key), key)

    def is_literal(self, key: str) -> bool:
        """Whether entry ``key`` exists and resolves to data (no expression on the way)."""
        try:
            self.resolve_entry(key)
        except (KeyError, InputError):
            return False
        return True

    def arguments(self, key: str) -> dict:
        """The constructor arguments of the definition ``key`` (a dict with ``_target_``), resolved; the special
        keys (``_target_``, ``_requires_``, ``_disabled_``, ``_desc_``, ``_mode_``) are left out."""
        definition = self._lookup(key)
        return {name: self.resolve(value, f"{key}::{name}") for name, value in definition.items()
                if not (name.startswith("_") and name.endswith("_"))}

    def definitions(self, *class_names: str) -> list[str]:
        """Top-level entries that define one of ``class_names`` (the last part of their ``_target_``)."""
        return [key for key, value in self.document.items()
                if isinstance(value, dict) and target_class(value) in class_names]

    def targets(self) -> list[str]:
        """Every top-level ``_target_`` (for messages)."""
        return [value["_target_"] for value in self.document.values()
                if isinstance(value, dict) and isinstance(value.get("_target_"), str)]

    def references_in(self, key: str) -> list[str]:
        """The entries an expression (or reference) at ``key`` refers to, in order — read from its text."""
        text = self.get(key)
        return REFERENCE.findall(text) if isinstance(text, str) else []

    # --- internals ------------------------------------------------------------------------------
    def _lookup(self, key: str) -> Any:
        node: Any = self.document
        for part in SEPARATORS.split(key):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise KeyError(key)
        return node

    def _resolve(self, value: Any, where: str, chain: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {k: self._resolve(v, f"{where}::{k}", chain) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolve(v, f"{where}::{i}", chain) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        if value.startswith("$"):
            shown = value if len(value) <= 80 else value[:77] + "..."
            raise InputError(f"{self.source}: '{where}' is the Python expression {shown!r}; it is never run, so "
                             "its value is unknown.", hint=EXPRESSION_HINT.format(file=self.source) + ".")
        if value.startswith("%"):
            raise InputError(f"{self.source}: '{where}' refers to another file ({value}); only entries of the same "
                             "file are read.", hint=EXPRESSION_HINT.format(file=self.source) + ".")
        if value.startswith("@"):
            key = value[1:]
            if key in chain:
                raise InputError(f"{self.source}: the references at '{where}' go round in a circle ({key}).",
                                 hint=f"Fix the bundle's {self.source}.")
            try:
                target = self._lookup(key)
            except KeyError:
                raise InputError(f"{self.source}: '{where}' refers to '{key}', which the file does not define.",
                                 hint=f"Fix the bundle's {self.source}.") from None
            return self._resolve(target, key, (*chain, key))
        return value


def target_class(definition: dict) -> str:
    """'monai.networks.nets.AutoencoderKL' → 'AutoencoderKL' ('' when there is no ``_target_``)."""
    target = definition.get("_target_")
    return target.rsplit(".", 1)[-1] if isinstance(target, str) else ""


def find_definitions(document: Any, class_names: tuple[str, ...]) -> list[dict]:
    """Every dict anywhere in ``document`` (e.g. inside transform lists) whose ``_target_`` class is one of
    ``class_names``, as written."""
    found = []
    if isinstance(document, dict):
        if target_class(document) in class_names:
            found.append(document)
        for value in document.values():
            found.extend(find_definitions(value, class_names))
    elif isinstance(document, list):
        for value in document:
            found.extend(find_definitions(value, class_names))
    return found
