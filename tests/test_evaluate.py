"""nnrun evaluate: metrics by hand, reproducing training's test metrics, reports and files, broken runs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnrun import rundir as rd
from nnrun.cli import app
from nnrun.datasets import FASHION_CLASSES, idx_bytes
from nnrun.metrics import (
    binary_report,
    class_probabilities,
    classification_report,
    confusion_matrix,
    most_confused,
    roc_auc,
)

runner = CliRunner()


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A private copy of a session run, so that evaluate's files never leak into other tests."""
    return Path(shutil.copytree(run, tmp_path / run.name))


def evaluate_json(run: Path, *args: str) -> dict:
    result = runner.invoke(app, ["evaluate", str(run), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------ pure metrics


def test_confusion_matrix_and_report_match_hand_counts():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2])
    cm = confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]

    report = classification_report(cm, ["a", "b", "c"])
    a, b, c = report["per_class"]
    # a: tp 2, predicted 3, support 3; b: tp 1, predicted 2, support 2; c: tp 3, predicted 4, support 4
    assert (a["precision"], a["recall"], a["support"]) == pytest.approx((2 / 3, 2 / 3, 3))
    assert (b["precision"], b["recall"]) == pytest.approx((1 / 2, 1 / 2))
    assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((3 / 4, 3 / 4, 3 / 4))
    assert report["accuracy"] == pytest.approx(6 / 9)
    assert report["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    assert report["weighted_f1"] == pytest.approx((3 * 2 / 3 + 2 * 1 / 2 + 4 * 3 / 4) / 9)


def test_a_class_never_predicted_scores_zero_and_absent_classes_leave_the_macro_average():
    cm = confusion_matrix(np.array([0, 0, 1]), np.array([0, 0, 0]), 3)
    report = classification_report(cm, ["a", "b", "c"])
    assert report["per_class"][1] == {"class": "b", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    f1_a = 2 * (2 / 3) * 1 / (2 / 3 + 1)
    assert report["macro_f1"] == pytest.approx((f1_a + 0.0) / 2)  # c: no support, never predicted


def test_most_confused_pairs_are_ordered_by_count():
    cm = np.array([[5, 3, 0], [1, 5, 7], [0, 2, 5]])
    pairs = most_confused(cm, ["a", "b", "c"], top=3)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [("b", "c", 7), ("a", "b", 3), ("c", "b", 2)]
    assert pairs[0]["fraction_of_true"] == pytest.approx(7 / 13)
    assert most_confused(np.eye(3, dtype=int) * 4, ["a", "b", "c"]) == []


def test_roc_auc_against_hand_computed_values():
    # Pairs (positive, negative): (0.35, 0.1) yes, (0.35, 0.4) no, (0.8, 0.1) yes, (0.8, 0.4) yes -> 3/4
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    # A tie counts one half: (0.5 vs 0.5) = 0.5, (0.9 vs 0.5) = 1 -> 1.5 / 2
    assert roc_auc(np.array([0, 1, 1]), np.array([0.5, 0.5, 0.9])) == pytest.approx(0.75)
    assert roc_auc(np.array([1, 0]), np.array([0.2, 0.9])) == 0.0
    assert roc_auc(np.array([1, 1]), np.array([0.2, 0.9])) is None


def test_binary_report_uses_strictly_greater_than_the_threshold():
    report = binary_report(np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.5, 0.7, 0.1, 0.6]))
    # predicted positive: 0.9, 0.7, 0.6 (0.5 is not > 0.5) -> tp 2 of 3 predicted, 2 of 3 positives found
    assert report["precision"] == pytest.approx(2 / 3) and report["recall"] == pytest.approx(2 / 3)
    assert report["threshold"] == 0.5


def test_one_sigmoid_output_becomes_two_class_probabilities():
    probs = class_probabilities(np.array([[0.25], [0.5], [0.75]]))
    assert probs.tolist() == [[0.75, 0.25], [0.5, 0.5], [0.25, 0.75]]
    assert probs.argmax(axis=1).tolist() == [0, 0, 1]  # 0.5 is class 0, as keras's binary_accuracy has it


# -------------------------------------------------------- real trained runs


@pytest.mark.slow
def test_evaluate_reproduces_training_test_metrics(mnist_run, tmp_path):
    run = copy_run(mnist_run, tmp_path)
    metrics_before = (run / rd.METRICS).read_bytes()
    result = evaluate_json(run)

    saved = json.loads(metrics_before)["test"]
    assert set(saved) == {"loss", "accuracy"}
    for key in ("loss", "accuracy"):
        assert abs(result["metrics"][key] - saved[key]) <= 1e-6, (key, result["metrics"][key], saved[key])
    assert result["reproduces_training"]["within_tolerance"] is True
    # The classification report comes from the same predictions as keras's accuracy.
    assert result["accuracy"] == pytest.approx(result["metrics"]["accuracy"], abs=1e-6)
    assert result["samples"] == 10_000 and np.sum(result["confusion_matrix"]) == 10_000
    assert result["class_names"] == [str(i) for i in range(10)]

    assert (run / rd.METRICS).read_bytes() == metrics_before, "evaluate must never rewrite metrics.json"
    for name in (rd.EVALUATION, "confusion_matrix.csv", "confusion_matrix.png", "misclassified.png"):
        assert (run / name).stat().st_size > 0, name
    assert json.loads((run / rd.EVALUATION).read_text())["metrics"] == result["metrics"]


@pytest.mark.slow
def test_fashion_report_uses_class_names_and_writes_pictures(fashion_run, tmp_path):
    from PIL import Image

    run = copy_run(fashion_run, tmp_path)
    result = runner.invoke(app, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the report is for people: stderr
    for text in ("per class", "Ankle boot", "T-shirt/top", "macro F1", "weighted F1", "most confused", "confusion matrix"):
        assert text in result.stderr, text

    with open(run / "confusion_matrix.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == list(FASHION_CLASSES) and [r[0] for r in rows[1:]] == list(FASHION_CLASSES)
    evaluation = json.loads((run / rd.EVALUATION).read_text())
    counts = np.array([[int(v) for v in r[1:]] for r in rows[1:]])
    assert counts.tolist() == evaluation["confusion_matrix"]
    assert counts.sum(axis=1).tolist() == [c["support"] for c in evaluation["per_class"]]
    worst = evaluation["most_confused"][0]
    i, j = FASHION_CLASSES.index(worst["true"]), FASHION_CLASSES.index(worst["predicted"])
    assert worst["count"] == counts[i, j] == (counts - np.diag(np.diag(counts))).max()

    wrong = evaluation["misclassified"]
    assert wrong["count"] == counts.sum() - np.trace(counts) and 0 < len(wrong["shown"]) <= 25
    with Image.open(run / "misclassified.png") as image:
        assert image.format == "PNG" and image.size[0] > 500
    with Image.open(run / "confusion_matrix.png") as image:
        assert image.format == "PNG"


@pytest.mark.slow
def test_other_splits_get_their_own_files(fashion_run, tmp_path):
    run = copy_run(fashion_run, tmp_path)
    validation = evaluate_json(run, "--split", "validation")
    assert validation["split"] == "validation" and validation["samples"] == 100  # 10% of the 1,000 images
    assert "reproduces_training" not in validation
    metrics = json.loads((run / rd.METRICS).read_text())
    assert validation["metrics"]["loss"] == pytest.approx(metrics["validation"]["loss"], abs=1e-5)
    assert (run / "evaluation-validation.json").is_file() and (run / "confusion_matrix-validation.csv").is_file()
    assert not (run / rd.EVALUATION).exists(), "a non-test split must not write evaluation.json"

    train = evaluate_json(run, "--split", "train")
    assert train["samples"] == 900 and (run / "evaluation-train.json").is_file()


@pytest.mark.slow
def test_binary_task_reports_threshold_precision_recall_and_auc(diabetes_run, tmp_path):
    run = copy_run(diabetes_run, tmp_path)
    result = evaluate_json(run)
    binary = result["binary"]
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    assert binary["positive_class"] == "1" and binary["threshold"] == 0.5
    assert binary["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
    assert binary["recall"] == pytest.approx(tp / (tp + fn))
    assert 0.0 <= binary["roc_auc"] <= 1.0
    assert abs(result["metrics"]["accuracy"] - (tp + tn) / 192) <= 1e-6
    assert "misclassified" not in result and not (run / "misclassified.png").exists()  # no images
    report = runner.invoke(app, ["evaluate", str(run)])
    assert "ROC AUC" in report.stderr and "positive class 1" in report.stderr


@pytest.mark.slow
def test_data_option_with_the_test_images_as_idx_reproduces_the_test_split(mnist_run, tmp_path, data_dir):
    from nnrun.datasets import read_idx

    run = copy_run(mnist_run, tmp_path)
    images = read_idx(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz")
    folder = tmp_path / "mydigits"
    folder.mkdir()
    (folder / "digits-images.idx").write_bytes(idx_bytes(images))
    (folder / "digits-labels.idx").write_bytes(idx_bytes(labels))

    other = evaluate_json(run, "--data", str(folder))
    test = json.loads((run / rd.METRICS).read_text())["test"]
    assert other["split"] == f"data:{folder}" and other["samples"] == 10_000
    assert abs(other["metrics"]["loss"] - test["loss"]) <= 1e-6
    assert (run / "evaluation-data-mydigits.json").is_file() and not (run / rd.EVALUATION).exists()


@pytest.mark.slow
def test_data_option_with_the_test_rows_as_csv_reproduces_the_test_split(diabetes_run, tmp_path):
    from nnrun.config import validate_config
    from nnrun.datasets import load_dataset

    run = copy_run(diabetes_run, tmp_path)
    config = validate_config(rd.RunDir(run).read_config())
    data = load_dataset(config.dataset)
    path = tmp_path / "held_out.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Outcome", *data.feature_names])  # other column order: columns go by name
        for x, y in zip(data.x_test, data.y_test):
            writer.writerow([data.class_names[y], *(repr(float(v)) for v in x)])

    other = evaluate_json(run, "--data", str(path))
    test = json.loads((run / rd.METRICS).read_text())["test"]
    assert other["samples"] == len(data.x_test) == 192
    assert abs(other["metrics"]["loss"] - test["loss"]) <= 1e-6
    assert abs(other["metrics"]["accuracy"] - test["accuracy"]) <= 1e-6
