"""The CLI through typer's CliRunner: wiring with the heavy function patched, and import-cost checks.

Real trainings through the CLI are in test_end_to_end.py; bad input is in test_bad_inputs.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from nnrun.cli import app

from conftest import ROOT

runner = CliRunner()
DIABETES = str(ROOT / "configs" / "diabetes_mlp.yaml")


def test_help_does_not_import_tensorflow_or_mlflow():
    code = (
        "import sys\n"
        "from nnrun.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported by --help'\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported by --help'\n"
        "for cmd in (['train'], ['check'], ['sweep'], ['mlflow'], ['mlflow', 'sync']):\n"
        "    try:\n        app([*cmd, '--help'])\n    except SystemExit:\n        pass\n"
        "assert 'tensorflow' not in sys.modules, 'TF imported by a command --help'\n"
        "assert 'mlflow' not in sys.modules, 'mlflow imported by a command --help'\n"
        "try:\n    app(['compare', 'no-such-runs-folder'])\nexcept SystemExit:\n    pass\n"
        "assert 'optuna' not in sys.modules, 'optuna imported by --help or compare'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "--tracking-uri" in result.stdout


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "nnrun", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Usage" in result.stdout


def test_two_runs_in_the_same_second_get_distinct_directories(tmp_path):
    from datetime import datetime

    from nnrun.rundir import create_run_dir

    now = datetime(2026, 1, 2, 3, 4, 5)
    paths = [create_run_dir(tmp_path, "x", now) for _ in range(3)]
    assert [p.name for p in paths] == ["20260102-030405-x", "20260102-030405-x-2", "20260102-030405-x-3"]


def test_debug_shows_the_traceback():
    result = runner.invoke(app, ["check", "nope.yaml", "--debug"])
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_check_reports_shapes_and_summary():
    result = runner.invoke(app, ["check", DIABETES])
    assert result.exit_code == 0, result.output
    assert "schema valid" in result.stderr and "Total params" in result.stderr and "(576, 8)" in result.stderr


# ------------------------------------------------------------ wiring: the heavy function patched


class Recorder:
    """Stands in for a heavy function: records its arguments and returns what it is given."""

    def __init__(self, result=None):
        self.calls: list[tuple[tuple, dict]] = []
        self.result = result

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


@pytest.fixture
def fake_train(monkeypatch, tmp_path):
    recorder = Recorder(SimpleNamespace(run_dir=tmp_path / "runs" / "20260101-000000-x"))
    monkeypatch.setattr("nnrun.training.train", recorder)
    return recorder


def test_train_passes_the_resolved_config_and_prints_only_the_run_directory(fake_train, tmp_path):
    result = runner.invoke(app, ["train", DIABETES, "--set", "training.epochs=2", "-s", "training.batch_size=64",
                                 "--name", "quick", "--runs-dir", str(tmp_path / "elsewhere"), "--smoke"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'runs' / '20260101-000000-x'}\n"
    (config,), kwargs = fake_train.calls[0]
    assert config.training.epochs == 2 and config.training.batch_size == 64
    assert config.run.name == "quick" and config.run.runs_dir == str(tmp_path / "elsewhere")
    assert kwargs["smoke"] is True and kwargs["config_path"] == DIABETES
    # every --set is echoed; --name and --runs-dir are not
    assert "override training.epochs: 150 -> 2" in result.stderr and "training.batch_size: 1 -> 64" in result.stderr
    assert "run.name" not in result.stderr


def test_train_quiet_prints_nothing_but_the_run_directory(fake_train):
    result = runner.invoke(app, ["train", DIABETES, "--quiet"])
    assert result.exit_code == 0 and result.stderr == "" and result.stdout.strip().endswith("20260101-000000-x")
    assert fake_train.calls[0][1]["smoke"] is False


def test_resume_and_rerun_are_routed(monkeypatch, fake_train, tmp_path):
    resumed = Recorder(SimpleNamespace(run_dir=tmp_path / "resumed"))
    monkeypatch.setattr("nnrun.training.resume", resumed)
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "some-run")])
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "resumed")
    assert resumed.calls[0][0] == (tmp_path / "some-run",)

    old = tmp_path / "old-run"
    old.mkdir()
    (old / "run.json").write_text("{}")
    (old / "config.yaml").write_text((ROOT / "configs" / "diabetes_mlp.yaml").read_text().replace("epochs: 150", "epochs: 7"))
    result = runner.invoke(app, ["train", "--rerun", str(old), "--set", "training.batch_size=8"])
    assert result.exit_code == 0, result.output
    (config,), kwargs = fake_train.calls[0]
    assert config.training.epochs == 7 and config.training.batch_size == 8 and kwargs["config_path"] == str(old / "config.yaml")


def test_evaluate_passes_split_and_data_and_prints_json(monkeypatch, tmp_path):
    evaluation = SimpleNamespace(result={"run": "r", "metrics": {"loss": 0.5}})
    evaluate = Recorder(evaluation)
    monkeypatch.setattr("nnrun.evaluation.evaluate_run", evaluate)
    monkeypatch.setattr("nnrun.evaluation.write_evaluation", Recorder([]))
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--split", "validation", "--data", "x.csv", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"run": "r", "metrics": {"loss": 0.5}}
    assert evaluate.calls == [((tmp_path,), {"split": "validation", "data": Path("x.csv")})]


def test_predict_passes_its_options_and_writes_csv_to_stdout(monkeypatch, tmp_path):
    import numpy as np

    from nnrun.predict import Predictions

    predictions = Predictions(["a.png"], np.array([[0.25, 0.75]]), ("cat", "dog"), 2)
    predict = Recorder(predictions)
    monkeypatch.setattr("nnrun.predict.predict_run", predict)
    result = runner.invoke(app, ["predict", str(tmp_path), "a.png", "--top-k", "2", "--invert", "--output", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["input,predicted,probability,top_k,cat,dog",
                                          "a.png,dog,0.750000,dog:0.750000; cat:0.250000,0.250000,0.750000"]
    assert predict.calls == [((tmp_path, [Path("a.png")]), {"top_k": 2, "invert": True})]


def test_report_writes_the_page_it_is_given(monkeypatch, tmp_path):
    monkeypatch.setattr("nnrun.report.build_run_report", Recorder("<html>page</html>"))
    result = runner.invoke(app, ["report", str(tmp_path), "--no-evaluate"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.html").read_text() == "<html>page</html>"
    assert result.stdout.strip() == str(tmp_path / "report.html")


def test_an_unexpected_exception_is_one_line_and_exit_1(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr("nnrun.predict.predict_run", broken)
    result = runner.invoke(app, ["predict", str(tmp_path), "a.png"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: unexpected RuntimeError: disk on fire (run again with --debug for the traceback)."


def test_name_and_runs_dir_are_taken_as_the_text_typed():
    from nnrun.cli import _load

    # As YAML, 2024 is a number, null is none and ' #' starts a comment: the flags are plain text.
    config = _load(Path(DIABETES), [], name="2024", runs_dir=Path("/tmp/my runs #2"))
    assert (config.run.name, config.run.runs_dir) == ("2024", "/tmp/my runs #2")
    assert _load(Path(DIABETES), [], name="null").run.name == "null"
