"""What a model package is for, read from its card (``diffusion-peft info --json``): the Generate tasks
it runs, whether the panel can fine-tune it (model.json ``"task"``; older packages have none: synthesis) and
the contrasts a class-conditioned model generates (``condition_classes``). A ``latent`` model (an imported
bundle: autoencoder + UNet on its latents) synthesizes and fine-tunes; its numeric conditions: conditions.py."""

from __future__ import annotations

DEFAULT_MODEL_TASK = "synthesis"
# A synthesis model is also a reconstruction prior.
TASKS_OF_MODEL = {"synthesis": ("synthesize", "reconstruct"), "translation": ("translate",), "latent": ("synthesize",)}
GENERATE_TASKS = list(dict.fromkeys(task for tasks in TASKS_OF_MODEL.values() for task in tasks))
FINE_TUNABLE_MODEL_TASKS = ("synthesis", "latent")  # a translation model trains on (source, target) pairs
CONTRAST_TASKS = ("synthesize", "reconstruct")  # the commands that take --contrast
CONDITION_TASKS = ("synthesize",)  # the Generate command that takes --condition


def modelTask(card: dict) -> str:
    """``synthesis``, ``translation`` or ``latent``."""
    return card.get("task") or DEFAULT_MODEL_TASK


def generateTasks(card: dict | None) -> list[str]:
    """The Generate tasks the carded model runs; all of them while its card is unknown (or its task is
    one this panel does not know: the backend then says what it is)."""
    return list(GENERATE_TASKS if card is None else TASKS_OF_MODEL.get(modelTask(card), GENERATE_TASKS))


def fineTunable(card: dict | None) -> bool:
    """Whether the panel's Fine-tune (unpaired training volumes) suits the model; True while unknown."""
    return card is None or modelTask(card) in FINE_TUNABLE_MODEL_TASKS


def conditionClasses(card: dict | None) -> list[str]:
    """The contrasts (``--contrast`` names) a class-conditioned model generates; none while its card is unknown."""
    return list((card or {}).get("condition_classes") or [])
