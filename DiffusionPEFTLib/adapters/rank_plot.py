"""Plot per-layer rank over training steps (SeLoRA growth) to a PNG, with matplotlib's Agg canvas."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from ..files import atomic_output
from .package import read_manifest


def rank_histories(package: str | os.PathLike) -> dict[str, list[list[int]]]:
    """{layer: [[step, rank], …]} from a saved package (layers without a history keep their rank from step 0)."""
    layers = read_manifest(package)["layers"]
    return {name: layer.get("rank_history", [[0, layer["effective_rank"]]]) for name, layer in layers.items()}


def plot_rank_history(histories: Mapping[str, Sequence[Sequence[int]]], png_path: str | os.PathLike,
                      last_step: int | None = None, title: str = "Adapter rank per layer") -> Path:
    """Step plot of each layer's rank; ``last_step`` extends every line to the end of training."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    end = max([last_step or 0] + [step for history in histories.values() for step, _ in history])
    for name, history in histories.items():
        steps = [step for step, _ in history] + [end]
        ranks = [rank for _, rank in history] + [history[-1][1]]
        axes.step(steps, ranks, where="post", label=name, linewidth=1.2)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("rank")
    axes.set_title(title)
    axes.yaxis.get_major_locator().set_params(integer=True)
    if len(histories) <= 16:
        axes.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.tight_layout()
    with atomic_output(png_path) as temp:
        figure.savefig(temp, format="png")
    return Path(png_path)
