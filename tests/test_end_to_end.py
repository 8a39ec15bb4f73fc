"""The command line end to end: real trainings through ``nnrun train``, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnrun.cli import app

from conftest import ROOT

runner = CliRunner()
DIABETES = str(ROOT / "configs" / "diabetes_mlp.yaml")


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
    assert "epoch 1/1 " in result.stderr and "test" in result.stderr and "run directory" in result.stderr
    assert "parameters; 1 epoch (smoke; the config's 150)" in result.stderr  # what it trains, not the config's 150
    run_dir = Path(result.stdout.strip())
    info = json.loads((run_dir / "run.json").read_text())
    assert info["smoke"] is True and info["epochs_run"] == 1
