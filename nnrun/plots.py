"""Plots: training curves and other figures, drawn with matplotlib's Agg backend (no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nnrun import rundir as rd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with rd.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
