"""Evaluation: measure a finished run on a split of its dataset, or on a ``--data`` file.

``evaluate_run`` loads the run once through ``nnrun.trained`` (config,
``preprocessing.json``, ``model.keras``, the input signature), reloads the dataset the
config names (a ``--data`` file needs no dataset) and applies the saved preprocessing
without refitting. Loss and
the compiled metrics come from ``training.evaluate_arrays``, exactly as
training measured the test split, so a fresh run's ``metrics.json`` is
reproduced. The classification report (confusion matrix, per-class scores,
most-confused pairs, ROC AUC for two classes) comes from ``nnrun.metrics``,
computed with numpy from one ``predict`` over the same arrays.

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
from nnrun.atomic import write_json_atomic, write_text_atomic
from nnrun.errors import DataError
from nnrun.metrics import (
    binary_report,
    class_probabilities,
    classification_report,
    confusion_matrix,
    most_confused,
    regression_report,
)
from nnrun.trained import TrainedRun, load_run_dataset, load_trained

SPLITS = ("test", "validation", "train")
#: Tolerance within which ``evaluate`` must reproduce training's test metrics.
REPRODUCE_TOLERANCE = 1e-6
MISCLASSIFIED_GRID = 25


# ----------------------------------------------------------- other data


def read_data_path(path: str | Path, trained: TrainedRun, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``--data``: an IDX folder (image runs) or a CSV (tabular runs) shaped like the training data.

    Only the run's input signature is needed, not its training data.
    Returns raw ``x``, class indices ``y`` and the run's class names.
    """
    from nnrun.datasets import read_csv_table, read_idx

    path = Path(path).expanduser()
    signature = trained.signature
    names = trained.class_names
    if "image_size" in signature:  # an image-folder run: a folder of class folders named like training's
        from nnrun.datasets.images import decode_images, list_image_folder

        files = list_image_folder(str(path), "--data", names)
        decoded = decode_images(files.paths, signature)
        return decoded.images, files.labels[decoded.kept], names
    if trained.image:
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
        raise DataError(f"--data {path}: the run trained on a CSV ({signature['dataset']}); pass a CSV file with the same columns.")
    if trained.typed or trained.regression:
        return _labelled_rows(path, trained)
    table = read_csv_table(
        path, label=signature["label"], features=signature["feature_names"], header=signature.get("header", True),
        delimiter=signature.get("delimiter", ","), key="--data",
    )  # fmt: skip
    x, y, file_names = table.x, table.y, table.class_names
    unknown = [n for n in file_names if n not in names]
    if unknown:
        raise DataError(f"--data {path}: label value {unknown[0]!r} is not one of the run's classes ({', '.join(names)}).")
    mapping = np.array([names.index(n) for n in file_names])
    return x, mapping[y], tuple(names)


def _labelled_rows(path: Path, trained: TrainedRun) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``--data`` for a typed-CSV or regression run: columns by header name, the label required."""
    from nnrun.datasets.csv import format_number, is_number
    from nnrun.datasets.table import MISSING, read_new_rows

    signature = trained.signature
    x, labels, lines = read_new_rows(path, signature, key="--data")
    if not trained.typed:  # a plain numeric run: the cells must be numbers, as in training
        from nnrun.datasets.csv import numeric_cells

        rows = [(line, [c or "" for c in row]) for line, row in zip(lines, x.tolist())]
        names = [f"'{n}'" for n in signature["feature_names"]]
        x = numeric_cells(rows, list(range(x.shape[1])), names, f"--data {path}",
                          "Every feature must be a number.").astype(np.float32)
    label = signature.get("label")
    if labels is None:
        raise DataError(f"--data {path}: no label column '{label}'; evaluate needs the true values. "
                        "To predict without them, use nnrun predict.")
    for value, line in zip(labels, lines):
        if value.lower() in MISSING:
            raise DataError(f"--data {path}: missing label at row {line}, column '{label}'.")
    if trained.regression:
        try:
            return x, np.array([float(v) for v in labels], dtype=np.float32), ()
        except ValueError:
            bad = next((v, line) for v, line in zip(labels, lines) if not is_number(v))
            raise DataError(f"--data {path}: the label '{label}' must be a number, got {bad[0]!r} at row {bad[1]}.") from None
    names = trained.class_names
    numeric = all(is_number(n) for n in names)  # numeric classes were named 1, not 1.0; text classes as they are
    canonical = [format_number(float(v)) if numeric and is_number(v) else v for v in labels]
    unknown = [v for v in canonical if v not in names]
    if unknown:
        raise DataError(f"--data {path}: label value {unknown[0]!r} is not one of the run's classes ({', '.join(names)}).")
    return x, np.array([names.index(v) for v in canonical], dtype=np.int64), names


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
    confusion: np.ndarray | None  # None for a regression
    class_names: tuple[str, ...]
    images: np.ndarray | None = None  # raw images of the worst misclassified samples
    image_titles: list[str] = field(default_factory=list)
    predictions: tuple[np.ndarray, np.ndarray] | None = None  # regression: (true, predicted)

    @property
    def json_name(self) -> str:
        return rd.evaluation_files(self.suffix)["json"]


def evaluate_run(path: str | Path, *, split: str = "test", data: str | Path | None = None,
                 now: Callable[[], datetime] = datetime.now, trained: TrainedRun | None = None,
                 dataset: Any | None = None) -> Evaluation:
    """Reload a run and measure ``split`` (or the ``data`` file) with the saved preprocessing.

    Args:
        path: the run directory.
        split: 'test', 'validation' or 'train' (with ``data``: which IDX files of the folder).
        data: a CSV or IDX folder of the same shape as the training data, instead of the split.
        trained, dataset: the run and its dataset when the caller has them loaded already (``report``).

    Raises:
        RunDirError: the run directory is incomplete or damaged.
        DataError: the dataset or ``data`` cannot be read or does not fit.
    """
    from nnrun.errors import ConfigError
    from nnrun.training import EVAL_BATCH_SIZE, evaluate_arrays

    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}.")
    trained = trained or load_trained(path)
    if data is not None:
        x_raw, y, class_names = read_data_path(data, trained, split)
        source, suffix = f"data:{data}", f"-data-{_slug(Path(data).stem)}"
    else:
        dataset = dataset or load_run_dataset(trained, only=split)
        x_raw, y = dataset.split(split)
        class_names, source, suffix = dataset.class_names, split, "" if split == "test" else f"-{split}"
    if len(x_raw) == 0:
        raise DataError(f"the {source} split of {trained.run.path} has no samples.")
    try:
        x, y_model = trained.pipeline.transform(x_raw, y)
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
    metrics = evaluate_arrays(trained.model, x, y_model)
    result: dict[str, Any] = {"run": trained.run.id, "split": source, "samples": len(y),
                              "evaluated": now().isoformat(timespec="seconds"), "metrics": metrics}  # fmt: skip
    notes = trained.pipeline.notes()
    if notes:
        result["notes"] = notes
    if trained.regression:
        predicted = trained.model.predict(x, batch_size=EVAL_BATCH_SIZE, verbose=0).reshape(-1)
        metrics.update(regression_report(y, predicted))
        result.update(task="regression", target=trained.signature.get("label"))
        if split == "test" and data is None:
            result["reproduces_training"] = _compare_with_training(trained.run, metrics)
        return Evaluation(trained.run, result, suffix, None, (), predictions=(np.asarray(y), predicted))
    probs = class_probabilities(trained.model.predict(x, batch_size=EVAL_BATCH_SIZE, verbose=0))
    if probs.shape[1] != len(class_names):
        raise DataError(f"the model gives {probs.shape[1]} class scores but the data has {len(class_names)} classes.")
    predicted = probs.argmax(axis=1)
    cm = confusion_matrix(y, predicted, len(class_names))
    result.update({
        "class_names": list(class_names),
        **classification_report(cm, class_names),
        "most_confused": most_confused(cm, class_names),
        "confusion_matrix": cm.tolist(),
    })
    if len(class_names) == 2:
        result["binary"] = {"positive_class": class_names[1], **binary_report(y, probs[:, 1])}
    if split == "test" and data is None:
        result["reproduces_training"] = _compare_with_training(trained.run, metrics)
    evaluation = Evaluation(trained.run, result, suffix, cm, tuple(class_names))
    if trained.image or x_raw.ndim == 3:
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
    names_of = rd.evaluation_files(suffix)
    if evaluation.predictions is not None:
        from nnrun.plots import plot_regression

        written = [run.file(names_of["regression_png"]), run.file(evaluation.json_name)]
        plot_regression(*evaluation.predictions, written[0], target=evaluation.result.get("target") or "target",
                        title=f"{run.id}: {evaluation.result['split']}")
        evaluation.result["files"] = [p.name for p in written]
        write_json_atomic(written[-1], evaluation.result)
        return written
    written = [run.file(names_of["confusion_csv"]), run.file(names_of["confusion_png"])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true\\predicted", *names])
    writer.writerows([name, *map(int, row)] for name, row in zip(names, evaluation.confusion))
    write_text_atomic(written[0], buffer.getvalue())
    plot_confusion_matrix(evaluation.confusion, names, written[1], title=f"{run.id}: {evaluation.result['split']}")
    if evaluation.images is not None and len(evaluation.images):
        written.append(run.file(names_of["misclassified"]))
        plot_image_grid(evaluation.images, evaluation.image_titles, written[-1], title="misclassified, lowest probability on the true class first")
    written.append(run.file(evaluation.json_name))
    evaluation.result["files"] = [p.name for p in written]
    write_json_atomic(written[-1], evaluation.result)
    return written


# ------------------------------------------------------------------ report


def render_evaluation(result: dict[str, Any], files: list[Path] = ()) -> list[Any]:
    """Rich renderables for the report: metrics, then per-class scores, confusion matrix and most-confused pairs
    (classification) or the units of the errors (regression)."""
    from rich.table import Table

    out: list[Any] = []
    metrics = "   ".join(f"{k} [bold]{v:.4f}[/]" for k, v in result["metrics"].items())
    out.append(f"[bold]nnrun evaluate[/] [cyan]{result['run']}[/] on {result['split']} ({result['samples']:,} samples)")
    out.append(metrics)
    check = result.get("reproduces_training")
    if check:
        mark = "[green]✓[/] reproduces" if check["within_tolerance"] else "[yellow]✗ differs from[/]"
        out.append(f"{mark} metrics.json's test values (largest difference {check['max_abs_difference']:.1e})")
    out.extend(f"[yellow]note:[/] {note}" for note in result.get("notes", []))
    if result.get("task") == "regression":
        out.append(f"regression of '{result.get('target')}': MAE and RMSE are in its own units")
        if files:
            out.append("wrote " + ", ".join(f"[cyan]{Path(f).name}[/]" for f in files) + f" in {Path(files[0]).parent}")
        return out

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
