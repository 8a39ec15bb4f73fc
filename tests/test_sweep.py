"""Sweeps: grid and random expansion (no TensorFlow), then real small sweeps on the diabetes data.

The real sweeps train the 2 x 2 grid of configs/diabetes_sweep.yaml for 2 epochs:
sequentially in this process, in 2 worker processes, on a local Ray instance,
and interrupted then resumed. Each must reach the same numbers at the same seeds.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnrun.cli import app
from nnrun.config import load_config
from nnrun.errors import ConfigError, RunInterrupted
from nnrun.sweep import execute, read_state, resume_state, start_sweep
from nnrun.sweep.space import Range, collect_grid, expand_grid, parse_grid_option, sample_grid

ROOT = Path(__file__).resolve().parent.parent
SWEEP_CONFIG = ROOT / "configs" / "diabetes_sweep.yaml"
TWO_EPOCHS = ["training.epochs=2"]


# ------------------------------------------------------------ no TensorFlow


def test_grid_option_values_are_typed_yaml():
    assert parse_grid_option("model.layers.0.units=32,64,512,784") == ("model.layers.0.units", [32, 64, 512, 784])
    assert parse_grid_option("training.optimizer.type=adam, rmsprop") == ("training.optimizer.type", ["adam", "rmsprop"])
    assert parse_grid_option("training.shuffle=true,false")[1] == [True, False]
    assert parse_grid_option("preprocessing.0.target_shape=[28,28],[784]")[1] == [[28, 28], [784]]
    # Brackets in the key are the same key.
    assert parse_grid_option("model.layers[0].units=8")[0] == "model.layers.0.units"


def test_grid_option_ranges():
    key, axis = parse_grid_option("training.optimizer.learning_rate=loguniform(1e-4, 1e-1)")
    assert key == "training.optimizer.learning_rate"
    assert axis == Range("loguniform", 1e-4, 1e-1)
    assert parse_grid_option("model.layers.0.units=randint(8,64)")[1] == Range("randint", 8, 64)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("model.layers.0.units", "expected KEY=V1,V2"),
        ("model.layers.0.units=", "no values"),
        ("x.y=loguniform(0, 1)", "loguniform needs bounds > 0"),
        ("x.y=uniform(1, 1)", "needs low < high"),
        ("x.y=normal(0, 1)", "unknown range 'normal'"),
        ("x.y=loguniform(1e-4)", "cannot read"),
        ("x.y=randint(1.5, 4)", "whole-number bounds"),
    ],
)
def test_grid_option_errors_say_what_and_how(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_grid_option(text)


def test_expand_grid_is_the_full_product_first_key_slowest():
    combos = expand_grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(combos) == 6
    assert combos[:3] == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"}]
    with pytest.raises(ConfigError, match="only random mode can sample; pass --random N"):
        expand_grid({"a": [1], "lr": Range("loguniform", 1e-4, 1e-1)})


def test_random_sampling_is_fixed_by_the_seed_and_stays_in_range():
    grid = {"lr": Range("loguniform", 1e-4, 1e-1), "units": [32, 64, 512, 784], "rate": Range("uniform", 0.0, 0.5)}
    first = sample_grid(grid, 20, seed=7)
    assert first == sample_grid(grid, 20, seed=7)
    assert first != sample_grid(grid, 20, seed=8)
    assert all(1e-4 <= t["lr"] <= 1e-1 and t["units"] in grid["units"] and 0 <= t["rate"] <= 0.5 for t in first)
    # loguniform spreads over the decades: some draws below 1e-3 and some above 1e-2.
    assert any(t["lr"] < 1e-3 for t in first) and any(t["lr"] > 1e-2 for t in first)
    # An all-list grid of 4 gives at most 4 distinct trials.
    assert len(sample_grid({"a": [1, 2], "b": [3, 4]}, 10, seed=0)) == 4


def test_cli_grid_replaces_the_config_section_key():
    config = load_config(SWEEP_CONFIG)
    grid = collect_grid(config, ["training.batch_size=8,32,128", "training.epochs=1,2"])
    assert grid == {"model.layers.0.units": [12, 64], "training.batch_size": [8, 32, 128], "training.epochs": [1, 2]}
    with pytest.raises(ConfigError, match="nothing to sweep"):
        collect_grid(load_config(ROOT / "configs" / "diabetes_mlp.yaml"), [])


def test_bad_sweeps_fail_before_anything_is_created(tmp_path):
    def start(*grid, sets=(), **kwargs):
        return start_sweep(SWEEP_CONFIG, grid_options=list(grid), sets=list(sets), runs_dir=tmp_path, **kwargs)

    with pytest.raises(ConfigError, match=r"--grid model.layers\[0\].unit: there is no key 'unit'.*did you mean 'units'"):
        start("model.layers.0.unit=1,2")
    with pytest.raises(ConfigError, match="list of 3 items"):
        start("model.layers.5.units=1,2")
    with pytest.raises(ConfigError, match="cannot vary 'run.name'"):
        start("run.name=a,b")
    with pytest.raises(ConfigError, match="no validation data.*--set dataset.validation=0.2"):
        start(sets=["dataset.validation=none"])
    with pytest.raises(ConfigError, match="--metric 'speed': not a metric"):
        start(metric="speed")
    assert list(tmp_path.iterdir()) == []


def test_schema_invalid_trials_are_marked_before_training(tmp_path):
    path, _ = start_sweep(SWEEP_CONFIG, grid_options=["training.epochs=0,2"], runs_dir=tmp_path)
    saved = json.loads((path / "sweep.json").read_text())
    assert [t["status"] for t in saved["trials"]].count("invalid") == 4  # epochs=0 with each of 2 units x 2 batch sizes
    statuses = {t["params"]["training.epochs"]: (t["status"], t["error"]) for t in saved["trials"]}
    assert statuses[0][0] == "invalid" and "training.epochs" in statuses[0][1] and "greater than or equal to 1" in statuses[0][1]
    assert statuses[2][0] == "pending"
    assert saved["mode"] == "grid" and saved["metric"] == "best_val_accuracy"
    assert path.name.startswith("sweep-") and path.name.endswith("-diabetes_sweep")


# ------------------------------------------------------------ real sweeps


def trial_results(sweep_dir: Path) -> dict[tuple, dict]:
    """params -> test metrics and history of each trial's run directory."""
    state = read_state(sweep_dir)
    out = {}
    for trial in state.trials:
        run = sweep_dir / trial.run_dir
        with open(run / "history.csv", newline="") as handle:
            history = [{k: float(v) for k, v in row.items() if k != "time_s"} for row in csv.DictReader(handle)]
        out[tuple(sorted(trial.params.items()))] = {
            "test": json.loads((run / "metrics.json").read_text())["test"],
            "history": history,
            "run": json.loads((run / "run.json").read_text()),
            "config": (run / "config.yaml").read_text(),
        }
    return out


def assert_same_results(a: dict, b: dict, tolerance: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key]["test"]["accuracy"] == b[key]["test"]["accuracy"], key
        assert math.isclose(a[key]["test"]["loss"], b[key]["test"]["loss"], abs_tol=tolerance), key
        assert len(a[key]["history"]) == len(b[key]["history"]) == 2
        for row_a, row_b in zip(a[key]["history"], b[key]["history"]):
            for metric in ("loss", "val_loss", "accuracy", "val_accuracy"):
                assert math.isclose(row_a[metric], row_b[metric], abs_tol=tolerance), (key, metric)


TRAINING_FIXTURES = {"grid_sweep"}


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory) -> tuple[Path, str]:
    """The 2 x 2 grid (units 12/64 from the config, batch 16/64 from --grid), 2 epochs, through the CLI."""
    runs = tmp_path_factory.mktemp("sweeps")
    result = CliRunner().invoke(
        app,
        ["sweep", str(SWEEP_CONFIG), "--set", "training.epochs=2", "--grid", "training.batch_size=16,64",
         "--runs-dir", str(runs)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip().splitlines()[-1]), result.output


@pytest.mark.slow
def test_grid_sweep_trains_every_trial_into_its_own_run_directory(grid_sweep):
    sweep_dir, _ = grid_sweep
    saved = json.loads((sweep_dir / "sweep.json").read_text())
    assert saved["status"] == "completed" and saved["counts"] == {"completed": 4}
    assert saved["grid"] == {"model.layers.0.units": [12, 64], "training.batch_size": [16, 64]}
    results = trial_results(sweep_dir)
    assert len(results) == 4
    for params, result in results.items():
        params = dict(params)
        assert result["run"]["status"] == "completed"
        assert result["run"]["epochs_run"] == 2
        assert f"units: {params['model.layers.0.units']}" in result["config"]
        assert f"batch_size: {params['training.batch_size']}" in result["config"]
    # Trials are ordinary run directories: nnrun compare finds all four under the sweep folder.
    from nnrun.compare import find_runs

    assert len(find_runs([sweep_dir])) == 4


@pytest.mark.slow
def test_grid_sweep_table_is_sorted_by_validation_accuracy_with_the_varied_keys(grid_sweep):
    sweep_dir, output = grid_sweep
    header = next(line for line in output.splitlines() if line.startswith("name "))
    for column in ("model.layers[0].units", "training.batch_size", "best_val_accuracy", "test_accuracy"):
        assert column in header
    rows = [line.split() for line in output.splitlines() if line.startswith("diabetes_sweep-t")]
    assert len(rows) == 4
    column = header.split().index("best_val_accuracy")
    shown = [float(row[column]) for row in rows]
    assert shown == sorted(shown, reverse=True)
    best = {
        t.name: max(r["val_accuracy"] for r in trial_results(sweep_dir)[tuple(sorted(t.params.items()))]["history"])
        for t in read_state(sweep_dir).trials
    }
    assert [row[0] for row in rows] == sorted(best, key=lambda n: -best[n])


@pytest.mark.slow
def test_invalid_combination_is_reported_and_skipped(tmp_path):
    result = CliRunner().invoke(
        app,
        ["sweep", str(SWEEP_CONFIG), "--set", "training.epochs=1", "--grid", "model.layers.0.units=12",
         "--grid", "training.batch_size=64", "--grid", "model.layers.2.units=1,3", "--runs-dir", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "invalid" in result.output and "needs one output for two classes" in result.output
    state = read_state(Path(result.stdout.strip().splitlines()[-1]))
    by_units = {t.params["model.layers.2.units"]: t for t in state.trials}
    assert by_units[1].status == "completed"
    assert by_units[3].status == "invalid" and by_units[3].run_dir is None
    assert "set model.layers[2].units" in by_units[3].error or "units: 1 with sigmoid" in by_units[3].error


@pytest.mark.slow
def test_random_mode_with_a_fixed_seed(tmp_path):
    grid = ["training.optimizer.learning_rate=loguniform(1e-4, 1e-1)", "model.layers.0.units=8,16,32"]
    args = ["sweep", str(SWEEP_CONFIG), "--set", "training.epochs=1", "--random", "2", "--seed", "3",
            "--runs-dir", str(tmp_path)] + [a for g in grid for a in ("--grid", g)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    sweep_dir = Path(result.stdout.strip().splitlines()[-1])
    state = read_state(sweep_dir)
    assert state.mode == "random" and state.seed == 3
    config = load_config(SWEEP_CONFIG)
    expected = sample_grid(collect_grid(config, grid), 2, seed=3)
    assert [t.params for t in state.trials] == expected
    for trial in state.trials:
        run_config = (sweep_dir / trial.run_dir / "config.yaml").read_text()
        assert f"learning_rate: {trial.params['training.optimizer.learning_rate']}" in run_config
        assert 1e-4 <= trial.params["training.optimizer.learning_rate"] <= 1e-1
        assert trial.status == "completed"


@pytest.mark.slow
def test_parallel_jobs_give_the_same_results_as_sequential(grid_sweep, tmp_path):
    path, state = start_sweep(SWEEP_CONFIG, sets=TWO_EPOCHS, grid_options=["training.batch_size=16,64"], runs_dir=tmp_path)
    result = execute(path, state, jobs=2)
    assert result.state.status == "completed"
    assert result.state.history[-1]["jobs"] == 2
    assert_same_results(trial_results(path), trial_results(grid_sweep[0]))


@pytest.mark.slow
def test_resume_after_an_interrupted_trial(grid_sweep, tmp_path, monkeypatch):
    """Ctrl-C in trial 2 stops the sweep; --resume continues trial 2 from its checkpoint and trains 3 and 4."""
    from nnrun import training

    original = training.make_run_callbacks
    calls = []

    def interrupting(*args, **kwargs):
        callbacks = original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the second trial: Ctrl-C during its first epoch
            from nnrun.tf import import_keras

            class CtrlC(import_keras().callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    if epoch == 0:  # the run finishes this epoch, then stops with 1 of 2 epochs done
                        os.kill(os.getpid(), signal.SIGINT)

            callbacks.append(CtrlC())
        return callbacks

    monkeypatch.setattr(training, "make_run_callbacks", interrupting)
    path, state = start_sweep(SWEEP_CONFIG, sets=TWO_EPOCHS, grid_options=["training.batch_size=16,64"], runs_dir=tmp_path)
    with pytest.raises(RunInterrupted, match="nnrun sweep --resume"):
        execute(path, state)
    stopped = read_state(path)
    assert stopped.status == "interrupted"
    assert [t.status for t in stopped.trials] == ["completed", "interrupted", "pending", "pending"]
    first_run = json.loads((path / stopped.trials[0].run_dir / "run.json").read_text())
    monkeypatch.setattr(training, "make_run_callbacks", original)

    result = CliRunner().invoke(app, ["sweep", "--resume", str(path)])
    assert result.exit_code == 0, result.output
    resumed = read_state(path)
    assert resumed.status == "completed" and [t.status for t in resumed.trials] == ["completed"] * 4
    assert "resuming" in result.output
    # Trial 1 was not trained again; trial 2 continued in the same run directory from epoch 2.
    assert json.loads((path / resumed.trials[0].run_dir / "run.json").read_text()) == first_run
    assert resumed.trials[0].attempts == 1 and resumed.trials[1].attempts == 2
    assert resumed.trials[1].run_dir == stopped.trials[1].run_dir
    second_run = json.loads((path / resumed.trials[1].run_dir / "run.json").read_text())
    assert second_run["resumed"][0]["from_epoch"] == 1
    # ...and every trial ends exactly where the uninterrupted sweep did.
    assert_same_results(trial_results(path), trial_results(grid_sweep[0]), tolerance=1e-6)
    assert len(resumed.history) == 2 and resumed.history[0]["status"] == "interrupted"


@pytest.mark.slow
def test_resume_reruns_a_failed_trial_in_a_new_run_directory(grid_sweep, tmp_path):
    path, state = start_sweep(SWEEP_CONFIG, sets=["training.epochs=1"], grid_options=["model.layers.0.units=12",
                              "training.batch_size=16,64"], runs_dir=tmp_path)  # fmt: skip
    execute(path, state)
    saved = json.loads((path / "sweep.json").read_text())
    saved["trials"][1]["status"] = "failed"
    (path / "sweep.json").write_text(json.dumps(saved))
    old_dir = saved["trials"][1]["run_dir"]
    result = execute(path, resume_state(path))
    first, second = result.state.trials
    assert first.attempts == 1 and second.attempts == 2
    assert second.status == "completed" and second.run_dir != old_dir and second.previous_run_dirs == [old_dir]
    assert (path / second.run_dir / "model.keras").is_file()


def test_resume_refuses_a_folder_that_is_not_a_sweep(tmp_path):
    result = CliRunner().invoke(app, ["sweep", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a sweep directory (no sweep.json)" in result.output
    result = CliRunner().invoke(app, ["sweep", "--resume", str(tmp_path), "--grid", "a=1"])
    assert result.exit_code == 2 and "drop --grid" in result.output


# ------------------------------------------------------------------ Ray


@pytest.mark.slow
def test_ray_executor_matches_the_local_executor(grid_sweep, tmp_path):
    pytest.importorskip("ray", reason="Ray is optional: pip install 'nnrun[ray]'")
    path, state = start_sweep(SWEEP_CONFIG, sets=TWO_EPOCHS, grid_options=["training.batch_size=16,64"], runs_dir=tmp_path)
    result = execute(path, state, executor="ray", ray_cpus=2)
    assert result.state.status == "completed" and result.state.executor == "ray"
    assert_same_results(trial_results(path), trial_results(grid_sweep[0]))
    # Each trial ran in a Ray worker process, not in this one.
    assert all(r["run"]["pid"] != os.getpid() for r in trial_results(path).values())


def test_ray_missing_gives_an_install_hint(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    path, state = start_sweep(SWEEP_CONFIG, sets=["training.epochs=1"], grid_options=["model.layers.0.units=12",
                              "training.batch_size=16"], runs_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match=r"pip install 'nnrun\[ray\]'"):
        execute(path, state, executor="ray")
