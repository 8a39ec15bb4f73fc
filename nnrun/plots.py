"""Plots: training curves and other figures, drawn with matplotlib's Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnrun.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: str | Path, title: str = "") -> None:
    """Title, lay out, write atomically (a reader never sees half a PNG), and free the figure."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def plot_curves(rows: list[dict[str, Any]], path: str | Path, *, title: str = "") -> None:
    """Loss and every other metric per epoch, train against validation, one panel each."""
    plt = _pyplot()
    metrics = [k for k in (rows[0] if rows else {}) if k not in ("epoch", "learning_rate", "time_s") and not k.startswith("val_")]
    metrics = metrics or ["loss"]
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        ax.plot(epochs, [r.get(metric) for r in rows], marker="o", markersize=3, label=f"train {metric}")
        if any(f"val_{metric}" in r for r in rows):
            ax.plot(epochs, [r.get(f"val_{metric}") for r in rows], marker="o", markersize=3, label=f"validation {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(plt, fig, path, title)


def plot_confusion_matrix(cm: Any, class_names: list[str] | tuple[str, ...], path: str | Path, *, title: str = "") -> None:
    """The confusion matrix as a heat map with counts, rows true and columns predicted, labelled by class name."""
    import numpy as np

    plt = _pyplot()
    cm = np.asarray(cm)
    n = len(class_names)
    size = max(4.5, 0.6 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > threshold else "black")  # fmt: skip
    if title:
        ax.set_title(title, fontsize=10)
    _save(plt, fig, path)


def plot_image_grid(images: Any, titles: list[str], path: str | Path, *, title: str = "", columns: int = 5) -> None:
    """A grid of images (grayscale or RGB, pixels 0-255), each with its own caption (e.g. true and predicted label)."""
    plt = _pyplot()
    count = len(images)
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.5 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < count:
            image = images[k][..., 0] if images[k].ndim == 3 and images[k].shape[-1] == 1 else images[k]
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(titles[k], fontsize=8)
    _save(plt, fig, path, title)


def plot_runs(series: list[tuple[Any, ...]], path: str | Path, *, metric: str) -> None:
    """One curve per run, ``(label, epochs, values)``, overlaid on one axis (``nnrun compare --plot``); a group's,
    ``(label, epochs, means, stds)``, with a band of ± one standard deviation."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for label, epochs, values, *spread in series:
        (line,) = ax.plot(epochs, values, marker="o", markersize=2, linewidth=1.2, label=label)
        if spread:
            low, high = ([v + sign * s for v, s in zip(values, spread[0])] for sign in (-1, 1))
            ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    what = "group" if any(len(s) > 3 for s in series) else "run"  # a group's: mean ± std over its runs
    ax.set_title(f"{metric} per epoch, {len(series)} {what}{'s' if len(series) != 1 else ''}"
                 + (" (mean ± std of each group's runs)" if what == "group" else ""))
    ax.grid(alpha=0.3)
    if len(series) <= 20:  # a legend of hundreds of runs hides the plot
        ax.legend(fontsize=8)
    _save(plt, fig, path)


def plot_regression(y_true: Any, y_pred: Any, path: str | Path, *, target: str = "target", title: str = "") -> None:
    """Two panels: predicted against true (with the line of perfect predictions), and residuals against predicted."""
    import numpy as np

    plt = _pyplot()
    y_true, y_pred = np.asarray(y_true, dtype=float).ravel(), np.asarray(y_pred, dtype=float).ravel()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    low, high = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    left.scatter(y_true, y_pred, s=12, alpha=0.7)
    left.plot([low, high], [low, high], color="grey", linestyle="--", label="predicted = true")
    left.set_xlabel(f"true {target}")
    left.set_ylabel(f"predicted {target}")
    left.set_title("predicted against true")
    left.legend()
    right.scatter(y_pred, y_true - y_pred, s=12, alpha=0.7)
    right.axhline(0, color="grey", linestyle="--")
    right.set_xlabel(f"predicted {target}")
    right.set_ylabel("residual (true - predicted)")
    right.set_title("residuals")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    _save(plt, fig, path, title)
