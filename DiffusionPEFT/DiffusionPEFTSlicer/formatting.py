"""Texts the panel shows: progress with ETA, the model card, the trainable share, the memory line, errors with
their hint."""

from __future__ import annotations

import html
from pathlib import PurePath

from .conditions import modelConditions
from .model_tasks import conditionClasses

GIB = 1024**3
TRAINABLE_PENDING_TEXT = "trainable parameters: …"
MEMORY_PENDING_TEXT = "checking memory…"
CARD_PENDING_TEXT = "Reading the model package…"
NO_MODEL_TEXT = "No model chosen."


def durationText(seconds: float) -> str:
    """``85`` → ``1 min 25 s``; ``3725`` → ``1 h 2 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def progressText(event: dict) -> str:
    """Progress-bar format for a progress event (``%p%`` is filled in by Qt)."""
    text = f"%p% — {event.get('stage', '')} {event.get('step', 0)}/{event.get('total', 0)}"
    if event.get("loss") is not None:
        text += f" — loss {event['loss']:.4g}"
    if event.get("eta_s") is not None:
        text += f" — {durationText(event['eta_s'])} left"
    return text


def _withPrefix(value: float, unit: str) -> str:
    """``166_700_000, ""`` → ``166.7 M``; ``12_300_000, "B"`` → ``12.3 MB`` (decimal prefixes)."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.1f} {prefix}{unit}"
    return f"{value} {unit}".rstrip()


def sizeText(size: int) -> str:
    """Bytes as ``12.3 MB``."""
    return _withPrefix(size, "B")


def parameterCountText(count: int) -> str:
    """``166_700_000`` → ``166.7 M``."""
    return _withPrefix(count, "")


def modelName(card: dict) -> str:
    """The package's folder (or .zip) name."""
    return PurePath(str(card.get("path", ""))).name


def modelCardText(card: dict, environment: dict | None) -> str:
    """Rich text: parameters, file size, grid and spacing; what a translation model translates; the classes
    of a class-conditioned model; device and torch/CUDA build when known."""
    grid = card.get("grid", {})
    lines = [
        f"<b>{html.escape(modelName(card))}</b>",
        f"{parameterCountText(card.get('parameters', 0))} parameters, {card.get('size_mb', '?')} MB",
        "grid " + "×".join(str(s) for s in grid.get("shape", [])) + " voxels at "
        + "×".join(f"{s:g}" for s in grid.get("spacing_mm", [])) + " mm",
    ]
    translation = card.get("translation")
    if card.get("task") == "translation" and translation:
        lines.append(html.escape(f"translates {translation.get('source')} → {translation.get('target')}"))
    classes = conditionClasses(card)
    if classes:
        lines.append(html.escape("classes: " + ", ".join(classes)))
    conditions = modelConditions(card)
    if conditions:
        lines.append(html.escape("conditions: " + ", ".join(c.name for c in conditions)))
    if environment:
        device = f"cuda ({environment['gpu']})" if environment.get("cudaAvailable") else "cpu"
        lines.append(f"device: {html.escape(device)}; torch {environment.get('torch')}, "
                     f"CUDA {environment.get('cuda') or 'none'}")
    return "<br>".join(lines)


def trainableText(counts: dict) -> str:
    """The trainable share of an adapter plan's counts, e.g. ``trainable parameters: 601,024 = 0.36 % of
    166,669,313 (adapter 539,392 + norms/biases 61,632)``; no split when only base parameters train."""
    text = f"trainable parameters: {counts['total']:,} = {100 * counts['share']:.2f} % of {counts['base']:,}"
    if counts["adapter"]:
        text += f" (adapter {counts['adapter']:,} + norms/biases {counts['extra']:,})"
    return text


def trainingSettingsText(precision: str, checkpointing: bool, batch: int) -> str:
    """``bf16 + checkpointing at batch 1``."""
    return f"{precision}{' + checkpointing' if checkpointing else ''} at batch {batch}"


def memoryText(plan: dict) -> str:
    """The memory line for a fine-tune's plan (``finetune --plan --json``): whether it fits where it runs, with the
    settings it was planned with (precision as resolved for the device), and the settings that fit when it does
    not, e.g. ``Fits on this GPU with bf16 + checkpointing at batch 1: about 16.73 GiB of its 19.20 GiB budget.``"""
    setup = plan["setup"]
    settings = trainingSettingsText(setup["precision"], setup["checkpointing"], plan["batch"])
    needed, budget = plan["predicted"]["total"] / GIB, plan["budget_bytes"] / GIB
    if plan["fits"]:
        return f"Fits {plan['where']} with {settings}: about {needed:.2f} GiB of its {budget:.2f} GiB budget."
    text = f"Does not fit {plan['where']} with {settings}: about {needed:.2f} GiB, its budget is {budget:.2f} GiB."
    proposal = plan.get("proposal")
    if proposal is None:
        return text + " Not even bf16 + checkpointing at batch 1 fits: use a smaller model or a device with more memory."
    fitting = trainingSettingsText(proposal["precision"], proposal["checkpointing"], proposal["batch"])
    return text + f" Fits with {fitting} (about {proposal['predicted']['total'] / GIB:.2f} GiB)."


def notFineTunableText(card: dict) -> str:
    """Why the panel's Fine-tune is off for a translation model."""
    return (f"{modelName(card)} is a translation model: it is fine-tuned on (source, target) pairs, which this "
            "panel does not offer. Use 'diffusion-peft finetune MODEL PAIRS.csv' on the command line.")


def errorText(message: str, hint: str = "") -> str:
    """Rich text for the status label: the message in bold, the hint below it."""
    text = f"<b>{html.escape(message)}</b>"
    return text + (f"<br>{html.escape(hint)}" if hint else "")
