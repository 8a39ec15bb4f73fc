"""Evaluation: reload a run directory's model, data and preprocessing, and measure a split.

``evaluate_run`` reads only the run-directory contract (``config.yaml``,
``preprocessing.json``, ``model.keras``, ``run.json``), reloads the dataset the
config names and applies the saved preprocessing without refitting. Loss and
the compiled metrics come from ``training.evaluate_arrays``, exactly as
training measured the test split, so a fresh run's ``metrics.json`` is
reproduced. The classification report (confusion matrix, per-class scores,
most-confused pairs, ROC AUC for two classes) is computed with numpy from one
``predict`` over the same arrays.

Example:
    >>> result = evaluate_run("runs/20250101-120000-mnist_mlp", split="test")
    >>> write_evaluation(result)  # evaluation.json, confusion_matrix.csv/.png, misclassified.png
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from nnrun import rundir as rd
from nnrun.errors import DataError, RunDirError

SPLITS = ("test", "validation", "train")
#: Tolerance within which ``evaluate`` must reproduce training's test metrics.
REPRODUCE_TOLERANCE = 1e-6
MOST_CONFUSED = 5
MISCLASSIFIED_GRID = 25


# ------------------------------------------------------------- pure metrics


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


# ----------------------------------------------------------- loading a run


IMAGE_DATASETS = ("mnist", "fashion_mnist")


def image_class_names(name: str) -> tuple[str, ...]:
    """Class names of an image dataset without loading it (as ``datasets.load_dataset`` names them)."""
    from nnrun.datasets import FASHION_CLASSES

    return FASHION_CLASSES if name == "fashion_mnist" else tuple(str(i) for i in range(10))


@dataclass
class TrainedRun:
    """What evaluation and prediction need from a run directory."""

    run: rd.RunDir
    info: dict[str, Any]
    config: Any  # RunConfig
    pipeline: Any  # preprocessing.Pipeline
    model: Any


def load_trained(path: str | Path) -> TrainedRun:
    """Open a run directory and reload its config, fitted preprocessing and model.

    Raises:
        RunDirError: not a run directory, or a file missing or corrupt.
    """
    from nnrun.config import validate_config
    from nnrun.errors import ConfigError
    from nnrun.preprocessing import Pipeline

    run = rd.open_run(path)
    info = run.read_run()
    try:
        config = validate_config(run.read_config(), source=str(run.file(rd.CONFIG)))
    except ConfigError as exc:
        raise RunDirError(f"{run.file(rd.CONFIG)} is not a valid config: {exc}") from None
    pipeline = Pipeline.from_dict(rd.read_json(run.file(rd.PREPROCESSING)))
    return TrainedRun(run, info, config, pipeline, load_model(run, info))


def load_model(run: rd.RunDir, info: dict[str, Any]) -> Any:
    """Load ``model.keras`` (compiled, as training saved it)."""
    path = run.file(rd.MODEL)
    if not path.is_file():
        status = rd.effective_status(info)
        hint = f" A checkpoint may be in {run.file(rd.LAST_CHECKPOINT)}." if run.file(rd.LAST_CHECKPOINT).is_file() else ""
        raise RunDirError(
            f"{run.path}: no {rd.MODEL} (run status: {status}); only a completed run has a final model.{hint}"
        )
    from nnrun.tf import import_keras

    keras = import_keras()
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # noqa: BLE001 (Keras raises ValueError, OSError, zipfile errors...)
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunDirError(f"{path}: cannot load the model ({detail}). The file is damaged; train the run again.") from None


def load_run_dataset(trained: TrainedRun) -> Any:
    """The run's dataset as training saw it (same limit, validation and ``--smoke`` subset)."""
    from nnrun.datasets import load_dataset

    return load_dataset(_dataset_config(trained), smoke=bool(trained.info.get("smoke")))


def _dataset_config(trained: TrainedRun) -> Any:
    """The config's dataset section; a relative CSV path is also tried from the training cwd."""
    cfg = trained.config.dataset
    path = getattr(cfg, "path", None)
    cwd = trained.info.get("cwd")
    moved = cfg.name == "csv" and path and not Path(path).is_absolute() and not Path(path).exists()
    if moved and cwd and (Path(cwd) / path).exists():
        return cfg.model_copy(update={"path": str(Path(cwd) / path)})
    return cfg


# ----------------------------------------------------------- other data


def read_data_path(path: str | Path, trained: TrainedRun, split: str, dataset: Any | None) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``--data``: an IDX folder (image runs) or a CSV (tabular runs) shaped like the training data.

    Returns raw ``x``, class indices ``y`` and the run's class names.
    """
    from nnrun.datasets import read_csv_table, read_idx

    path = Path(path).expanduser()
    cfg = trained.config.dataset
    if cfg.name in IMAGE_DATASETS:
        names = image_class_names(cfg.name)
        images, labels = _idx_pair(path, split)
        x, y = read_idx(images), read_idx(labels).astype(np.int64)
        if x.shape[1:] != (28, 28):
            raise DataError(f"--data {images}: images of shape {x.shape[1:]}, but the run trained on 28x28 images.")
        if y.ndim != 1 or len(x) != len(y):
            raise DataError(f"--data {path}: {len(x)} images but labels of shape {y.shape}; they must pair up.")
        if len(y) and (y.min() < 0 or y.max() >= len(names)):
            raise DataError(f"--data {labels}: label {int(y.max())} is outside 0..{len(names) - 1}.")
        return x, y, names
    if path.is_dir():
        raise DataError(f"--data {path}: the run trained on a CSV ({cfg.name}); pass a CSV file with the same columns.")
    x, y, file_names, _ = read_csv_table(
        path, label=cfg.label, features=list(dataset.feature_names) or cfg.features, header=cfg.header,
        delimiter=cfg.delimiter, key="--data",
    )  # fmt: skip
    names = dataset.class_names
    unknown = [n for n in file_names if n not in names]
    if unknown:
        raise DataError(f"--data {path}: label value {unknown[0]!r} is not one of the run's classes ({', '.join(names)}).")
    mapping = np.array([names.index(n) for n in file_names])
    return x, mapping[y], tuple(names)


def _idx_pair(path: Path, split: str) -> tuple[Path, Path]:
    """The images and labels IDX files in ``path``: the split's standard names, else the only pair."""
    from nnrun.datasets import IDX_FILES

    if not path.is_dir():
        raise DataError(
            f"--data {path}: expected a folder with an IDX images file and its labels file; "
            f"got {'a file' if path.exists() else 'nothing at that path'}."
        )
    files = [p for p in path.iterdir() if p.is_file()]
    prefix = "t10k" if split == "test" else split
    pair = []
    for kind in ("images", "labels"):
        matches = [p for p in files if kind in p.name and p.name.startswith(prefix)] or [p for p in files if kind in p.name]
        if len(matches) != 1:
            raise DataError(
                f"--data {path}: need one '*{kind}*' IDX file (or the standard names {', '.join(IDX_FILES.values())}); "
                f"found {len(matches)}."
            )
        pair.append(matches[0])
    return pair[0], pair[1]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "data"


# ---------------------------------------------------------------- evaluate


@dataclass
class Evaluation:
    """The result of evaluating one split; ``result`` is what ``evaluation.json`` holds."""

    run: rd.RunDir
    result: dict[str, Any]
    suffix: str  # "" for the test split, "-validation", "-train" or "-data-<name>"
    confusion: np.ndarray
    class_names: tuple[str, ...]
    images: np.ndarray | None = None  # raw images of the worst misclassified samples
    image_titles: list[str] = field(default_factory=list)

    @property
    def json_name(self) -> str:
        return f"evaluation{self.suffix}.json"


def evaluate_run(path: str | Path, *, split: str = "test", data: str | Path | None = None,
                 now: Callable[[], datetime] = datetime.now) -> Evaluation:
    """Reload a run and measure ``split`` (or the ``data`` file) with the saved preprocessing.

    Args:
        path: the run directory.
        split: 'test', 'validation' or 'train' (with ``data``: which IDX files of the folder).
        data: a CSV or IDX folder of the same shape as the training data, instead of the split.

    Raises:
        RunDirError: the run directory is incomplete or damaged.
        DataError: the dataset or ``data`` cannot be read or does not fit.
    """
    from nnrun.errors import ConfigError
    from nnrun.training import EVAL_BATCH_SIZE, evaluate_arrays

    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}.")
    trained = load_trained(path)
    image_run = trained.config.dataset.name in IMAGE_DATASETS
    dataset = None if (data is not None and image_run) else load_run_dataset(trained)
    if data is not None:
        x_raw, y, class_names = read_data_path(data, trained, split, dataset)
        source, suffix = f"data:{data}", f"-data-{_slug(Path(data).stem)}"
    else:
        x_raw, y = dataset.split(split)
        class_names, source, suffix = dataset.class_names, split, "" if split == "test" else f"-{split}"
    if len(x_raw) == 0:
        raise DataError(f"the {source} split of {trained.run.path} has no samples.")
    try:
        x, y_model = trained.pipeline.transform(x_raw, y)
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
    metrics = evaluate_arrays(trained.model, x, y_model)
    probs = class_probabilities(trained.model.predict(x, batch_size=EVAL_BATCH_SIZE, verbose=0))
    if probs.shape[1] != len(class_names):
        raise DataError(f"the model gives {probs.shape[1]} class scores but the data has {len(class_names)} classes.")
    predicted = probs.argmax(axis=1)
    cm = confusion_matrix(y, predicted, len(class_names))
    result: dict[str, Any] = {
        "run": trained.run.id,
        "split": source,
        "samples": len(y),
        "evaluated": now().isoformat(timespec="seconds"),
        "metrics": metrics,
        "class_names": list(class_names),
        **classification_report(cm, class_names),
        "most_confused": most_confused(cm, class_names),
        "confusion_matrix": cm.tolist(),
    }
    if len(class_names) == 2:
        result["binary"] = {"positive_class": class_names[1], **binary_report(y, probs[:, 1])}
    if split == "test" and data is None:
        result["reproduces_training"] = _compare_with_training(trained.run, metrics)
    evaluation = Evaluation(trained.run, result, suffix, cm, tuple(class_names))
    if image_run or x_raw.ndim == 3:
        _worst_misclassified(evaluation, x_raw, y, probs, predicted)
    return evaluation


def _compare_with_training(run: rd.RunDir, metrics: dict[str, float]) -> dict[str, Any] | None:
    """Largest difference from ``metrics.json``'s test values, and whether it is within tolerance."""
    if not run.file(rd.METRICS).is_file():
        return None
    test = rd.read_json(run.file(rd.METRICS)).get("test") or {}
    shared = [k for k in metrics if isinstance(test.get(k), (int, float))]
    if not shared:
        return None
    diff = max(abs(metrics[k] - float(test[k])) for k in shared)
    return {"max_abs_difference": diff, "within_tolerance": diff <= REPRODUCE_TOLERANCE, "tolerance": REPRODUCE_TOLERANCE}


def _worst_misclassified(evaluation: Evaluation, x_raw: np.ndarray, y: np.ndarray, probs: np.ndarray,
                         predicted: np.ndarray) -> None:
    """The wrong predictions the model was surest of (lowest probability on the true class)."""
    wrong = np.flatnonzero(predicted != y)
    true_prob = probs[wrong, y[wrong]]
    worst = wrong[np.argsort(true_prob, kind="stable")][:MISCLASSIFIED_GRID]
    names = evaluation.class_names
    evaluation.images = x_raw[worst]
    evaluation.image_titles = [
        f"true: {names[y[i]]}\npred: {names[predicted[i]]} ({probs[i, predicted[i]]:.2f})" for i in worst
    ]
    evaluation.result["misclassified"] = {"count": len(wrong), "shown": [int(i) for i in worst]}


# ------------------------------------------------------------------ writing


def write_evaluation(evaluation: Evaluation) -> list[Path]:
    """Write ``evaluation<suffix>.json``, the confusion matrix (CSV and PNG) and the misclassified grid.

    Never touches training's files (``metrics.json`` above all).
    """
    from nnrun.plots import plot_confusion_matrix, plot_image_grid

    run, suffix, names = evaluation.run, evaluation.suffix, evaluation.class_names
    written = [run.file(f"confusion_matrix{suffix}.csv"), run.file(f"confusion_matrix{suffix}.png")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true\\predicted", *names])
    writer.writerows([name, *map(int, row)] for name, row in zip(names, evaluation.confusion))
    rd.write_text_atomic(written[0], buffer.getvalue())
    plot_confusion_matrix(evaluation.confusion, names, written[1], title=f"{run.id}: {evaluation.result['split']}")
    if evaluation.images is not None and len(evaluation.images):
        written.append(run.file(f"misclassified{suffix}.png"))
        plot_image_grid(evaluation.images, evaluation.image_titles, written[-1], title="misclassified, lowest probability on the true class first")
    written.append(run.file(evaluation.json_name))
    evaluation.result["files"] = [p.name for p in written]
    rd.write_json_atomic(written[-1], evaluation.result)
    return written


# ------------------------------------------------------------------ report


def render_evaluation(result: dict[str, Any], files: list[Path] = ()) -> list[Any]:
    """Rich renderables for the report: metrics, per-class scores, confusion matrix, most-confused pairs."""
    from rich.table import Table

    out: list[Any] = []
    metrics = "   ".join(f"{k} [bold]{v:.4f}[/]" for k, v in result["metrics"].items())
    out.append(f"[bold]nnrun evaluate[/] [cyan]{result['run']}[/] on {result['split']} ({result['samples']:,} samples)")
    out.append(metrics)
    check = result.get("reproduces_training")
    if check:
        mark = "[green]✓[/] reproduces" if check["within_tolerance"] else "[yellow]✗ differs from[/]"
        out.append(f"{mark} metrics.json's test values (largest difference {check['max_abs_difference']:.1e})")

    table = Table(title="per class", header_style="bold", title_justify="left")
    table.add_column("class")
    for column in ("precision", "recall", "f1", "support"):
        table.add_column(column, justify="right")
    for row in result["per_class"]:
        table.add_row(row["class"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}", str(row["support"]))
    table.add_section()
    table.add_row("accuracy", "", "", f"{result['accuracy']:.4f}", str(result["samples"]))
    table.add_row("macro F1", "", "", f"{result['macro_f1']:.4f}", "")
    table.add_row("weighted F1", "", "", f"{result['weighted_f1']:.4f}", "")
    out.append(table)

    names = result["class_names"]
    out.append("[bold]confusion matrix[/] (rows: true class, columns: predicted)")
    matrix = Table(header_style="bold")
    matrix.add_column("true \\ pred")
    for name in names:
        matrix.add_column(name, justify="right")
    for i, (name, row) in enumerate(zip(names, result["confusion_matrix"])):
        matrix.add_row(name, *[f"[green]{v}[/]" if i == j else (str(v) if v else "[dim]0[/]") for j, v in enumerate(row)])
    out.append(matrix)

    if result["most_confused"]:
        out.append("[bold]most confused[/] (true → predicted):")
        out.extend(
            f"  {p['true']} → {p['predicted']}: {p['count']} ({p['fraction_of_true']:.1%} of {p['true']})"
            for p in result["most_confused"]
        )
    binary = result.get("binary")
    if binary:
        auc = "n/a (one class only)" if binary["roc_auc"] is None else f"{binary['roc_auc']:.4f}"
        out.append(
            f"[bold]positive class {binary['positive_class']}[/] at threshold {binary['threshold']}: "
            f"precision {binary['precision']:.4f}   recall {binary['recall']:.4f}   ROC AUC {auc}"
        )
    if files:
        out.append("wrote " + ", ".join(f"[cyan]{Path(f).name}[/]" for f in files) + f" in {Path(files[0]).parent}")
    return out
