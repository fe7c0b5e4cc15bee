"""PNG figures for reports and model cards (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .files import atomic_output


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: str | Path, overwrite: bool, title: str | None = None) -> Path:
    """Title (if any), tight layout, write the PNG atomically, close the figure."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_output(path, overwrite) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)


def save_loss_curve(losses: list[float], path: str | Path, val_losses: list[tuple[int, float]] = (),
                    title: str = "training loss", overwrite: bool = False) -> Path:
    """Per-step loss (faint) with a moving average, plus validation points if given."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="step loss")
    window = max(1, len(losses) // 25)
    if len(losses) >= window:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, color="tab:blue", linewidth=1.6, label=f"mean of {window}")
    if val_losses:
        v_steps, v_values = zip(*val_losses)
        ax.plot(v_steps, v_values, "o-", color="tab:orange", markersize=3, label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return _save(plt, fig, path, overwrite)


def central_slices(volume: np.ndarray) -> list[np.ndarray]:
    """Axial, coronal and sagittal middle slices of a (X, Y, Z) RAS volume, oriented for display."""
    x, y, z = (s // 2 for s in volume.shape)
    return [np.rot90(volume[:, :, z]), np.rot90(volume[:, y, :]), np.rot90(volume[x, :, :])]


def save_montage(rows: dict[str, list[np.ndarray]], path: str | Path, views: str = "axial",
                 title: str | None = None, overwrite: bool = False) -> Path:
    """A grid of middle slices: one row per named set of (X, Y, Z) volumes, one column per volume.

    views: "axial" (one slice per volume) or "orthogonal" (axial, coronal, sagittal per volume).
    Each row is windowed to its own 1st–99th percentile.
    """
    plt = _pyplot()
    per_volume = 3 if views == "orthogonal" else 1
    columns = max(len(v) for v in rows.values()) * per_volume
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.8 * len(rows)), dpi=110, squeeze=False)
    for row, (name, volumes) in enumerate(rows.items()):
        low, high = np.percentile(np.concatenate([np.ravel(v) for v in volumes]), [1, 99])
        for ax in axes[row]:
            ax.axis("off")
        for index, volume in enumerate(volumes):
            slices = central_slices(np.asarray(volume))[:per_volume]
            for offset, image in enumerate(slices):
                axes[row][index * per_volume + offset].imshow(image, cmap="gray", vmin=low, vmax=high)
        axes[row][0].set_title(name, fontsize=8, loc="left")
    return _save(plt, fig, path, overwrite, title)


def save_case_figure(rows: dict[str, dict[str, np.ndarray]], path: str | Path, maps: tuple[str, ...] = (),
                            title: str | None = None, overwrite: bool = False) -> Path:
    """Axial middle slices of results (translations, reconstructions): one row per case (e.g. "sub-000"), one labelled
    column per named (X, Y, Z) volume. Images share their row's 1st–99th percentile window; the columns
    named in ``maps`` (a std or error map) get their own 0–99th percentile window and a heat colour map."""
    plt = _pyplot()
    columns = max(len(panels) for panels in rows.values())
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.7 * columns, 2.0 * len(rows)), dpi=110, squeeze=False)
    for row, (case, panels) in enumerate(rows.items()):
        images = [np.ravel(v) for name, v in panels.items() if name not in maps]
        low, high = np.percentile(np.concatenate(images), [1, 99]) if images else (0.0, 1.0)
        for ax in axes[row]:
            ax.axis("off")
        for index, (name, volume) in enumerate(panels.items()):
            image = central_slices(np.asarray(volume))[0]
            if name in maps:
                axes[row][index].imshow(image, cmap="inferno", vmin=0, vmax=float(np.percentile(volume, 99)) or 1.0)
            else:
                axes[row][index].imshow(image, cmap="gray", vmin=low, vmax=high)
            axes[row][index].set_title(name, fontsize=7)
        axes[row][0].text(-0.08, 0.5, case, transform=axes[row][0].transAxes, rotation=90, fontsize=7,
                          ha="right", va="center")
    return _save(plt, fig, path, overwrite, title)


def save_pareto(points: list[dict], path: str | Path, xlabel: str, ylabel: str,
                reference: tuple[str, float, float | None] | None = None, title: str | None = None,
                overwrite: bool = False) -> Path:
    """Cost (log x) against an error (y, lower is better) with ± error bars, and the Pareto front.

    points: {"label", "group", "x", "y", "yerr"} — one colour per label, one marker per group (e.g. a
    budget); yerr may be None. The front joins the points no other point beats at a lower or equal x.
    reference: (name, y, yerr) drawn as a dashed line with a ± band (something with no x, e.g. a base model).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    labels = list(dict.fromkeys(p["label"] for p in points))
    groups = list(dict.fromkeys(p["group"] for p in points))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, max(len(labels), 1), endpoint=False))
    markers = "osD^v<>P*X"
    for point in points:
        index = labels.index(point["label"])
        marker = markers[groups.index(point["group"]) % len(markers)]
        ax.errorbar(point["x"], point["y"], yerr=point["yerr"], fmt=marker, color=colours[index], markersize=5,
                    capsize=2, linewidth=0.8)
    front, best = [], np.inf
    for point in sorted(points, key=lambda p: (p["x"], p["y"])):
        if point["y"] < best:
            front.append(point)
            best = point["y"]
    if front:
        ax.plot([p["x"] for p in front], [p["y"] for p in front], "-", color="0.5", linewidth=0.8, zorder=0,
                label="Pareto front")
    if reference is not None:
        name, value, spread = reference
        ax.axhline(value, color="black", linestyle="--", linewidth=0.8, label=name)
        if spread:
            ax.axhspan(value - spread, value + spread, color="black", alpha=0.08)
    for index, label in enumerate(labels):
        ax.plot([], [], "o", color=colours[index], label=label)
    for index, group in enumerate(groups):
        ax.plot([], [], markers[index % len(markers)], color="0.3", fillstyle="none", label=str(group))
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=6, ncol=2, loc="best")
    return _save(plt, fig, path, overwrite, title)
