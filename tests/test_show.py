"""nnrun show: one run at a glance, for completed, crashed, half-written and broken run directories."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnrun import rundir as rd
from nnrun.cli import app

runner = CliRunner()


def show(run: Path):
    return runner.invoke(app, ["show", str(run)], env={"COLUMNS": "120"})


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / run.name))


@pytest.mark.slow
def test_a_completed_run_at_a_glance(diabetes_run):
    result = show(diabetes_run)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    out = result.stderr
    info = json.loads((diabetes_run / rd.RUN).read_text())
    metrics = json.loads((diabetes_run / rd.METRICS).read_text())
    assert out.splitlines()[0].split() == [diabetes_run.name, "completed"]
    facts = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert facts["dataset"].split() == ["dataset", "diabetes"] and facts["seed"].split() == ["seed", str(info["seed"])]
    assert "D12-D8-D1, 221 parameters" in facts["model"] and "pytest" in facts["command"]
    assert "config.yaml" in out and "loss: binary_crossentropy" in out and "batch_size: 32" in out  # the resolved config
    assert f"{metrics['test']['accuracy']:.4f}" in out and "best validation" in out and "(lowest val_loss)" in out
    assert "summary.txt" in out and "Total params: 221" in out
    for name in (rd.MODEL, rd.HISTORY, rd.PREPROCESSING, rd.CURVES, "checkpoints/last.keras"):
        assert name in out, name
    size = (diabetes_run / rd.RUN).stat().st_size
    assert f"{rd.RUN}" in out and (f"{size} B" in out or f"{size / 1024:.1f} KB" in out)


@pytest.mark.slow
def test_evaluations_are_listed(diabetes_run, tmp_path):
    run = copy_run(diabetes_run, tmp_path)
    assert runner.invoke(app, ["evaluate", str(run)]).exit_code == 0
    out = show(run).stderr
    assert "evaluation.json (test, 192 samples)" in out and "ROC AUC" in out and "confusion_matrix.png" in out


@pytest.mark.slow
def test_a_crashed_run_and_its_missing_files(diabetes_run, tmp_path):
    run = copy_run(diabetes_run, tmp_path)
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    info = json.loads((run / rd.RUN).read_text())
    info.update(status="running", pid=process.pid, finished=None, duration_s=None)
    (run / rd.RUN).write_text(json.dumps(info))
    for name in (rd.METRICS, rd.MODEL, rd.SUMMARY):
        (run / name).unlink()
    (run / rd.CONFIG).unlink()
    result = show(run)
    assert result.exit_code == 0, result.output
    out = result.stderr
    assert out.splitlines()[0].split() == [run.name, "crashed"]
    assert f"(pid {process.pid})" in out and "its process is gone: the run crashed" in out
    assert "note: no config.yaml" in out and "best epoch" not in out and "summary.txt" not in out


@pytest.mark.slow
def test_a_corrupt_metrics_file_is_a_note_not_a_failure(diabetes_run, tmp_path):
    run = copy_run(diabetes_run, tmp_path)
    (run / rd.METRICS).write_text("{\"test\": ")
    result = show(run)
    assert result.exit_code == 0 and "metrics.json: corrupt JSON" in result.stderr
    (run / rd.METRICS).unlink()
    result = show(run)
    assert result.exit_code == 0 and "no metrics.json, though the run completed" in " ".join(result.stderr.split())


def test_not_a_run_and_a_corrupt_run_json(tmp_path):
    result = show(tmp_path / "nowhere")
    assert result.exit_code == 2 and "run directory" in result.stderr and "not found" in result.stderr
    assert show(tmp_path).exit_code == 2 and "is not an nnrun run directory (no run.json)" in show(tmp_path).stderr
    (tmp_path / rd.SWEEP).write_text("{}")
    assert f"it is a sweep: `nnrun compare {tmp_path}` shows its trials" in show(tmp_path).stderr
    (tmp_path / rd.SWEEP).unlink()
    (tmp_path / rd.RUN).write_text("{\"status\": ")
    result = show(tmp_path)
    assert result.exit_code == 2 and "run.json: corrupt JSON" in result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1


def test_a_pruned_runs_reason_is_not_called_an_error(tmp_path):
    run = rd.RunDir(rd.create_run_dir(tmp_path, "pruned", datetime(2026, 11, 24, 10, 0, 0)))
    run.start(name="pruned", seed=1, argv=["nnrun", "sweep"], now=datetime(2026, 11, 24, 10, 0, 0))
    run.finish("pruned", now=datetime(2026, 11, 24, 10, 0, 5), error="pruned after epoch 2: val_accuracy 0.51")
    facts = {line.split()[0]: line for line in show(run.path).stderr.splitlines() if line.strip()}
    assert facts["pruned"].split(None, 1)[1].strip() == "pruned after epoch 2: val_accuracy 0.51" and "error" not in facts
