"""Classification metrics computed with numpy from labels and model outputs.

Pure functions, no TensorFlow and no run directories: the confusion matrix,
per-class precision / recall / F1 (scikit-learn's definitions, ``zero_division=0``),
the most-confused pairs, ROC AUC, model outputs as class probabilities, and ``metrics.json`` from the
history rows and the test evaluation.
``nnrun.evaluation`` puts them together for a run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MOST_CONFUSED = 5


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``cm[i, j]`` of samples of true class ``i`` predicted as ``j``."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's zero_division=0)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def classification_report(cm: np.ndarray, class_names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, plus accuracy, macro F1 and weighted F1.

    Macro and weighted F1 average over the classes that occur in the true or
    the predicted labels, as scikit-learn does by default.
    """
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    present = (support + predicted) > 0
    total = int(support.sum())
    return {
        "per_class": [
            {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        ],
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
    }


def most_confused(cm: np.ndarray, class_names: list[str] | tuple[str, ...], top: int = MOST_CONFUSED) -> list[dict[str, Any]]:
    """The largest off-diagonal counts: which true class is most often taken for which."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None, kind="stable")[::-1]
    support = cm.sum(axis=1)
    pairs = []
    for flat in order[:top]:
        i, j = divmod(int(flat), cm.shape[1])
        if off[i, j] == 0:
            break
        pairs.append({
            "true": class_names[i], "predicted": class_names[j], "count": int(off[i, j]),
            "fraction_of_true": float(off[i, j] / support[i]),
        })  # fmt: skip
    return pairs


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); None with one class only."""
    y_true = np.asarray(y_true).reshape(-1).astype(bool)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    # Tied scores share the mean of the ranks they span.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_report(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Precision and recall of the positive class (index 1) at ``score > threshold``, and ROC AUC."""
    y_true = np.asarray(y_true).reshape(-1).astype(bool)
    predicted = np.asarray(scores).reshape(-1) > threshold  # strictly greater, as keras's binary_accuracy
    tp = int((predicted & y_true).sum())
    return {
        "threshold": threshold,
        "precision": float(_ratio(tp, predicted.sum())),
        "recall": float(_ratio(tp, y_true.sum())),
        "roc_auc": roc_auc(y_true, scores),
    }


def class_probabilities(outputs: np.ndarray) -> np.ndarray:
    """Model outputs as an ``(n, classes)`` matrix; one sigmoid output becomes ``[1 - p, p]``."""
    outputs = np.asarray(outputs, dtype=np.float64)
    outputs = outputs.reshape(len(outputs), -1)
    if outputs.shape[1] == 1:
        return np.hstack([1.0 - outputs, outputs])
    return outputs


def regression_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² (1 - residual sum of squares / total sum of squares), in the target's own units."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    residual = y_true - y_pred
    total = float(((y_true - y_true.mean()) ** 2).sum())
    return {
        "mae": float(np.abs(residual).mean()),
        "rmse": float(np.sqrt((residual**2).mean())),
        "r2": float(1.0 - (residual**2).sum() / total) if total > 0 else float("nan"),
    }


def summarize_metrics(rows: list[dict], test: dict[str, float], validation: bool) -> dict[str, Any]:
    """metrics.json from the history rows and the test evaluation."""
    last = rows[-1] if rows else {}
    train = {k: v for k, v in last.items() if k not in ("epoch", "learning_rate", "time_s") and not k.startswith("val_")}
    val = {k[4:]: v for k, v in last.items() if k.startswith("val_")}
    monitor = "val_loss" if validation else "loss"
    best_epoch = min(rows, key=lambda r: r.get(monitor, math.inf))["epoch"] if rows else None
    best = {}
    if rows and validation:
        best_row = next(r for r in rows if r["epoch"] == best_epoch)
        best = {k[4:]: v for k, v in best_row.items() if k.startswith("val_")}
    return {
        "train": train,
        "validation": val,
        "best_validation": best,
        "test": test,
        "best_epoch": best_epoch,
        "epochs_run": len(rows),
        **({"diverged_epoch": bad[0]} if (bad := [r["epoch"] for r in rows if math.isnan(r.get("loss", 0))]) else {}),
    }
