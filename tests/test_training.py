"""Real end-to-end trainings on small data: every run-directory file, determinism, pre-flight."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from nnrun import rundir as rd
from nnrun.config import load_config, validate_config
from nnrun.errors import ConfigError

from conftest import ROOT, train_config


def read_history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / rd.HISTORY) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_run_directory_holds_every_file(diabetes_run):
    run = diabetes_run
    assert run.parent.name == "diabetes" and run.name.endswith("-tiny-diabetes")
    for name in (rd.CONFIG, rd.RUN, rd.HISTORY, rd.METRICS, rd.MODEL, rd.PREPROCESSING, rd.SUMMARY, rd.CURVES, rd.LOG):
        assert (run / name).is_file() and (run / name).stat().st_size > 0, name
    assert not list(run.glob(".*tmp*")), "temp files left behind"

    config = validate_config(yaml.safe_load((run / rd.CONFIG).read_text()))
    assert config.training.epochs == 3 and config.training.batch_size == 32  # the resolved config, overrides applied

    info = json.loads((run / rd.RUN).read_text())
    assert info["status"] == "completed" and info["id"] == run.name and info["name"] == "tiny-diabetes"
    assert info["seed"] == 42 and info["error"] is None and info["duration_s"] > 0
    assert set(info["versions"]) >= {"python", "nnrun", "tensorflow", "keras", "numpy"}
    assert info["versions"]["tensorflow"][0].isdigit()
    assert info["model"]["params"] == 12 * 8 + 12 + 8 * 12 + 8 + 8 + 1
    assert info["host"] and info["argv"] == ["pytest"]

    history = read_history(run)
    assert [int(r["epoch"]) for r in history] == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(history[0])

    metrics = json.loads((run / rd.METRICS).read_text())
    assert set(metrics) >= {"train", "validation", "test", "best_epoch", "epochs_run"}
    assert metrics["epochs_run"] == 3 and 1 <= metrics["best_epoch"] <= 3
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0 and metrics["test"]["loss"] > 0
    assert metrics["train"]["loss"] == pytest.approx(float(history[-1]["loss"]))
    assert metrics["validation"]["accuracy"] == pytest.approx(float(history[-1]["val_accuracy"]))

    prep = json.loads((run / rd.PREPROCESSING).read_text())
    assert prep["steps"] == []
    assert "Total params: 221" in (run / rd.SUMMARY).read_text()
    assert (run / rd.CURVES).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (run / rd.LOG).read_text()
    assert "epoch 3/3" in log and "\x1b[" not in log
    assert (run / rd.LAST_CHECKPOINT).is_file()


@pytest.mark.slow
def test_saved_model_reproduces_test_metrics(diabetes_run):
    from nnrun.datasets import load_dataset
    from nnrun.preprocessing import Pipeline
    from nnrun.tf import import_keras
    from nnrun.training import evaluate_arrays

    keras = import_keras()
    config = validate_config(yaml.safe_load((diabetes_run / rd.CONFIG).read_text()))
    data = load_dataset(config.dataset)
    pipe = Pipeline.from_dict(json.loads((diabetes_run / rd.PREPROCESSING).read_text()))
    x, y = pipe.transform(data.x_test, data.y_test)
    model = keras.models.load_model(diabetes_run / rd.MODEL)
    test = evaluate_arrays(model, x, y)
    saved = json.loads((diabetes_run / rd.METRICS).read_text())["test"]
    assert test["loss"] == pytest.approx(saved["loss"], abs=1e-6)
    assert test["accuracy"] == pytest.approx(saved["accuracy"], abs=1e-6)


def strip_times(rows):
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]


DIABETES_FAST = ["training.epochs=4", "training.batch_size=16", "dataset.validation=0.2"]


@pytest.mark.slow
def test_same_seed_gives_identical_history(tmp_path, diabetes_run):
    sets = DIABETES_FAST + ["run.seed=7"]
    a = train_config(ROOT / "configs" / "diabetes_mlp.yaml", tmp_path / "a", sets)
    b = train_config(ROOT / "configs" / "diabetes_mlp.yaml", tmp_path / "b", sets)
    c = train_config(ROOT / "configs" / "diabetes_mlp.yaml", tmp_path / "c", DIABETES_FAST + ["run.seed=8"])
    assert strip_times(read_history(a.run_dir)) == strip_times(read_history(b.run_dir))
    assert a.metrics == b.metrics
    assert strip_times(read_history(a.run_dir)) != strip_times(read_history(c.run_dir))


@pytest.mark.slow
def test_steps_per_execution_gives_the_same_history(tmp_path):
    sets = DIABETES_FAST + ["run.seed=3"]
    one = train_config(ROOT / "configs" / "diabetes_mlp.yaml", tmp_path / "one", sets + ["training.steps_per_execution=1"])
    many = train_config(ROOT / "configs" / "diabetes_mlp.yaml", tmp_path / "many", sets + ["training.steps_per_execution=auto"])
    assert json.loads((many.run_dir / rd.RUN).read_text())["steps_per_execution"] > 1
    h1, h2 = read_history(one.run_dir), read_history(many.run_dir)
    for r1, r2 in zip(h1, h2, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert float(r1[key]) == pytest.approx(float(r2[key]), rel=1e-5), key


@pytest.mark.slow
def test_jit_compile_gives_the_same_history(tmp_path):
    sets = DIABETES_FAST + ["run.seed=3"]
    off = train_config(ROOT / "configs" / "diabetes_mlp.yaml", tmp_path / "off", sets + ["training.jit_compile=false"])
    on = train_config(ROOT / "configs" / "diabetes_mlp.yaml", tmp_path / "on", sets + ["training.jit_compile=true"])
    h1, h2 = read_history(off.run_dir), read_history(on.run_dir)
    for r1, r2 in zip(h1, h2, strict=True):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            # XLA fuses and reorders float32 arithmetic: equal to rounding, not bit for bit
            assert float(r1[key]) == pytest.approx(float(r2[key]), rel=1e-4), key


def test_preflight_failure_leaves_no_run_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"the last layer gives 7 outputs but the dataset has 10 classes; set model.layers\[1\].units to 10"):
        train_config(ROOT / "configs" / "mnist_dense32.yaml", tmp_path / "runs", ["model.layers.1.units=7", "dataset.limit=100"])
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_image_run_with_validation_split(fashion_run):
    history = read_history(fashion_run)
    assert len(history) == 1 and "val_accuracy" in history[0]
    info = json.loads((fashion_run / rd.RUN).read_text())
    assert info["dataset"] == "fashion_mnist" and info["model"]["layers"] == "C64k2-MP2-F-D10"


def test_choosing_the_epoch_on_the_test_set_is_warned(data_dir, tmp_path):
    from typer.testing import CliRunner

    from nnrun.cli import app

    config = yaml.safe_load((ROOT / "configs" / "mnist_dense32.yaml").read_text())
    config["dataset"].update(validation="test", limit=300)
    config["training"]["callbacks"] = [{"type": "EarlyStopping", "monitor": "val_loss", "restore_best_weights": True}]
    (tmp_path / "chosen.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["check", str(tmp_path / "chosen.yaml")])
    assert result.exit_code == 0, result.output
    assert "the test figures are chosen on the test set" in result.stderr and "dataset.validation: 0.1" in result.stderr
    shipped = load_config(ROOT / "configs" / "mnist_mlp_earlystop.yaml")
    assert shipped.dataset.validation == 0.1  # the shipped example holds out part of train


@pytest.mark.slow
def test_the_metric_names_nnrun_checks_monitors_against_are_the_ones_keras_logs():
    """Callback monitors and a sweep's --metric are checked against ``metric_names``, before anything trains: a
    metric given by name is logged under that very name: AUC as AUC, auc as auc."""
    from types import SimpleNamespace

    import numpy as np

    from nnrun.keras_names import metric_names
    from nnrun.tf import import_keras

    keras = import_keras()
    names = ["accuracy", "AUC", "TopKCategoricalAccuracy", "KLDivergence", "F1Score", "auc", "top_k_categorical_accuracy",
             "LogCoshError", "RootMeanSquaredError", "CategoricalCrossentropy", "mae", "Precision"]  # fmt: skip
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = keras.utils.to_categorical(np.arange(32) % 3, 3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=list(names))
    logged = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0).history
    config = SimpleNamespace(training=SimpleNamespace(metrics=names))
    assert sorted(metric_names(config, validation=True)) == sorted(logged), sorted(logged)


@pytest.mark.slow
def test_a_diverged_training_stops_at_the_first_nan_loss_and_says_how_to_fix_it(tmp_path):
    from typer.testing import CliRunner

    from nnrun.cli import app

    result = CliRunner().invoke(app, ["train", str(ROOT / "configs" / "penguins_mass.yaml"), "--set",
                                      "training.optimizer={type: sgd, learning_rate: 1.0e9}", "--set", "training.epochs=5",
                                      "--runs-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip().splitlines()[-1])
    rows = list(csv.DictReader((run / rd.HISTORY).open()))
    assert len(rows) == 1 and rows[0]["loss"] == "nan"  # not four more epochs of NaN
    assert json.loads((run / rd.METRICS).read_text())["diverged_epoch"] == 1  # the run says so itself
    info = json.loads((run / rd.RUN).read_text())
    assert (info["status"], info["diverged_epoch"], rd.effective_status(info, run)) == ("completed", 1, "diverged")
    assert "warning: the loss is NaN in epoch 1: the training diverged" in result.output
    assert "Lower training.optimizer.learning_rate" in (run / rd.LOG).read_text()


@pytest.mark.slow
def test_the_default_monitors_nnrun_assumes_are_keras_own():
    import inspect

    from nnrun.keras_names import DEFAULT_MONITORS
    from nnrun.tf import import_keras

    callbacks = vars(import_keras().callbacks)
    defaults = {name: inspect.signature(cls).parameters["monitor"].default for name, cls in callbacks.items()
                if inspect.isclass(cls) and "monitor" in inspect.signature(cls).parameters}  # fmt: skip
    assert defaults == DEFAULT_MONITORS


@pytest.mark.slow
def test_a_callback_path_that_cannot_be_written_is_named_not_the_run_directory(tmp_path):
    from nnrun.errors import RunDirError

    bad = tmp_path / "no-such-folder" / "log.csv"
    with pytest.raises(RunDirError, match=f"^cannot write {bad}: No such file or directory. It is outside the run "
                       r"directory: a path the config gives \(a filename in training.callbacks, say\)"):  # fmt: skip
        train_config(ROOT / "configs" / "diabetes_mlp.yaml", tmp_path / "runs",
                     ["training.epochs=1", f"training.callbacks=[{{type: CSVLogger, filename: '{bad}'}}]"])
    (run,) = (tmp_path / "runs").glob("*/")
    assert json.loads((run / rd.RUN).read_text())["status"] == "failed"  # not left looking complete
