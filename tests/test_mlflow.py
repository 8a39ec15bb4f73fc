"""``nnrun mlflow sync`` against real MLflow stores: a local sqlite store, and a real ``mlflow server`` on loopback.

The first part trains nothing: run directories written with nnrun's own RunDir (every status, no model), a
sqlite store, and the failure paths (a closed port, a server that never answers, MLflow missing). The second
part trains a tiny run and a two-trial sweep, syncs them to a server started here, and reads them back with
``MlflowClient``. The bad inputs that fit the catalogue's rows are in test_bad_inputs.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnrun import rundir as rd
from nnrun.cli import app
from nnrun.config import load_config
from nnrun.sweep.state import SweepState, Trial, write_state
from nnrun.tracking import targets
from nnrun.tracking.mapping import run_metrics, run_params
from nnrun.tracking.targets import find_targets

from conftest import ROOT, dead_pid

TRAINING_FIXTURES = {"sweep_dir", "evaluated_run"}
DIABETES = ROOT / "configs" / "diabetes_mlp.yaml"
NOW = datetime(2026, 11, 23, 10, 0, 0)
runner = CliRunner()


# ---------------------------------------------------------------- helpers


def write_run(folder: Path, name: str, *, status: str = "completed", epochs: int = 3, pid: int | None = None,
              error: str | None = None) -> rd.RunDir:
    """A run directory as training writes it (nnrun's RunDir, the real resolved diabetes config), without a model."""
    config = load_config(DIABETES, ["training.epochs=3", f"run.name={name}"])
    run = rd.RunDir(rd.create_run_dir(folder, name, NOW))
    run.write_config(config.to_yaml())
    run.start(name=name, seed=config.run.seed, argv=["pytest"], now=NOW, extra={"config": config.to_dict(), "dataset": "diabetes"})
    write_epochs(run, epochs)
    if pid is not None:
        run.update_run(pid=pid)
        run.release()  # as a killed process's lock goes with it
    if status != "running":
        finish(run, status, epochs, error=error)
    return run


def write_epochs(run: rd.RunDir, epochs: int) -> None:
    run.write_history([{"epoch": e, "accuracy": 0.6 + e / 100, "loss": 1 / e, "val_accuracy": 0.55 + e / 100,
                        "val_loss": 1.2 / e, "time_s": 0.5} for e in range(1, epochs + 1)])


def finish(run: rd.RunDir, status: str, epochs: int, error: str | None = None) -> None:
    if status == "completed":
        run.write_metrics({"test": {"accuracy": 0.75, "loss": 0.5}, "best_epoch": epochs, "epochs_run": epochs})
    run.finish(status, now=NOW + timedelta(seconds=10), error=error)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sync(*args: str | Path):
    return runner.invoke(app, ["mlflow", "sync", *map(str, args)])


def runs_by_nnrun_id(client, experiment: str) -> dict[str, object]:
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    return {r.data.tags.get("nnrun.run_id") or r.data.tags["nnrun.sweep_id"]: r for r in runs}


def steps(client, run, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run.info.run_id, key))


@pytest.fixture(scope="module")
def local_store(tmp_path_factory) -> str:
    """One sqlite store for the fast tests (each uses its own experiment); creating one takes a few seconds."""
    pytest.importorskip("mlflow")
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow-local') / 'mlflow.db'}"


# ------------------------------------------------------- a local store, no training


def test_statuses_params_metrics_and_files_then_a_second_sync_duplicates_nothing(local_store, tmp_path):
    from mlflow import MlflowClient

    runs = tmp_path / "runs"
    done = write_run(runs, "done")
    crashed = write_run(runs, "crashed", status="running", epochs=2, pid=dead_pid())  # kill -9 leaves this
    failed = write_run(runs, "failed", status="failed", epochs=1, error="ValueError: boom")

    first = sync(runs, "--tracking-uri", local_store, "--experiment", "statuses")
    assert first.exit_code == 0, first.output
    client = MlflowClient(local_store)
    found = runs_by_nnrun_id(client, "statuses")
    assert set(found) == {done.id, crashed.id, failed.id}
    assert {key: r.info.status for key, r in found.items()} == {done.id: "FINISHED", crashed.id: "KILLED", failed.id: "FAILED"}
    assert found[crashed.id].data.tags["nnrun.status"] == "crashed"
    assert found[failed.id].data.tags["nnrun.error"] == "ValueError: boom"

    run = found[done.id]
    assert run.info.run_name == done.id
    params = run.data.params
    assert params["model.layers.0.units"] == "12" and params["training.loss"] == "binary_crossentropy"
    assert params["training.metrics"] == '["accuracy"]' and params["dataset.features"] == "null"
    assert steps(client, run, "val_loss") == [1, 2, 3] and steps(client, found[crashed.id], "val_loss") == [1, 2]
    assert run.data.metrics["test_accuracy"] == 0.75 and run.data.metrics["test_loss"] == 0.5
    tags = run.data.tags
    assert tags["nnrun.seed"] == "42" and tags["nnrun.dataset"] == "diabetes" and tags["nnrun.version.nnrun"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {rd.CONFIG, rd.RUN, rd.METRICS, rd.HISTORY} <= artifacts and rd.MODEL not in artifacts
    beside_the_store = (Path(local_store.removeprefix("sqlite:///")).parent / "mlruns").as_uri()  # not ./mlruns here
    assert all(r.info.artifact_uri.startswith(beside_the_store) for r in found.values())
    assert f"no {rd.MODEL}: synced without a model" in first.stderr
    assert first.stdout.count("\t") == 3  # stdout: one "MLFLOW_ID<TAB>PATH" line per run

    second = sync(runs, "--tracking-uri", local_store, "--experiment", "statuses")
    assert second.exit_code == 0, second.output
    again = runs_by_nnrun_id(client, "statuses")
    assert {k: r.info.run_id for k, r in again.items()} == {k: r.info.run_id for k, r in found.items()}
    assert steps(client, again[done.id], "val_loss") == [1, 2, 3]
    assert len(client.get_metric_history(run.info.run_id, "test_accuracy")) == 1
    assert "3 MLflow runs (0 new)" in second.stderr


def test_a_run_synced_while_it_trains_is_updated_in_place(local_store, tmp_path):
    from mlflow import MlflowClient

    run = write_run(tmp_path / "runs", "live", status="running", epochs=1)  # this process's pid: alive
    assert sync(run.path, "--tracking-uri", local_store, "-e", "live").exit_code == 0
    client = MlflowClient(local_store)
    before = runs_by_nnrun_id(client, "live")[run.id]
    assert before.info.status == "RUNNING" and steps(client, before, "loss") == [1]

    write_epochs(run, 3)
    finish(run, "completed", 3)
    assert sync(run.path, "--tracking-uri", local_store, "-e", "live").exit_code == 0
    after = runs_by_nnrun_id(client, "live")
    assert list(after) == [run.id] and after[run.id].info.run_id == before.info.run_id
    assert after[run.id].info.status == "FINISHED" and steps(client, after[run.id], "loss") == [1, 2, 3]
    assert after[run.id].data.metrics["test_accuracy"] == 0.75


def test_a_second_sync_uploads_only_the_files_that_are_new_or_changed(local_store, tmp_path):
    from mlflow import MlflowClient

    run = write_run(tmp_path / "runs", "files")
    assert sync(run.path, "--tracking-uri", local_store, "-e", "files").exit_code == 0
    mlflow_run = runs_by_nnrun_id(MlflowClient(local_store), "files")[run.id]
    store = Path(urllib.request.url2pathname(mlflow_run.info.artifact_uri.removeprefix("file://")))

    def written() -> dict[str, int]:  # when each stored copy was last written (an upload rewrites it)
        return {p.name: p.stat().st_ctime_ns for p in store.iterdir()}

    first = written()
    assert {rd.CONFIG, rd.RUN, rd.METRICS, rd.HISTORY} <= first.keys()
    time.sleep(0.05)
    run.file(rd.REPORT).write_text("<html>the report</html>")  # as `nnrun report` adds one after the run
    run.write_metrics({"test": {"accuracy": 0.8125, "loss": 0.4}, "best_epoch": 3, "epochs_run": 3})
    assert sync(run.path, "--tracking-uri", local_store, "-e", "files").exit_code == 0
    second = written()
    assert {name for name in second if second[name] != first.get(name)} == {rd.REPORT, rd.METRICS}
    assert (store / rd.REPORT).read_text() == "<html>the report</html>"
    assert json.loads((store / rd.METRICS).read_text())["test"]["accuracy"] == 0.8125


def test_a_damaged_run_among_many_is_skipped_and_named_and_alone_is_an_error(local_store, tmp_path):
    from mlflow import MlflowClient

    good = write_run(tmp_path / "runs", "good")
    bad = write_run(tmp_path / "runs", "bad-history")
    bad.file(rd.HISTORY).write_text("epoch,loss\n1,0.5,0.7\n")  # rows of different lengths
    result = sync(tmp_path / "runs", "--tracking-uri", local_store, "-e", "damaged")
    assert result.exit_code == 0, result.output
    assert f"note: skipped {bad.path}: " in " ".join(result.stderr.split()) and "1 MLflow runs (1 new)" in result.stderr
    assert set(runs_by_nnrun_id(MlflowClient(local_store), "damaged")) == {good.id}  # none made for the damaged run
    alone = sync(bad.path, "--tracking-uri", local_store, "-e", "damaged")
    assert alone.exit_code == 2 and alone.stderr.startswith(f"Error: {bad.path / rd.HISTORY}")


def test_the_default_store_is_mlflow_db_here(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    run = write_run(tmp_path / "runs", "here")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = sync(run.path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mlflow.db").is_file() and any((tmp_path / "mlruns").rglob(rd.CONFIG))
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in result.stderr


@pytest.mark.parametrize("config", ["diabetes_mlp", "penguins_species", "penguins_mass", "mnist_mlp_earlystop", "fashion_cnn"])
def test_params_paste_back_into_set(config):
    """Each param is a --set KEY=VALUE: applied to the same config, all of them change nothing."""
    path = ROOT / "configs" / f"{config}.yaml"
    resolved = load_config(path).to_dict()
    params, notes = run_params(resolved, 6000)
    assert notes == [] and "model.layers.0.type" in params
    assert load_config(path, [f"{key}={value}" for key, value in params.items()]).to_dict() == resolved


def test_params_mlflow_refuses_are_renamed_or_cut_with_a_note():
    params, notes = run_params({"dataset": {"columns": {"body mass (g)": "numeric"}}, "run": {"name": "x" * 700}}, 500)
    assert params == {"dataset.columns.body mass _g_": "numeric", "run.name": "x" * 500}
    assert "'dataset.columns.body mass (g)' is named 'dataset.columns.body mass _g_'" in notes[0]
    assert "700 characters long; cut to MLflow's limit of 500" in notes[1]


def test_metrics_are_on_the_runs_own_clock_and_regression_test_values_are_kept():
    info = {"started": "2026-11-23T10:00:00", "finished": "2026-11-23T10:00:07"}
    history = [{"epoch": 1, "loss": 4.0, "time_s": 0.5}, {"epoch": 2, "loss": 2.0, "time_s": 1.25}]
    test = {"loss": 1.5, "mae": 0.9, "rmse": 1.2, "r2": 0.83}
    start = int(datetime(2026, 11, 23, 10, 0, 0).timestamp() * 1000)
    assert run_metrics(info, history, {"test": test, "epochs_run": 2}) == [
        ("loss", 4.0, start + 500, 1), ("time_s", 0.5, start + 500, 1),
        ("loss", 2.0, start + 1750, 2), ("time_s", 1.25, start + 1750, 2),
        ("test_loss", 1.5, start + 7000, 2), ("test_mae", 0.9, start + 7000, 2),
        ("test_rmse", 1.2, start + 7000, 2), ("test_r2", 0.83, start + 7000, 2),
    ]  # fmt: skip


def test_a_runs_folder_gives_its_runs_and_sweeps_once_and_notes_the_rest(tmp_path):
    runs = tmp_path / "runs"
    alone = write_run(runs, "alone")
    sweep = runs / "sweep-20261123-100000-grid"
    trial = write_run(sweep, "grid-t01")
    write_state(sweep, SweepState(id=sweep.name, name="grid", mode="grid", grid={"model.layers.0.units": [4]}, metric="val_loss",
                                  base_config={}, trials=[Trial(1, "grid-t01", {}, "completed", trial.id)]))
    (runs / "notes").mkdir()
    (runs / "notes" / "todo.txt").write_text("not a run")
    targets, notes = find_targets([runs, trial.path, sweep / rd.SWEEP])
    assert sorted((t.kind, t.path.name) for t in targets) == [("run", alone.id), ("sweep", sweep.name)]
    assert notes == [f"skipped {runs / 'notes'}: not a run directory (no {rd.RUN})"]


# ------------------------------------------------------------- failing fast


def timed_sync(*args: str | Path) -> tuple[subprocess.CompletedProcess, float]:
    """The whole command in a fresh interpreter, as a user runs it; returns the result and the wall time."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nnrun", "mlflow", "sync", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"})
    return done, time.perf_counter() - started


def assert_one_error_line(done: subprocess.CompletedProcess, code: int, *expected: str) -> None:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert all(text in lines[0] for text in expected), lines[0]


def test_a_closed_port_fails_in_a_second(tmp_path):
    run = write_run(tmp_path / "runs", "refused")
    done, elapsed = timed_sync(run.path, "--tracking-uri", f"http://127.0.0.1:{closed_port()}")
    assert_one_error_line(done, 1, "is unreachable (connection refused)", "mlflow server")
    assert elapsed < 5, f"{elapsed:.1f}s"


def test_a_server_that_never_answers_fails_after_the_probe_timeout(tmp_path, monkeypatch):
    """A port that accepts connections and says nothing: MLflow alone would wait 120 s per try, 7 tries. In-process,
    with the probe's timeout cut to 1 s (the subprocess test above shows the whole command's one line)."""
    monkeypatch.setattr(targets, "PROBE_TIMEOUT_S", 1)
    run = write_run(tmp_path / "runs", "silent")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshakes; nobody ever reads or writes
        started = time.perf_counter()
        result = sync(run.path, "--tracking-uri", f"http://127.0.0.1:{silent.getsockname()[1]}")
        elapsed = time.perf_counter() - started
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "is unreachable (no answer within 1 s)" in lines[0], \
        result.stderr
    assert 1 <= elapsed < 6, f"{elapsed:.1f}s"


def test_without_mlflow_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    run = write_run(tmp_path / "runs", "no-mlflow")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets when it is not installed
    result = sync(run.path, "--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.exit_code == 2
    hint = ("Error: nnrun mlflow needs MLflow, which is not installed; install it with: pip install 'nnrun[mlflow]' "
            "(or: pip install 'mlflow>=3.0').")
    assert result.stderr.strip().splitlines() == [hint]


def test_a_tracking_uri_mlflow_refuses_is_one_line(tmp_path):
    pytest.importorskip("mlflow")
    run = write_run(tmp_path / "runs", "bogus")
    result = sync(run.path, "--tracking-uri", "bogus://nowhere")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --tracking-uri bogus://nowhere: ") and "Traceback" not in result.output


# ------------------------------------------- a real server, real trainings (slow)


def answers(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with a sqlite backend and served artefacts in a temp folder; killed at the end."""
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = closed_port()
    uri = f"http://127.0.0.1:{port}"
    with open(root / "server.log", "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its own process group: uvicorn and a job runner
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while not answers(uri):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}")
                time.sleep(0.5)
            yield uri
        finally:
            stop_group(server)


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, then SIGKILL to whatever is left of the group."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory) -> Path:
    """A two-trial sweep of the diabetes config, 2 epochs each, through the real CLI."""
    runs = tmp_path_factory.mktemp("mlflow-sweep")
    result = runner.invoke(app, ["sweep", str(ROOT / "configs" / "diabetes_sweep.yaml"), "--grid", "model.layers.0.units=4,8",
                                 "--grid", "training.batch_size=64", "--set", "training.epochs=2", "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def evaluated_run(diabetes_run, tmp_path_factory) -> Path:
    """A private copy of the session's diabetes run (3 epochs) with `nnrun report`'s files: confusion matrix, page."""
    run = Path(shutil.copytree(diabetes_run, tmp_path_factory.mktemp("mlflow-run") / diabetes_run.name))
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.slow
def test_a_run_and_a_sweep_on_a_server_nested_and_never_duplicated(mlflow_server, evaluated_run, sweep_dir):
    from mlflow import MlflowClient

    first = sync(evaluated_run, sweep_dir, "--tracking-uri", mlflow_server, "--experiment", "server")
    assert first.exit_code == 0, first.output
    client = MlflowClient(mlflow_server)
    found = runs_by_nnrun_id(client, "server")
    trials = sorted(p.name for p in sweep_dir.iterdir() if (p / rd.RUN).is_file())
    assert sorted(found) == sorted([evaluated_run.name, sweep_dir.name, *trials])

    run = found[evaluated_run.name]
    assert run.info.status == "FINISHED" and run.data.params["training.epochs"] == "3"
    assert run.data.params["training.batch_size"] == "32" and run.data.params["model.layers.0.units"] == "12"
    assert steps(client, run, "val_accuracy") == [1, 2, 3] and steps(client, run, "loss") == [1, 2, 3]
    assert {"test_accuracy", "test_loss"} <= set(run.data.metrics)
    assert run.data.tags["nnrun.status"] == "completed" and run.data.tags["nnrun.dataset"] == "diabetes"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    confusion = rd.evaluation_files()["confusion_png"]
    assert {rd.CURVES, confusion, rd.REPORT, rd.METRICS, rd.CONFIG, rd.RUN, rd.MODEL} <= artifacts
    model = Path(client.download_artifacts(run.info.run_id, rd.MODEL, str(sweep_dir.parent / "download")))
    assert model.read_bytes() == (evaluated_run / rd.MODEL).read_bytes()

    parent = found[sweep_dir.name]
    assert parent.data.tags["nnrun.kind"] == "sweep" and parent.info.status == "FINISHED"
    assert parent.data.params["sweep.grid.model.layers.0.units"] == "[4, 8]"
    assert {k: parent.data.params[k] for k in ("sweep.mode", "sweep.budget", "sweep.seed", "sweep.prune")} == {
        "sweep.mode": "grid", "sweep.budget": "2", "sweep.seed": "0", "sweep.prune": "none"}
    assert rd.SWEEP in {a.path for a in client.list_artifacts(parent.info.run_id)}
    for trial in trials:
        assert found[trial].data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert steps(client, found[trial], "val_loss") == [1, 2]
    assert {found[t].data.params["model.layers.0.units"] for t in trials} == {"4", "8"}

    second = sync(sweep_dir, evaluated_run, "--tracking-uri", mlflow_server, "--experiment", "server")
    assert second.exit_code == 0, second.output
    again = runs_by_nnrun_id(client, "server")
    assert {k: r.info.run_id for k, r in again.items()} == {k: r.info.run_id for k, r in found.items()}
    assert all(steps(client, again[t], "val_loss") == [1, 2] for t in trials)
    assert "4 MLflow runs (0 new)" in second.stderr
