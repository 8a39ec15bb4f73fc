"""nnrun report: self-contained HTML pages for a run and for a set of runs, checked in a real headless browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnrun.cli import app
from nnrun.report import (
    COMPARE_SECTIONS,
    RUN_SECTIONS,
    build_compare_report,
    build_run_report,
)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A private copy: the report may write evaluation files, and the fixture runs are shared."""
    return Path(shutil.copytree(run, tmp_path / run.name))


def assert_self_contained(page: str) -> None:
    # No file, server or network is needed: every src is a data: URI and nothing is fetched.
    sources = re.findall(r'\ssrc="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "@import" not in page


@pytest.mark.slow
def test_run_report_has_every_section_and_the_runs_numbers(diabetes_run, tmp_path):
    run = copy_run(diabetes_run, tmp_path)
    notes: list[str] = []
    page = build_run_report(run, notes=notes)
    for section in RUN_SECTIONS:
        assert f'<section id="{section}">' in page
    assert_self_contained(page)
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{metrics['test']['accuracy']:.4f}" in page and f"{metrics['test']['loss']:.4f}" in page
    assert "loss: binary_crossentropy" in page  # the config, verbatim
    assert "Total params" in page  # the model summary
    assert json.loads((run / "run.json").read_text())["versions"]["tensorflow"] in page
    # The confusion matrix did not exist: the report evaluated the run, as nnrun evaluate does.
    assert (run / "confusion_matrix.png").is_file() and any("evaluated the test split" in n for n in notes)
    assert 'alt="confusion matrix"' in page
    assert "not image data (diabetes): no sample images." in page


@pytest.mark.slow
def test_run_report_without_a_model_says_what_is_missing(diabetes_run, tmp_path):
    run = copy_run(diabetes_run, tmp_path)
    (run / "model.keras").unlink()
    page = build_run_report(run)
    assert "no confusion matrix: the run is completed and has no model.keras." in page
    # A run without curves.png (pruned, interrupted, still running) has them drawn from its history.csv.
    (run / "curves.png").unlink()
    page = build_run_report(run)
    assert 'alt="training curves"' in page and "drawn from history.csv: the run is completed." in page
    (run / "history.csv").write_text("epoch,accuracy,loss\n1,0.5,0.6\n2,0.5")  # cut off mid-line: the page still comes
    assert "no curves.png: the run is completed." in build_run_report(run)


@pytest.mark.slow
def test_image_run_report_via_the_cli(mnist_run, tmp_path):
    run = copy_run(mnist_run, tmp_path)
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    target = run / "report.html"
    assert result.stdout.strip().splitlines()[-1] == str(target)
    page = target.read_text()
    assert_self_contained(page)
    assert 'alt="sample test images"' in page and 'alt="misclassified"' in page
    assert len(re.findall(r"<img ", page)) == 4  # curves, confusion matrix, samples, misclassified


@pytest.mark.slow
def test_compare_report_has_the_table_and_overlaid_curves(diabetes_run, mnist_run, tmp_path):
    folder = tmp_path / "runs"
    for run in (diabetes_run, mnist_run):
        copy_run(run, folder)
    page = build_compare_report([folder])
    for section in COMPARE_SECTIONS:
        assert f'<section id="{section}">' in page
    assert_self_contained(page)
    assert diabetes_run.name in page and mnist_run.name in page
    assert "<th>dataset.name</th>" in page  # a key that differs between the two runs
    assert 'alt="val_accuracy per epoch"' in page and 'alt="loss per epoch"' in page
    result = CliRunner().invoke(app, ["report", "--compare", str(folder)])
    assert result.exit_code == 0, result.output
    assert (folder / "report.html").is_file()


def test_compare_report_of_a_sweep_folder_ranks_its_runs_as_the_sweep_does(tmp_path):
    from dataclasses import replace
    from datetime import datetime

    from nnrun import rundir as rd
    from nnrun.sweep.orchestrate import start_sweep
    from nnrun.sweep.space import trial_config
    from nnrun.sweep.state import Trial, write_state

    from conftest import ROOT, dead_pid

    path, state = start_sweep(ROOT / "configs/diabetes_sweep.yaml", runs_dir=tmp_path, metric="val_loss")
    runs = {}
    for second, (trial, status, losses) in enumerate([(2, "crashed", [0.2]), (1, "completed", [0.6, 0.5]),
                                                       (2, "completed", [0.7, 0.4]), (3, "pruned", [0.3])]):  # fmt: skip
        name = f"{state.name}-t0{trial}"
        config = trial_config(state.base_config, {"model.layers.0.units": 8 * second + 8}, name=name, runs_dir=str(path))
        run = rd.RunDir(rd.create_run_dir(path, name, datetime(2026, 1, 1, 0, 0, second)))
        run.start(name=name, seed=42, argv=[], now=datetime(2026, 1, 1), extra={"config": config.to_dict()})
        (run.path / rd.HISTORY).write_text("epoch,val_loss\n" + "".join(f"{i},{v}\n" for i, v in enumerate(losses, 1)))
        if status == "crashed":  # its worker was killed; the retry trained trial 2 in a new run
            run.update_run(pid=dead_pid())
            run.release()
        else:
            run.finish(status, now=datetime(2026, 1, 1, 0, 1))
        runs[(trial, status)] = run.path.name
    state.trials = [Trial(1, "t01", {}, "completed", run_dirs=[runs[1, "completed"]]),
                    Trial(2, "t02", {}, "completed", run_dirs=[runs[2, "completed"]], previous_run_dirs=[runs[2, "crashed"]]),
                    Trial(3, "t03", {}, "pruned", run_dirs=[runs[3, "pruned"]])]  # fmt: skip
    write_state(path, state)
    page = build_compare_report([path])
    table = page[page.index('<section id="comparison">') : page.index('<section id="curves">')]
    # By the sweep's metric (the lower loss first), completed trials before the pruned one, whose value is of fewer
    # epochs; the attempt the retry replaced is left out, as in the sweep's table.
    order = [runs[2, "completed"], runs[1, "completed"], runs[3, "pruned"]]
    assert sorted(order, key=table.index) == order and "sorted by best_val_loss" in page
    assert f"left out 1 run(s) of earlier attempts that a retry replaced ({runs[2, 'crashed']})" in table
    assert table.count(runs[2, "crashed"]) == 1  # in that note only
    # A --sort of the user's own is the order shown: the pruned trial's lower loss first.
    page = build_compare_report([path], sort="best_val_loss")
    table = page[page.index('<section id="comparison">') : page.index('<section id="curves">')]
    order = [runs[3, "pruned"], runs[2, "completed"], runs[1, "completed"]]
    assert sorted(order, key=table.index) == order
    # A metric measured at the end, which none of these runs has (their trials were pruned, say): by accuracy.
    write_state(path, replace(state, metric="validation.accuracy"))
    assert "sorted by best_val_accuracy" in build_compare_report([path])


def test_report_errors_are_one_line(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "is not an nnrun run directory" in result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path), str(tmp_path)])
    assert result.exit_code == 2 and "give one run directory" in result.output
    result = CliRunner().invoke(app, ["report", "--compare", str(tmp_path)])
    assert result.exit_code == 2 and "no run directories" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ browser


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="nnrun-chromium-") as profile:
        return subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip


@pytest.mark.slow
def test_report_renders_in_a_headless_browser(mnist_run, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("no headless browser installed (apt-get install chromium)")
    run = copy_run(mnist_run, tmp_path)
    assert CliRunner().invoke(app, ["report", str(run)]).exit_code == 0
    url = (run / "report.html").resolve().as_uri()

    dom = headless(browser, "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in RUN_SECTIONS:
        assert f'id="{section}"' in dom.stdout
    # The page's script counted the images the browser decoded: all of them.
    body = re.search(r'<body data-images="(\d+)" data-images-decoded="(\d+)"', dom.stdout)
    assert body, "the page's load script did not run"
    assert int(body.group(1)) == 4 and body.group(1) == body.group(2)

    screenshot = tmp_path / "report.png"
    shot = headless(browser, f"--screenshot={screenshot}", "--window-size=1200,3000", url)
    assert shot.returncode == 0 and screenshot.is_file(), shot.stderr[-2000:]
    from PIL import Image

    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1200, 3000)
    # A drawn page, not a blank one: text, tables and the figures give many distinct colours.
    assert len(image.getcolors(maxcolors=1_000_000)) > 200
