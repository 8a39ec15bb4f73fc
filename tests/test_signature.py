"""A run describes its own inputs: predict, show and compare work with the training data gone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from nnrun.cli import app

from conftest import ROOT, train_config

pytestmark = pytest.mark.slow  # every test here trains a small run of its own

runner = CliRunner()
DIABETES_CSV = ROOT / "nnrun" / "datasets" / "data" / "diabetes.csv"


def predict_csv(run: Path, *inputs: Path) -> list[list[str]]:
    result = runner.invoke(app, ["predict", str(run), *map(str, inputs), "--output", "-"])
    assert result.exit_code == 0, result.output
    return [line.split(",") for line in result.stdout.strip().splitlines()]


@pytest.fixture
def csv_run(tmp_path) -> tuple[Path, Path]:
    """A run trained on a CSV of its own (string labels, columns in another order), and that CSV."""
    rows = DIABETES_CSV.read_text().splitlines()
    header, body = rows[0].split(","), [r.split(",") for r in rows[1:]]
    order = [8, *range(8)]  # the label first
    text = "\n".join(",".join(row[i] if i != 8 or row is header else ("yes" if row[8] == "1" else "no")
                              for i in order) for row in [header, *body])
    data = tmp_path / "data" / "patients.csv"
    data.parent.mkdir()
    data.write_text(text + "\n")
    config = yaml.safe_load((ROOT / "configs" / "diabetes_mlp.yaml").read_text())
    config["dataset"] = {"name": "csv", "path": str(data), "label": "Outcome"}
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(config))
    result = train_config(tmp_path / "own.yaml", tmp_path / "runs", [
        "training.epochs=2", "training.batch_size=64", "training.optimizer.learning_rate=0.004", "run.name=own-csv",
    ])  # fmt: skip
    return result.run_dir, data


def test_run_json_records_the_input_signature(csv_run):
    run, _ = csv_run
    signature = json.loads((run / "run.json").read_text())["signature"]
    assert signature["dataset"] == "csv" and signature["kind"] == "tabular"
    assert signature["feature_names"][:2] == ["Pregnancies", "Glucose"] and len(signature["feature_names"]) == 8
    assert signature["class_names"] == ["no", "yes"]
    assert signature["sample_shape"] == [8] and signature["sample_dtype"] == "float32"
    assert signature["label"] == "Outcome" and signature["label_position"] == 0
    assert signature["learning_rate"] == pytest.approx(0.004)


def test_predict_and_evaluate_data_on_a_csv_run_with_the_training_csv_gone(csv_run, tmp_path, monkeypatch):
    run, data = csv_run
    rows = data.read_text().splitlines()
    # New rows: the label dropped and the columns reordered; the header picks them by name.
    header = rows[0].split(",")
    reordered = list(reversed(header[1:]))
    new = tmp_path / "new.csv"
    new.write_text("\n".join(",".join(r.split(",")[header.index(c)] for c in reordered) for r in rows[:6]) + "\n")
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("\n".join(rows[:40]) + "\n")
    before = predict_csv(run, new)

    shutil.rmtree(data.parent)
    monkeypatch.delenv("NNRUN_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    after = predict_csv(run, new)
    assert after == before and len(after) == 6 and after[0][:2] == ["input", "predicted"]
    assert {row[1] for row in after[1:]} <= {"no", "yes"}

    result = runner.invoke(app, ["evaluate", str(run), "--data", str(labelled), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["samples"] == 39 and json.loads(result.stdout)["class_names"] == ["no", "yes"]
    for command in (["show", str(run)], ["compare", str(run.parent), "--format", "json"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["learning_rate"] == pytest.approx(0.004)


def test_predict_on_an_mnist_run_with_the_idx_files_gone(tmp_path, data_dir, monkeypatch):
    folder = tmp_path / "mnist"
    shutil.copytree(data_dir / "mnist", folder)
    monkeypatch.setenv("NNRUN_CACHE_DIR", "off")
    result = train_config(ROOT / "configs" / "mnist_dense32.yaml", tmp_path / "runs", [
        f"dataset.path={folder}", "dataset.limit=600", "training.epochs=1", "run.name=own-mnist",
    ])  # fmt: skip
    from PIL import Image

    from nnrun.datasets import read_idx

    images = read_idx(folder / "t10k-images-idx3-ubyte.gz")[:3]
    paths = []
    for i, image in enumerate(images):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(image).save(paths[-1])
    before = predict_csv(result.run_dir, *paths)

    shutil.rmtree(folder)
    monkeypatch.delenv("NNRUN_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "no-keras-home"))  # and no Keras cache to fall back on
    after = predict_csv(result.run_dir, *paths)
    assert after == before and [row[0] for row in after[1:]] == ["digit0.png", "digit1.png", "digit2.png"]
    assert all(row[1] in [str(d) for d in range(10)] for row in after[1:])


def test_an_old_run_without_a_signature(csv_run, tmp_path, monkeypatch):
    run, data = csv_run
    info = json.loads((run / "run.json").read_text())
    del info["signature"]
    (run / "run.json").write_text(json.dumps(info))
    new = tmp_path / "new.csv"
    new.write_text("\n".join(data.read_text().splitlines()[:3]) + "\n")
    with_csv = predict_csv(run, new)  # rebuilt from the training CSV, as before signatures
    assert len(with_csv) == 3

    shutil.rmtree(data.parent)
    result = runner.invoke(app, ["predict", str(run), str(new)])
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.startswith("Error: ") and len(message.splitlines()) == 1
    assert "trained before nnrun recorded input signatures" in message and "patients.csv" in message
    assert "Put the CSV back, or train the run again" in message


def test_signatures_of_image_datasets_are_rebuilt_for_old_runs(mnist_run, tmp_path):
    from nnrun.trained import load_trained

    run = Path(shutil.copytree(mnist_run, tmp_path / mnist_run.name))
    info = json.loads((run / "run.json").read_text())
    recorded = info.pop("signature")
    (run / "run.json").write_text(json.dumps(info))
    rebuilt = load_trained(run, model=False).signature
    assert {k: rebuilt[k] for k in ("sample_shape", "sample_dtype", "class_names", "kind")} == {
        k: recorded[k] for k in ("sample_shape", "sample_dtype", "class_names", "kind")}
    assert np.array_equal(rebuilt["sample_shape"], [28, 28])
