"""The CLI through typer's CliRunner, and import-cost checks in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnrun.cli import app

from conftest import ROOT

runner = CliRunner()
DIABETES = str(ROOT / "configs" / "diabetes_mlp.yaml")


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from nnrun.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported by --help'\n"
        "for cmd in ('train', 'check'):\n"
        "    try:\n        app([cmd, '--help'])\n    except SystemExit:\n        pass\n"
        "assert 'tensorflow' not in sys.modules, 'TF imported by a command --help'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout


def test_python_dash_m_works():
    result = subprocess.run([sys.executable, "-m", "nnrun", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "Usage" in result.stdout


@pytest.mark.slow
def test_train_quiet_prints_only_the_run_directory(tmp_path):
    result = runner.invoke(app, ["train", DIABETES, "--set", "training.epochs=2", "--set", "training.batch_size=64",
                                 "--runs-dir", str(tmp_path), "--name", "quick", "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    run_dir = Path(lines[0])
    assert run_dir.parent == tmp_path and run_dir.name.endswith("-quick")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"
    assert result.stderr == ""


@pytest.mark.slow
def test_train_smoke_shows_progress_and_summary(tmp_path):
    result = runner.invoke(app, ["train", DIABETES, "--smoke", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "epoch 1/" in result.stderr and "test" in result.stderr and "run directory" in result.stderr
    run_dir = Path(result.stdout.strip())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["smoke"] is True and info["epochs_run"] == 1


def test_two_runs_in_the_same_second_get_distinct_directories(tmp_path):
    from datetime import datetime

    from nnrun.rundir import create_run_dir

    now = datetime(2026, 1, 2, 3, 4, 5)
    paths = [create_run_dir(tmp_path, "x", now) for _ in range(3)]
    assert [p.name for p in paths] == ["20260102-030405-x", "20260102-030405-x-2", "20260102-030405-x-3"]


@pytest.mark.parametrize(
    "args, code, expected",
    [
        (["train", "nope.yaml"], 2, "config file nope.yaml not found"),
        (["train", DIABETES, "--set", "training.epocs=3"], 2, "did you mean 'epochs'?"),
        (["train", DIABETES, "--set", "model.layers.0.type=Dens"], 2, "keras.layers has no layer 'Dens'; did you mean 'Dense'?"),
        (["train", DIABETES, "--set", "model.layers.0.units=0"], 2, "model.layers[0] (Dense)"),
        (["check", DIABETES, "--set", "training.optimizer.type=adamm"], 2, "unknown optimizer 'adamm'; did you mean 'adam'?"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, args, code, expected):
    result = runner.invoke(app, args + (["--runs-dir", str(tmp_path)] if args[0] == "train" else []))
    assert result.exit_code == code, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error:") and sum("Error" in line for line in lines) == 1
    if args[0] == "train":
        assert all(line.startswith("override ") for line in lines[:-1])  # only the echoed --set values
    assert not any(tmp_path.iterdir())


def test_debug_shows_the_traceback():
    result = runner.invoke(app, ["check", "nope.yaml", "--debug"])
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_check_reports_shapes_and_summary():
    result = runner.invoke(app, ["check", DIABETES])
    assert result.exit_code == 0, result.output
    assert "schema valid" in result.stderr and "Total params" in result.stderr and "(576, 8)" in result.stderr
