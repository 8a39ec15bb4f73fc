"""nnrun compare and list: every run shown with its status, keys, filters, sorting, formats, no TensorFlow."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nnrun import rundir as rd
from nnrun.cli import app
from nnrun.compare import compare_runs, lookup

from conftest import dead_pid

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent

BASE_CONFIG = {
    "dataset": {"validation": 0.2, "limit": None, "name": "mnist", "path": None},
    "preprocessing": [{"type": "flatten"}, {"type": "scale", "factor": 0.00392156862745098}, {"type": "one_hot", "num_classes": None}],
    "model": {"layers": [{"type": "Dense", "units": 64, "activation": "relu"}, {"type": "Dense", "units": 10, "activation": "softmax"}]},
    "training": {"optimizer": {"type": "adam", "learning_rate": None}, "loss": "categorical_crossentropy",
                 "metrics": ["accuracy"], "epochs": 3, "batch_size": 32, "callbacks": []},
    "run": {"name": "x", "seed": 42, "runs_dir": "runs"},
}  # fmt: skip


def make_run(folder: Path, run_id: str, *, status: str = "completed", config: dict | None = None,
             history: list[dict] | None = None, test: dict | None = None, **info: object) -> Path:
    """A hand-made run directory with the contract's small files (no model)."""
    path = folder / run_id
    path.mkdir(parents=True)
    cfg = json.loads(json.dumps(config or BASE_CONFIG))
    cfg["run"]["name"] = run_id.split("-", 2)[-1]
    (path / rd.CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False))
    history = history if history is not None else [
        {"epoch": 1, "accuracy": 0.8, "loss": 0.6, "val_accuracy": 0.85, "val_loss": 0.5},
        {"epoch": 2, "accuracy": 0.9, "loss": 0.3, "val_accuracy": 0.91, "val_loss": 0.35},
        {"epoch": 3, "accuracy": 0.95, "loss": 0.2, "val_accuracy": 0.90, "val_loss": 0.33},
    ]  # fmt: skip
    if history:
        columns = list(history[0])
        lines = [",".join(columns)] + [",".join(repr(r[c]) for c in columns) for r in history]
        (path / rd.HISTORY).write_text("\n".join(lines) + "\n")
    run_info = {
        "id": run_id, "name": cfg["run"]["name"], "status": status,
        "started": f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T{run_id[9:11]}:{run_id[11:13]}:{run_id[13:15]}",
        "duration_s": 12.5 if status != "running" else None, "pid": os.getpid(), "host": os.uname().nodename,
        "dataset": cfg["dataset"]["name"], "model": {"params": 50890, "layers": "D64-D10"},
        "epochs_run": len(history), "error": None, **info,
    }  # fmt: skip
    (path / rd.RUN).write_text(json.dumps(run_info))
    if status == "completed":
        last = history[-1]
        metrics = {"train": {"accuracy": last["accuracy"], "loss": last["loss"]},
                   "validation": {"accuracy": last["val_accuracy"], "loss": last["val_loss"]},
                   "best_validation": {}, "test": test or {"accuracy": 0.9, "loss": 0.34},
                   "best_epoch": 3, "epochs_run": len(history)}  # fmt: skip
        (path / rd.METRICS).write_text(json.dumps(metrics))
    return path


@pytest.fixture
def runs(tmp_path) -> Path:
    """A runs folder with one run of every status, unreadable folders and a damaged metrics.json."""
    folder = tmp_path / "runs"
    folder.mkdir()
    make_run(folder, "20250101-100000-base", test={"accuracy": 0.91, "loss": 0.30})
    bigger = json.loads(json.dumps(BASE_CONFIG))
    bigger["training"]["batch_size"] = 128
    bigger["model"]["layers"][0]["units"] = 512
    bigger["training"]["optimizer"] = {"type": "sgd", "learning_rate": None}
    make_run(folder, "20250102-100000-bigger", config=bigger, test={"accuracy": 0.95, "loss": 0.18})
    fashion = json.loads(json.dumps(BASE_CONFIG))
    fashion["dataset"]["name"] = "fashion_mnist"
    fashion["training"]["optimizer"]["learning_rate"] = 0.0005
    make_run(folder, "20250103-100000-fashion", config=fashion, test={"accuracy": 0.85, "loss": 0.41})
    make_run(folder, "20250104-100000-broken", status="failed", error="NnrunError: out of memory", history=[])
    make_run(folder, "20250105-100000-stopped", status="interrupted", history=[
        {"epoch": 1, "accuracy": 0.7, "loss": 0.9, "val_accuracy": 0.75, "val_loss": 0.8}])
    make_run(folder, "20250106-100000-live", status="running")  # this test's own pid: alive
    make_run(folder, "20250107-100000-gone", status="running", pid=dead_pid())
    damaged = make_run(folder, "20250108-100000-damaged")
    (damaged / rd.METRICS).write_text("{\"test\": ")
    (folder / "zz-no-run-json").mkdir()
    (folder / "zz-no-run-json" / rd.CONFIG).write_text("dataset: {}\n")
    (folder / "zz-corrupt").mkdir()
    (folder / "zz-corrupt" / rd.RUN).write_text("{\"id\": ")
    (folder / ".hidden").mkdir()  # never listed
    return folder


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def as_json(*args: str) -> list[dict]:
    result = invoke("compare", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# ------------------------------------------------------------- the table


def test_every_run_is_shown_with_its_status_and_unreadable_folders_with_the_reason(runs):
    (runs / "sweep-20250109-100000-fresh").mkdir()
    (runs / "sweep-20250109-100000-fresh" / rd.SWEEP).write_text("{}")  # its first trial has not started
    (runs / "zz-[dim]x").mkdir()  # a name rich would read as a style tag
    (runs / "zz-[dim]x" / "notes.txt").write_text("x")
    result = invoke("compare", runs)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the table is for people: stderr
    lines = {line.split()[0]: line for line in result.stderr.splitlines() if line.strip()}
    expected = {
        "20250101-100000-base": "completed", "20250104-100000-broken": "failed", "20250105-100000-stopped": "interrupted",
        "20250106-100000-live": "running", "20250107-100000-gone": "crashed", "20250108-100000-damaged": "completed",
        "zz-no-run-json": "unreadable", "zz-corrupt": "unreadable",
    }  # fmt: skip
    for run_id, status in expected.items():
        assert f" {status} " in lines[run_id], lines[run_id]
    assert ".hidden" not in result.stderr
    assert "zz-no-run-json: unreadable: not a run directory (no run.json)" in result.stderr
    assert "sweep-20250109-100000-fresh: unreadable: a sweep folder with no trial runs yet" in result.stderr
    (runs / "sweep-20250109-100000-fresh" / rd.SWEEP).write_text(json.dumps({"counts": {"invalid": 4}}))  # all invalid
    result = invoke("compare", runs)
    assert "fresh: unreadable: a sweep folder with no trial runs (its trials: 4 invalid, in sweep.json)" in result.stderr
    assert "zz-[dim]x: unreadable" in result.stderr
    assert "zz-corrupt: unreadable: corrupt run.json" in result.stderr
    assert "20250108-100000-damaged: metrics.json is corrupt" in result.stderr
    assert "12 runs" in result.stderr


def test_the_default_columns_and_their_values(runs):
    rows = {r["id"]: r for r in as_json(runs)}
    base, bigger, fashion = rows["20250101-100000-base"], rows["20250102-100000-bigger"], rows["20250103-100000-fashion"]
    assert list(base)[:16] == [
        "id", "name", "dataset", "status", "epochs", "optimizer", "learning_rate", "batch_size", "layers", "params",
        "best_val_accuracy", "best_val_loss", "test_accuracy", "test_loss", "duration", "started",
    ]  # fmt: skip
    assert base["name"] == "base" and base["dataset"] == "mnist" and base["epochs"] == 3
    # Runs from before run.json recorded the learning rate used: the config's, and none where it left it unset.
    assert (base["optimizer"], base["learning_rate"], base["batch_size"]) == ("adam", None, 32)
    assert (bigger["optimizer"], bigger["learning_rate"], bigger["batch_size"]) == ("sgd", None, 128)
    assert fashion["learning_rate"] == 0.0005 and fashion["dataset"] == "fashion_mnist"
    # Best over all epochs of history.csv: max val_accuracy (epoch 2), min val_loss (epoch 3).
    assert (base["best_val_accuracy"], base["best_val_loss"]) == (0.91, 0.33)
    assert (base["test_accuracy"], base["test_loss"]) == (0.91, 0.30)
    assert (base["layers"], base["params"], base["duration"]) == ("D64-D10", 50890, 12.5)
    assert base["started"].startswith("2025-01-0")
    assert rows["20250104-100000-broken"]["error"] == "NnrunError: out of memory"
    assert rows["20250105-100000-stopped"]["best_val_accuracy"] == 0.75 and rows["20250105-100000-stopped"]["test_accuracy"] is None
    assert rows["zz-corrupt"]["status"] == "unreadable" and rows["zz-corrupt"]["error"].startswith("corrupt run.json")
    assert rows["20250108-100000-damaged"]["problems"][0].startswith("metrics.json is corrupt")


@pytest.mark.slow
def test_real_runs_read_back_as_their_files_say(diabetes_run, mnist_run):
    rows = {r["id"]: r for r in as_json(diabetes_run, mnist_run.parent)}
    mnist = rows[mnist_run.name]
    info = json.loads((mnist_run / rd.RUN).read_text())
    metrics = json.loads((mnist_run / rd.METRICS).read_text())
    with open(mnist_run / rd.HISTORY, newline="") as handle:
        history = list(csv.DictReader(handle))
    assert mnist["status"] == "completed" and mnist["dataset"] == "mnist" and mnist["epochs"] == 2
    # The config leaves the rate unset: the column shows what training recorded, Keras's own RMSprop default.
    from nnrun.tf import import_keras

    default = float(import_keras().optimizers.RMSprop().learning_rate)
    assert info["signature"]["learning_rate"] == pytest.approx(default)
    assert (mnist["optimizer"], mnist["learning_rate"], mnist["batch_size"]) == ("rmsprop", pytest.approx(default), 128)
    assert mnist["layers"] == "D32-D10" == info["model"]["layers"] and mnist["params"] == info["model"]["params"] == 25450
    assert mnist["best_val_accuracy"] == max(float(r["val_accuracy"]) for r in history)
    assert mnist["best_val_loss"] == min(float(r["val_loss"]) for r in history)
    assert mnist["test_accuracy"] == metrics["test"]["accuracy"] and mnist["test_loss"] == metrics["test"]["loss"]
    assert mnist["duration"] == info["duration_s"] and mnist["started"] == info["started"]
    assert rows[diabetes_run.name]["layers"] == "D12-D8-D1" and rows[diabetes_run.name]["batch_size"] == 32


def test_the_learning_rate_is_the_one_training_recorded_else_the_configs(runs):
    def record(run_id: str, rate: float) -> None:
        info = json.loads((runs / run_id / rd.RUN).read_text())
        info["signature"] = {"input_shape": [28, 28], "learning_rate": rate}
        (runs / run_id / rd.RUN).write_text(json.dumps(info))

    record("20250102-100000-bigger", 0.01)  # sgd, rate unset in the config
    record("20250103-100000-fashion", 0.00049)  # the recorded rate wins over the config's 0.0005
    rows = {r["id"]: r for r in as_json(runs, "--filter", "status=completed")}
    assert rows["20250102-100000-bigger"]["learning_rate"] == 0.01
    assert rows["20250103-100000-fashion"]["learning_rate"] == 0.00049
    assert rows["20250101-100000-base"]["learning_rate"] is None  # nothing recorded, nothing in the config
    assert [r["id"] for r in as_json(runs, "--filter", "lr=0.01")] == ["20250102-100000-bigger"]

    table = invoke("compare", runs, "-c", "id,learning_rate", "--filter", "status=completed").stderr
    lines = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:] if line.strip()}
    assert lines["20250102-100000-bigger"] == ["0.01"] and lines["20250103-100000-fashion"] == ["0.00049"]
    assert lines["20250101-100000-base"] == ["-"]
    csv_rows = {r["id"]: r for r in csv.DictReader(io.StringIO(
        invoke("compare", runs, "-c", "id,learning_rate", "--format", "csv").stdout))}
    assert csv_rows["20250101-100000-base"]["learning_rate"] == "" and csv_rows["20250102-100000-bigger"]["learning_rate"] == "0.01"


# ---------------------------------------------------------- sort and filter


def test_sort_accuracy_descends_loss_ascends_missing_last_and_direction_can_be_forced(runs):
    rows = as_json(runs, "--sort", "test.accuracy")
    # The damaged run's metrics.json is unreadable: like the runs without one, it sorts last.
    assert [r["test_accuracy"] for r in rows] == [0.95, 0.91, 0.85] + [None] * 7
    assert [r["id"] for r in rows[:3]] == ["20250102-100000-bigger", "20250101-100000-base", "20250103-100000-fashion"]
    ascending = [r["test_accuracy"] for r in as_json(runs, "--sort", "test_accuracy", "--asc")]
    assert ascending == [0.85, 0.91, 0.95] + [None] * 7  # missing values stay last

    losses = [r["test_loss"] for r in as_json(runs, "--sort", "test_loss") if r["test_loss"] is not None]
    assert losses == [0.18, 0.30, 0.41]
    forced = [r["test_loss"] for r in as_json(runs, "--sort", "test_loss", "--desc") if r["test_loss"] is not None]
    assert forced == [0.41, 0.30, 0.18]
    batch = [r["batch_size"] for r in as_json(runs, "--sort", "training.batch_size", "--desc")]
    assert batch[0] == 128 and batch[-1] is None


def test_filters_on_columns_metrics_and_config_keys(runs):
    assert [r["id"] for r in as_json(runs, "--filter", "dataset=fashion_mnist")] == ["20250103-100000-fashion"]
    high = as_json(runs, "--filter", "test.accuracy>0.9")
    assert sorted(r["id"] for r in high) == ["20250101-100000-base", "20250102-100000-bigger"]
    both = as_json(runs, "-f", "test.accuracy>=0.9", "-f", "training.batch_size=128")
    assert [r["id"] for r in both] == ["20250102-100000-bigger"]
    assert {r["status"] for r in as_json(runs, "--filter", "status!=completed")} == {
        "failed", "interrupted", "running", "crashed", "unreadable"}
    assert [r["id"] for r in as_json(runs, "--filter", "model.layers.0.units=512")] == ["20250102-100000-bigger"]
    assert [r["id"] for r in as_json(runs, "--filter", "error~memory")] == ["20250104-100000-broken"]
    assert as_json(runs, "--filter", "validation.loss<0") == []  # last-epoch values from metrics.json


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--filter", "tset.accuracy>0.9"], "--filter 'tset.accuracy>0.9': no run has the key 'tset.accuracy'; did you mean 'test.accuracy'?"),
        (["--filter", "accuracy"], "--filter 'accuracy': expected KEY OP VALUE"),
        (["--sort", "test_acuracy"], "--sort 'test_acuracy': no run has the key 'test_acuracy'; did you mean 'test_accuracy'?"),
        (["--columns", "id,bogus"], "--columns 'bogus': no run has the key 'bogus'"),
        (["--format", "xml"], "--format must be one of table, csv, markdown, json; got 'xml'"),
        (["--plot", "{tmp}/p.png", "--metric", "val_f1"], "--metric val_f1: no listed run logged it in history.csv"),
    ],
)
def test_bad_options_are_one_line_usage_errors(runs, tmp_path, args, expected):
    result = invoke("compare", runs, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ") and expected in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_a_path_that_does_not_exist(tmp_path):
    result = invoke("compare", tmp_path / "nope")
    assert result.exit_code == 2 and "nope: not found. Pass a runs folder or a run directory" in result.stderr


def test_the_default_path_is_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_run(tmp_path / "runs", "20250101-100000-here")
    result = invoke("compare", "--format", "csv")
    assert result.exit_code == 0 and "20250101-100000-here" in result.stdout
    (tmp_path / "empty").mkdir()
    result = invoke("compare", tmp_path / "empty")
    assert result.exit_code == 0 and "no runs in" in result.stderr


def test_one_run_directory_and_nested_runs_folders(runs, tmp_path):
    assert [r["id"] for r in as_json(runs / "20250101-100000-base")] == ["20250101-100000-base"]
    nested = tmp_path / "projects"
    shutil.copytree(runs / "20250101-100000-base", nested / "a" / "runs" / "20250101-100000-base")
    make_run(nested / "b", "20250109-100000-other")
    assert [r["id"] for r in as_json(nested)] == ["20250101-100000-base", "20250109-100000-other"]


# --------------------------------------------------------- columns and views


def test_only_changed_shows_the_config_keys_that_differ(runs):
    result = invoke("compare", runs, "--only-changed", "--filter", "status=completed", "--format", "csv")
    assert result.exit_code == 0, result.output
    header = next(csv.reader(io.StringIO(result.stdout)))
    changed = [c for c in header if c not in ("id", "status", "best_val_accuracy", "best_val_loss", "test_accuracy", "test_loss")]
    assert changed == ["dataset.name", "model.layers[0].units", "training.optimizer.type",
                       "training.optimizer.learning_rate", "training.batch_size"]  # fmt: skip
    assert "run.name" not in header and "training.loss" not in header  # names always differ; loss never did
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert rows["20250102-100000-bigger"]["training.batch_size"] == "128"
    assert rows["20250103-100000-fashion"]["training.optimizer.learning_rate"] == "0.0005"


def test_only_changed_with_identical_configs_says_so(runs):
    result = invoke("compare", runs / "20250101-100000-base", runs / "20250108-100000-damaged", "--only-changed")
    assert result.exit_code == 0 and "all 2 readable runs share the same config" in result.stderr


def test_columns_can_be_chosen_or_added(runs):
    result = invoke("compare", runs, "--columns", "id,test.accuracy,training.batch_size", "--format", "csv",
                    "--filter", "status=completed")  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[0] == "id,test_accuracy,training.batch_size"
    assert "20250102-100000-bigger,0.95,128" in lines
    added = invoke("compare", runs, "-c", "+host", "-c", "+best_epoch", "--format", "csv").stdout.splitlines()[0]
    assert added.endswith(",started,host,best_epoch") and added.startswith("id,name,dataset,status")


def test_list_is_compare_with_fewer_columns(runs):
    result = invoke("list", runs, "--format", "csv", "--sort", "started", "--filter", "status=completed")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["id", "dataset", "status", "epochs", "best_val_accuracy", "test_accuracy", "duration", "started"]
    assert [r[0] for r in rows[1:]] == ["20250101-100000-base", "20250102-100000-bigger", "20250103-100000-fashion",
                                        "20250108-100000-damaged"]  # fmt: skip


# ---------------------------------------------------------------- formats


def test_markdown_csv_and_output_file(runs, tmp_path):
    markdown = invoke("compare", runs, "--format", "markdown", "-c", "id,status,test_accuracy").stdout.splitlines()
    assert markdown[0] == "| id | status | test_accuracy |" and markdown[1] == "| --- | --- | ---: |"
    assert "| 20250102-100000-bigger | completed | 0.9500 |" in markdown
    assert "| zz-corrupt | unreadable | - |" in markdown

    target = tmp_path / "out" / "table.csv"
    target.parent.mkdir()
    result = invoke("compare", runs, "--format", "csv", "-o", target)
    assert result.exit_code == 0 and result.stdout == "" and f"wrote 10 runs to {target}" in result.stderr
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 10 and {r["status"] for r in rows} >= {"crashed", "unreadable", "failed"}

    text = tmp_path / "table.txt"
    assert invoke("compare", runs, "-o", text).exit_code == 0
    assert "20250107-100000-gone" in text.read_text() and "\x1b[" not in text.read_text()  # plain text, no colour


def test_plot_overlays_the_validation_curves(runs, tmp_path):
    from PIL import Image

    target = tmp_path / "val.png"
    result = invoke("compare", runs, "--plot", target)
    assert result.exit_code == 0, result.output
    assert "20250104-100000-broken: no val_accuracy in history.csv; not plotted" in result.stderr
    with Image.open(target) as image:
        assert image.format == "PNG"
    loss = tmp_path / "loss.png"
    assert invoke("compare", runs, "--plot", loss, "--metric", "loss").exit_code == 0 and loss.stat().st_size > 0


def test_plot_of_groups_draws_each_groups_mean_per_epoch_with_its_spread(tmp_path, monkeypatch):
    """--group-by --plot said no run logged val_accuracy: the groups' rows have no history of their own."""
    from PIL import Image

    from nnrun import plots

    folder = tmp_path / "runs"
    curves = {64: [[0.5, 0.7], [0.7, 0.9]], 512: [[0.6, 0.8]]}  # two seeds of 64 units, one of 512
    for units, histories in curves.items():
        for seed, values in enumerate(histories):
            config = json.loads(json.dumps(BASE_CONFIG))
            config["model"]["layers"][0]["units"] = units
            make_run(folder, f"2025010{seed}-10000{units % 7}-u{units}s{seed}", config=config,
                     history=[{"epoch": e, "accuracy": v, "loss": 1 - v, "val_accuracy": v, "val_loss": 1 - v}
                              for e, v in enumerate(values, 1)])  # fmt: skip
    nan = json.loads(json.dumps(BASE_CONFIG))
    nan["model"]["layers"][0]["units"] = 64
    make_run(folder, "20250109-100000-u64-diverged", config=nan, history=[  # a third seed: NaN in epoch 2, left out
        {"epoch": 1, "accuracy": 0.6, "loss": 0.4, "val_accuracy": 0.6, "val_loss": 0.4},
        {"epoch": 2, "accuracy": 0.5, "loss": math.nan, "val_accuracy": math.nan, "val_loss": math.nan}])  # fmt: skip
    drawn = []
    real = plots.plot_runs
    monkeypatch.setattr(plots, "plot_runs", lambda series, path, metric: drawn.append(series) or real(series, path, metric=metric))
    target = tmp_path / "groups.png"
    result = invoke("compare", folder, "--group-by", "model.layers.0.units", "--plot", target)
    assert result.exit_code == 0, result.output
    (series,) = drawn
    by_label = {label: (epochs, means, stds) for label, epochs, means, stds in series}
    epochs, means, stds = by_label["model.layers[0].units=64 (3 runs; fewer from epoch 2)"]  # the NaN is left out
    assert epochs == [1.0, 2.0] and means == pytest.approx([0.6, 0.8]) and stds == pytest.approx([0.1, 0.02**0.5])
    assert by_label["model.layers[0].units=512 (1 run)"][1:] == ([0.6, 0.8], [0.0, 0.0])
    with Image.open(target) as image:
        assert image.format == "PNG"


def test_wide_tables_are_cut_to_the_terminal_width():
    from nnrun.compare import Comparison, RunRecord, render_text

    record = RunRecord(Path("r"), "completed", fields={"id": "x" * 60, "name": "y" * 60, "status": "completed"})
    text = render_text(Comparison(["id", "name", "status"], [record], 1), width=50).plain
    assert max(len(line) for line in text.splitlines()) <= 50 and "…" in text


def test_which_way_is_better_for_keras_metrics_and_their_short_names():
    from nnrun.compare.query import higher_is_better

    higher = ["best_val_accuracy", "test_r2", "validation.AUC", "test.auc", "validation.acc", "test.f1_score",
              "validation.FBetaScore", "validation.cosine_similarity", "validation.MeanIoU", "test.mean_io_u",
              "train.TruePositives", "validation.precision", "validation.pearson_correlation"]  # fmt: skip
    lower = ["best_val_loss", "test_rmse", "test.mae", "validation.bce", "test.ce", "validation.KLDivergence",
             "validation.kld", "test.huber", "validation.root_mean_squared_error", "train.FalseNegatives",
             "validation.logcosh", "test.categorical_hinge"]  # fmt: skip
    assert [k for k in higher if higher_is_better(k) is not True] == []
    assert [k for k in lower if higher_is_better(k) is not False] == []
    assert [higher_is_better(k) for k in ("validation.mean", "learning_rate", "model.layers[0].units")] == [None] * 3


def test_a_groups_mean_and_std_are_shown_to_the_digits_their_column_needs():
    from nnrun.compare.query import MeanStd
    from nnrun.compare.tables import display

    assert display("model.layers[0].units", MeanStd([1.0, 2.0, 2.0, 3.0, 3.0])) == "2.2 ± 0.837"  # not 0.83666
    assert display("dataset.limit", MeanStd([1000.0, 5000.0])) == "3000 ± 2828"  # not 2.83e+03
    assert display("test_accuracy", MeanStd([0.70, 0.74, 0.78])) == "0.7400 ± 0.0400"
    assert display("duration", MeanStd([30.0, 90.0])) == "1m00s ± 42.4s"
    assert display("epochs", MeanStd([5.0])) == "5"


# ------------------------------------------------------------------ speed


@pytest.mark.slow
def test_compare_list_show_and_help_never_import_tensorflow(runs, diabetes_run, tmp_path):
    """Each command runs in a fresh interpreter; the check must see TensorFlow (or MLflow) when a command does load it."""
    harness = (
        "import sys\n"
        "from nnrun.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:], standalone_mode=False)\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'pandas', 'mlflow'))\n"
        "print('HEAVY=' + ','.join(heavy[:3]), file=sys.stderr)\n"
    )

    def heavy_modules(*args: str) -> tuple[str, str]:
        done = subprocess.run([sys.executable, "-c", harness, *map(str, args)], check=False, capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "200"}, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stderr.rsplit("HEAVY=", 1)[1].strip(), done.stdout + done.stderr

    for args in (["compare", runs], ["compare", runs, "--only-changed", "--format", "json"], ["list", runs],
                 ["show", diabetes_run], ["--help"], ["compare", "--help"], ["mlflow", "sync", "--help"]):  # fmt: skip
        heavy, output = heavy_modules(*args)
        assert heavy == "", f"{args} imported {heavy}"
        assert args[-1] == "--help" or "20250101-100000-base" in output or "completed" in output
    # The control: evaluate does load TensorFlow, and the same check sees it.
    # (on a private copy: evaluate writes its files into the run, and the session run is shared)
    private = Path(shutil.copytree(diabetes_run, tmp_path / "evaluated" / diabetes_run.name))
    heavy, _ = heavy_modules("evaluate", private, "--json")
    assert "tensorflow" in heavy or "keras" in heavy
    if importlib.util.find_spec("mlflow"):  # and mlflow sync loads MLflow
        heavy, _ = heavy_modules("mlflow", "sync", private, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
        assert "mlflow" in heavy


def test_config_comes_from_run_json_and_from_config_yaml_for_older_runs(tmp_path):
    def with_lr(value: float) -> dict:
        config = json.loads(json.dumps(BASE_CONFIG))
        config["training"]["optimizer"]["learning_rate"] = value
        return config

    new = make_run(tmp_path, "20260101-000000-new", config=with_lr(0.1))
    old = make_run(tmp_path, "20260101-000001-old", config=with_lr(0.2))
    info = json.loads((new / rd.RUN).read_text())
    info["config"] = yaml.safe_load((new / rd.CONFIG).read_text())
    (new / rd.RUN).write_text(json.dumps(info))
    (new / rd.CONFIG).write_text("not: [valid")  # proves run.json's copy was the one read
    assert "config" not in json.loads((old / rd.RUN).read_text())
    rows = {r.path.name: r for r in compare_runs([tmp_path]).records}
    assert lookup(rows[new.name], "training.optimizer.learning_rate") == 0.1 and not rows[new.name].problems
    assert lookup(rows[old.name], "training.optimizer.learning_rate") == 0.2


@pytest.mark.slow
def test_a_real_run_json_carries_the_config_yaml(diabetes_run):
    info = json.loads((diabetes_run / rd.RUN).read_text())
    assert info["config"] == yaml.safe_load((diabetes_run / rd.CONFIG).read_text())


def test_many_generated_runs_are_read_filtered_and_sorted(tmp_path):
    """bench/compare_bench.py's run generator (its timings are the benchmark's, not a test's): every run read, the
    unreadable ones filtered out, the rest sorted by their test accuracy."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from compare_bench import make_runs
    finally:
        sys.path.remove(str(ROOT / "bench"))
    make_runs(tmp_path, 300)
    every = compare_runs([tmp_path])
    comparison = compare_runs([tmp_path], sort="test.accuracy", filters=["status!=unreadable"])
    unreadable = [r for r in every.records if r.status == "unreadable"]  # the generator's corrupt ones, and others
    assert len(every.records) >= 300 and unreadable and len(comparison.records) == len(every.records) - len(unreadable)
    assert all(r.status != "unreadable" for r in comparison.records)
    accuracies = [lookup(r, "test.accuracy") for r in comparison.records]
    measured = [a for a in accuracies if isinstance(a, float)]
    assert measured and measured == sorted(measured, reverse=True) and accuracies[: len(measured)] == measured


def test_group_by_groups_values_not_their_text_sorts_by_any_key_and_survives_an_infinite_loss(tmp_path):
    folder = tmp_path / "runs"
    rates = [(0, 0.9), (0.0, 0.1), (0.5, 0.5), ("0.5", 0.3)]  # 0 and 0.0: one value; 0.5 and '0.5': two
    for day, (rate, loss) in enumerate(rates, 1):
        config = json.loads(json.dumps(BASE_CONFIG))
        config["model"]["layers"][0]["units"] = rate
        make_run(folder, f"202501{day:02d}-100000-r{day}", config=config, test={"accuracy": 1 - loss, "loss": loss},
                 history=[{"epoch": 1, "accuracy": 0.5, "loss": 0.5, "val_accuracy": 0.5, "val_loss": 10 * loss}])
    rows = as_json(folder, "--group-by", "model.layers.0.units", "--columns", "test_loss")
    assert sorted((json.dumps(r["model.layers[0].units"]), r["runs"]) for r in rows) == [('"0.5"', 1), ("0", 2), ("0.5", 1)]
    # Sorted by a key the table does not show (each group's mean of it), and by its run counts.
    rows = as_json(folder, "--group-by", "model.layers.0.units", "--columns", "test_loss", "--sort", "validation.loss")
    assert [r["test_loss"]["mean"] for r in rows] == pytest.approx([0.3, 0.5, 0.5])
    assert [r["runs"] for r in as_json(folder, "--group-by", "model.layers.0.units", "--sort", "runs")] == [1, 1, 2]
    config = json.loads(json.dumps(BASE_CONFIG))
    make_run(folder, "20250120-100000-overflowed", config={**config, "model": {**config["model"], "layers": [
        {**config["model"]["layers"][0], "units": 0}]}}, test={"accuracy": 0.5, "loss": math.inf})  # fmt: skip
    table = invoke("compare", folder, "--group-by", "model.layers.0.units", "--columns", "test_loss")
    assert table.exit_code == 0 and "inf ± -" in table.output, table.output  # the mean, and no std to give
    (zero,) = [r for r in as_json(folder, "--group-by", "model.layers.0.units") if r["model.layers[0].units"] == 0]
    assert zero["test_loss"] == {"mean": None, "std": None, "n": 3}  # JSON has no Infinity
    assert json.loads(invoke("compare", folder, "--format", "json", "--columns", "test_loss").stdout,
                      parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))  # fmt: skip


def test_group_by_gives_each_groups_run_count_and_mean_and_std_by_hand(tmp_path):
    folder = tmp_path / "runs"
    accuracies = {64: [0.70, 0.74, 0.78], 512: [0.80, 0.84]}
    day = 0
    for units, values in accuracies.items():
        for value in values:
            day += 1
            config = json.loads(json.dumps(BASE_CONFIG))
            config["model"]["layers"][0]["units"] = units
            make_run(folder, f"202501{day:02d}-100000-seed{day}", config=config, test={"accuracy": value, "loss": 1 - value})
    config["model"]["layers"][0]["units"] = 512
    make_run(folder, "20250120-100000-pruned", config=config, status="pruned")
    rows = as_json(folder, "--group-by", "model.layers.0.units", "--sort", "test_accuracy")
    assert [r["model.layers[0].units"] for r in rows] == [512, 64]  # ranked by the mean, best first
    wide, narrow = rows
    assert narrow["runs"] == 3 and narrow["status"] == "completed"
    assert narrow["test_accuracy"]["mean"] == pytest.approx(0.74) and narrow["test_accuracy"]["std"] == pytest.approx(0.04)
    # The pruned run counts as a run of its group but has no test accuracy: the mean is over the two that do.
    assert wide["runs"] == 3 and wide["status"] == "2 completed, 1 pruned"
    assert wide["test_accuracy"] == {"mean": pytest.approx(0.82), "std": pytest.approx(0.02 * 2 ** 0.5), "n": 2}
    table = invoke("compare", folder, "--group-by", "model.layers.0.units")
    assert "0.7400 ± 0.0400" in table.output and "mean ± standard deviation" in table.output
    assert "2 groups of 6 runs" in table.output
    table = invoke("compare", folder, "--group-by", "model.layers.0.units", "--columns", "epochs,test_accuracy",
                   "--format", "csv", "--sort", "test_accuracy")  # fmt: skip
    header, wide = table.stdout.splitlines()[:2]  # numbers a spreadsheet reads, not 'a ± b' in one cell
    assert header == "model.layers[0].units,runs,epochs,epochs_std,test_accuracy,test_accuracy_std"
    assert [float(x) for x in wide.split(",")] == pytest.approx([512, 3, 3, 0, 0.82, 0.02 * 2**0.5])
    filtered = invoke("compare", folder, "--group-by", "model.layers.0.units", "--filter", "model.layers.0.units=64")
    assert "1 group of 3 runs" in filtered.output  # the runs in the groups, not every run read
    config["model"]["layers"][0]["units"] = 8
    make_run(folder, "20250130-100000-narrowest", config=config, test={"accuracy": 0.6, "loss": 0.4})
    rows = as_json(folder, "--group-by", "model.layers.0.units")  # no --sort: by the groups' values, as pandas
    assert [r["model.layers[0].units"] for r in rows] == [8, 64, 512]  # numbers by size, not '512' < '64' < '8'
    result = invoke("compare", folder, "--group-by", "model.layers.0.units", "--only-changed")  # was ignored
    assert result.exit_code == 2 and "--only-changed lists the config keys whose values differ" in result.output
    result = invoke("compare", folder, "--group-by", "model.layers.0.unit")
    assert result.exit_code == 2 and "--group-by 'model.layers.0.unit': no run has the key" in result.output
    # Trial numbers repeat from sweep to sweep: grouping two sweeps' runs by trial would merge strangers.
    for sweep, day in (("sweep-a", 21), ("sweep-a", 22), ("sweep-b", 23)):
        make_run(tmp_path / sweep, f"202501{day}-100000-t01", trial=1, test={"accuracy": 0.5, "loss": 0.5})
    assert as_json(tmp_path / "sweep-a", "--group-by", "trial")[0]["runs"] == 2
    # A run that a retry replaced (a killed attempt) is not one of the trial's seeds: sweep.json lists it as such.
    trial = {"index": 1, "name": "t01", "params": {}, "run_dir": "20250122-100000-t01",
             "previous_run_dirs": ["20250121-100000-t01"]}  # fmt: skip
    sweep = {"id": "sweep-a", "name": "x", "mode": "grid", "grid": {}, "metric": "test_accuracy", "base_config": {},
             "trials": [trial]}  # fmt: skip
    (tmp_path / "sweep-a" / rd.SWEEP).write_text(json.dumps(sweep))
    assert as_json(tmp_path / "sweep-a", "--group-by", "trial")[0]["runs"] == 1
    assert as_json(tmp_path / "sweep-a", "--group-by", "model.layers.0.units")[0]["runs"] == 1  # by any key, too
    grouped = invoke("compare", tmp_path / "sweep-a", "--group-by", "trial")
    assert "left out 1 run(s) of earlier attempts that a retry replaced (20250121-100000-t01)" in grouped.output
    assert len(as_json(tmp_path / "sweep-a")) == 2  # ungrouped, every run is listed, with its own status
    (tmp_path / "sweep-a" / rd.SWEEP).write_text("{bad")  # unreadable: every run counts, and the note says why
    grouped = invoke("compare", tmp_path / "sweep-a", "--group-by", "trial")
    assert grouped.exit_code == 0 and "corrupt JSON" in grouped.output and "Every run of each trial is counted." in grouped.output
    assert as_json(tmp_path / "sweep-a", "--group-by", "trial")[0]["runs"] == 2
    result = invoke("compare", tmp_path / "sweep-a", tmp_path / "sweep-b", "--group-by", "trial")
    assert result.exit_code == 2 and "--group-by trial: these runs come from 2 sweeps (sweep-a, sweep-b)" in result.output
    result = invoke("compare", tmp_path, "--group-by", "trial")  # runs/ first, whose runs are no trials
    assert f"e.g. nnrun compare {tmp_path / 'sweep-a'} --group-by trial." in result.output.replace("\n", "")
