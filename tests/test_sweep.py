"""Sweeps on Optuna: the space and the study without TensorFlow, then real small sweeps on the diabetes data.

The fast part drives the real Optuna study (journal file in a temp folder) with made-up
objective values: TPE's draws at a fixed seed, the grid's coverage, the budget, a stale
trial queued again. The slow part trains: the 2 x 2 grid of configs/diabetes_sweep.yaml
for 2 epochs, sequentially, in 2 worker processes and interrupted then resumed (the same
numbers at the same seeds); median pruning; two ``--join`` worker processes; a worker
killed with ``kill -9``; ``--repeats``; and a TPE sweep on a local Ray instance.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from nnrun.cli import app
from nnrun.config import load_config
from nnrun.errors import ConfigError, DataChanged, DataError, RunDirError, RunInterrupted
from nnrun.sweep.orchestrate import start_sweep, sweep_comparison, work
from nnrun.sweep.space import collect_grid, decode, distributions, parse_grid_option
from nnrun.sweep.state import read_state, write_state
from nnrun.sweep.study import (
    HEARTBEAT,
    RETRY_OF,
    BudgetSpent,
    fail_stale,
    open_study,
    requeue,
    retry,
    running_count,
    trial_indices,
)

from conftest import make_image_folder

ROOT = Path(__file__).resolve().parent.parent
SWEEP_CONFIG = ROOT / "configs" / "diabetes_sweep.yaml"
TWO_EPOCHS = ["training.epochs=2"]


# ------------------------------------------------------------ no TensorFlow


def test_grid_option_values_are_typed_yaml():
    assert parse_grid_option("model.layers.0.units=32,64,512,784") == ("model.layers.0.units", [32, 64, 512, 784])
    assert parse_grid_option("training.optimizer.type=adam, rmsprop") == ("training.optimizer.type", ["adam", "rmsprop"])
    assert parse_grid_option("training.shuffle=true,false")[1] == [True, False]
    assert parse_grid_option("preprocessing.0.target_shape=[28,28],[784]")[1] == [[28, 28], [784]]
    assert parse_grid_option("dataset.path='a,b.csv',c.csv")[1] == ["a,b.csv", "c.csv"]  # quoted: one value
    # Brackets in the key are the same key.
    assert parse_grid_option("model.layers[0].units=8")[0] == "model.layers.0.units"


def test_grid_option_ranges():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    key, axis = parse_grid_option("training.optimizer.learning_rate=loguniform(1e-4, 1e-1)")
    assert (key, axis) == ("training.optimizer.learning_rate", "loguniform(1e-4, 1e-1)")  # as sweep.json shows it
    grid = {key: axis, "model.layers.0.units": parse_grid_option("model.layers.0.units=randint(8,64)")[1],
            "preprocessing.0.target_shape": [[28, 28], [784]]}
    assert distributions(grid) == {key: FloatDistribution(1e-4, 1e-1, log=True), "model.layers.0.units": IntDistribution(8, 64),
                                   "preprocessing.0.target_shape": CategoricalDistribution(["[28, 28]", "[784]"])}


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
        ("x.y=32,,64", "cannot read the values as YAML"),
    ],
)
def test_grid_option_errors_say_what_and_how(text, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_grid_option(text)


def ask(study):
    """The study's next trial, as a worker asks for it; None when the budget is spent."""
    with warnings.catch_warnings():  # "Heartbeat of storage is supposed to be used with Study.optimize"
        warnings.simplefilter("ignore", UserWarning)
        try:
            return study.ask()
        except BudgetSpent:
            return None


def drive(tmp_path, *grid, search="tpe", trials=None, seed=0, objective=None):
    """Ask and tell the sweep's real study (journal file) with made-up values instead of training."""
    import optuna

    path, state = start_sweep(SWEEP_CONFIG, grid_options=list(grid), search=search, trials=trials, seed=seed,
                              runs_dir=tmp_path)  # fmt: skip
    study = open_study(path, state)
    drawn = []

    def made_up(trial):
        drawn.append(decode(trial, state.grid))
        return (objective or (lambda p: -abs(math.log10(p["training.optimizer.learning_rate"]) + 2.5)))(drawn[-1])

    while True:  # as a worker does (the grid sampler stops optimize at its last point)
        try:
            study.optimize(made_up)
        except BudgetSpent:
            break
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials())
    return drawn, study


LR = "training.optimizer.learning_rate=loguniform(1e-4, 1e-1)"


def test_tpe_with_a_fixed_seed_draws_the_same_trials_twice(tmp_path):
    first, _ = drive(tmp_path / "a", LR, trials=14, seed=3)
    again, _ = drive(tmp_path / "b", LR, trials=14, seed=3)
    other, _ = drive(tmp_path / "c", LR, trials=14, seed=4)
    assert len(first) == 14 and first == again and first != other
    assert all(1e-4 <= t["training.optimizer.learning_rate"] <= 1e-1 and t["model.layers.0.units"] in (12, 64) for t in first)


def test_grid_search_takes_every_combination_once_and_stops_at_the_budget(tmp_path):
    drawn, study = drive(tmp_path, "training.batch_size=16,32,64", "preprocessing.0=standardize,{type: scale, factor: 0.5}",
                         search="grid", objective=lambda p: 0.5)  # fmt: skip
    combos = {(t["model.layers.0.units"], t["training.batch_size"], json.dumps(t["preprocessing.0"])) for t in drawn}
    assert len(drawn) == len(combos) == 12  # 2 units x 3 batch sizes x 2 (a mapping goes through Optuna as JSON)
    assert {"type": "scale", "factor": 0.5} in [t["preprocessing.0"] for t in drawn]
    assert {t["preprocessing.0"] for t in drawn if isinstance(t["preprocessing.0"], str)} == {"standardize"}
    random_drawn, _ = drive(tmp_path / "r", LR, search="random", trials=5, seed=1)
    assert len(random_drawn) == 5


@pytest.mark.parametrize("search", ["grid", "random"])
def test_a_retried_trial_leaves_the_order_of_the_others_as_the_seed_gives_it(tmp_path, search):
    """Trial n takes grid point n (or draws from (seed, n)) though Optuna numbers a retry too: an interrupted and
    resumed sweep trains the points in the order an uninterrupted one does."""
    import optuna

    grid = ["training.batch_size=16,32,64"] + ([LR] if search == "random" else [])
    alone, _ = drive(tmp_path / "alone", *grid, search=search, trials=6, seed=5, objective=lambda p: 0.5)
    path, state = start_sweep(SWEEP_CONFIG, grid_options=grid, search=search, trials=6, seed=5, runs_dir=tmp_path)
    study, drawn = open_study(path, state), []

    def objective(trial):
        system = study._storage.get_trial_system_attrs(trial._trial_id)
        index = trial_indices(study.get_trials(deepcopy=False))[system.get(RETRY_OF, trial.number)]
        if index == 2 and RETRY_OF not in system:
            raise ValueError("stopped")  # failed, then queued again as --resume does
        drawn.append((index, decode(trial, state.grid)))
        return 0.5

    def queue_again(study, frozen):
        if frozen.state == optuna.trial.TrialState.FAIL:
            requeue(study, frozen)

    while True:
        try:
            study.optimize(objective, catch=(ValueError,), callbacks=[queue_again])
        except BudgetSpent:
            break
    assert len(study.trials) == 7 and sorted(drawn, key=lambda d: d[0]) == list(enumerate(alone, 1))


def test_two_workers_draw_what_one_worker_draws(tmp_path):
    """Each trial draws from the seed and its number: workers on one study neither repeat each other's draws (as
    each with a sampler at the same seed would) nor change them."""
    alone, _ = drive(tmp_path / "one", LR, search="random", trials=6, seed=2)
    path, state = start_sweep(SWEEP_CONFIG, grid_options=[LR], search="random", trials=6, seed=2, runs_dir=tmp_path / "two")
    workers, drawn = [open_study(path, state), open_study(path, state)], []
    for i in range(6):
        trial = ask(workers[i % 2])
        drawn.append(decode(trial, state.grid))
        workers[i % 2].tell(trial, 0.5)
    assert drawn == alone and len({d["training.optimizer.learning_rate"] for d in drawn}) == 6


def test_an_rdb_storage_holds_the_study_instead_of_the_journal(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'studies.db'}"
    path, state = start_sweep(SWEEP_CONFIG, storage=url, runs_dir=tmp_path / "runs")
    study = open_study(path, state)
    trial = ask(study)
    study.tell(trial, 0.75)
    assert not (path / "study.journal").exists() and read_state(path).storage == url
    again = optuna.load_study(study_name=state.id, storage=url)  # what optuna-dashboard URL opens
    assert [t.value for t in again.trials] == [0.75] and again.user_attrs["nnrun.metric"] == "best_val_accuracy"


@pytest.mark.parametrize("prune", ["median", "hyperband"])
def test_the_pruners_stop_the_worse_trials_from_reported_epochs(tmp_path, prune):
    """Each trial reports one value per epoch, as the pruning callback does; the poorer half must be stopped early.

    The clock is fixed: Hyperband assigns trials to brackets by a hash of the study name, which is the timestamped
    sweep folder's, so an unpinned clock made the result depend on the second the test ran.
    """
    path, state = start_sweep(SWEEP_CONFIG, sets=["training.epochs=9"], grid_options=[LR], search="random", trials=12,
                              prune=prune, seed=0, runs_dir=tmp_path,
                              now=lambda: datetime(2026, 11, 23, 10, 15, 0))  # fmt: skip
    study = open_study(path, state)
    stopped = {}
    while (trial := ask(study)) is not None:
        quality = trial.params["training.optimizer.learning_rate"]
        for epoch in range(1, 10):
            trial.report(quality * epoch, epoch)  # higher is better (val_accuracy): a higher rate, a better trial
            if trial.should_prune():
                break
        stopped[quality] = epoch
        study.tell(trial, state=optuna_state("PRUNED") if epoch < 9 else None, values=None if epoch < 9 else quality)
    ranked = sorted(stopped)  # worst first
    assert any(epoch < 9 for epoch in stopped.values())
    assert stopped[ranked[-1]] == 9  # the best trial ran every epoch
    assert statistics.fmean(stopped[q] for q in ranked[:6]) < statistics.fmean(stopped[q] for q in ranked[6:])


def test_hyperband_counts_a_retried_trial_once_in_its_first_attempts_bracket(tmp_path):
    """The retry inherits its first attempt's values at each rung: the two attempts are one competitor, in one bracket
    (Optuna's own Hyperband hashes each attempt's number to a bracket, and counts both)."""
    import optuna

    path, state = start_sweep(SWEEP_CONFIG, sets=["training.epochs=9"], grid_options=[LR], search="random", trials=4,
                              prune="hyperband", runs_dir=tmp_path,
                              now=lambda: datetime(2026, 11, 23, 10, 15, 0))  # brackets hash the folder's name  # fmt: skip
    study = open_study(path, state)
    first = ask(study)
    for epoch in range(1, 10):  # every epoch: the first rung of any bracket is by epoch 9
        first.report(0.5, epoch)
        first.should_prune()  # records its value at each rung it reaches
    study._storage.set_trial_state_values(first._trial_id, optuna.trial.TrialState.FAIL)  # its worker died
    retry(study, study._storage.get_trial(first._trial_id))
    again = ask(study)
    frozen = {t.number: t for t in study.get_trials(deepcopy=False)}
    assert again.number == 1 and any(k.startswith("completed_rung_") for k in frozen[0].system_attrs)  # inherited
    bracket = study.pruner._get_bracket_id(study, frozen[1])
    assert study.pruner._get_bracket_id(study, frozen[0]) == bracket
    assert [t.number for t in study.pruner._create_bracket_study(study, bracket).get_trials(deepcopy=False)] == [1]


def optuna_state(name: str):
    import optuna

    return getattr(optuna.trial.TrialState, name)


def test_a_trial_is_not_pruned_after_its_last_epoch_which_it_still_reports():
    from types import SimpleNamespace

    from nnrun.callbacks import make_pruning_callback

    heard: list[int] = []
    callback = make_pruning_callback("val_loss", lambda epoch, value: heard.append(epoch) or True)  # "prune" always
    callback.set_params({"epochs": 3, "steps": 1, "verbose": 0})
    callback.set_model(SimpleNamespace(stop_training=False))
    callback.on_epoch_end(1, {"val_loss": 0.7})
    assert callback.model.stop_training and callback.reason == "pruned after epoch 2: val_loss 0.7000"
    callback.model.stop_training, callback.reason = False, None
    callback.on_epoch_end(2, {"val_loss": 0.6})  # epoch 3 of 3: it trained them all, so it completes
    assert heard == [2, 3] and not callback.model.stop_training and callback.reason is None
    callback.model.stop_training = True  # EarlyStopping (before it in the list) ended the run after epoch 2
    callback.on_epoch_end(1, {"val_loss": 0.7})
    assert heard == [2, 3, 2] and callback.reason is None  # completed by EarlyStopping: not pruned


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_a_trial_whose_heartbeat_stopped_is_failed_and_queued_again(tmp_path, monkeypatch, storage):
    import optuna

    url = f"sqlite:///{tmp_path / 'study.db'}" if storage == "sqlite" else None
    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path, heartbeat=1, storage=url)
    study = open_study(path, state)
    lost = ask(study)
    lost.report(0.25, 1)  # its first epoch
    params = decode(lost, state.grid)
    assert abs(study._storage.get_trial_system_attrs(lost._trial_id)[HEARTBEAT] - time.time()) < 5  # beaten at once
    fail_stale(study)
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING  # beating: left alone
    study._storage.set_trial_system_attr(lost._trial_id, HEARTBEAT, time.time() - 10)  # its worker stopped beating
    fail_stale(study)
    assert study.trials[0].state == optuna.trial.TrialState.RUNNING  # but it started 1 s ago, not 2 intervals
    later = time.time() + 2.5  # more than two heartbeats after its start and its last beat
    with monkeypatch.context() as clock:
        clock.setattr("nnrun.sweep.study.time", SimpleNamespace(time=lambda: later))
        optuna.storages.fail_stale_trials(study)  # Optuna's own call, outside study.lock, before each trial: idle
        assert study.trials[0].state == optuna.trial.TrialState.RUNNING
        fail_stale(study)  # under study.lock, as each ask does
    assert study.trials[0].state == optuna.trial.TrialState.FAIL
    again = ask(study)  # the retry first
    assert again.number == 1 and study._storage.get_trial_system_attrs(again._trial_id)[RETRY_OF] == 0
    assert decode(again, state.grid) == params
    assert study.trials[1].intermediate_values == {1: 0.25}  # what the pruner compares, kept
    # The retry starts with its first attempt's attributes, old beat included: its own start keeps it alive.
    study._storage.set_trial_system_attr(again._trial_id, HEARTBEAT, time.time() - 10)
    fail_stale(study)
    assert study.trials[1].state == optuna.trial.TrialState.RUNNING
    study.tell(again, 0.5)
    # A worker killed inside ask, after the trial was made but before its first beat: failed two intervals after its
    # start (Optuna's RDB storage would leave such a trial running for ever, and the sweep would never end).
    unbeaten = study._storage.create_new_trial(study._study_id)
    with monkeypatch.context() as clock:
        clock.setattr("nnrun.sweep.study.time", SimpleNamespace(time=lambda: later))
        fail_stale(study)
    assert study._storage.get_trial(unbeaten).state == optuna.trial.TrialState.FAIL
    assert study.trials[-1].state == optuna.trial.TrialState.WAITING  # and queued again
    asked = [ask(study) for _ in range(4)]
    assert [t is not None for t in asked] == [True, True, True, False]  # it, then 2 new: 4 grid points
    points = [json.dumps(decode(t, state.grid), sort_keys=True) for t in [again, *asked[:3]]]
    assert len(set(points)) == 4  # each once: the retry of a trial killed before its point took the first free one


def test_sweep_json_gives_a_pruned_trial_its_metric_and_every_run_an_attempt_left(tmp_path):
    import optuna

    from nnrun.sweep.orchestrate import summarize, trial_name

    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path, search="random", trials=3, prune="median")
    study, params = open_study(path, state), {"params": {"model.layers.0.units": 12}}
    # Trial 1 pruned: Optuna keeps the last value the pruner heard; sweep.json the trial's metric, as the table.
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.PRUNED, value=0.61, intermediate_values={1: 0.61},
                                        user_attrs={**params, "number": 0, "status": "pruned", "value": 0.75}))
    # Trial 2: its worker was killed after its run directory was made, before it recorded anything; trial 3 runs.
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs=params))
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.RUNNING, user_attrs=params))
    names = [f"20260101-12000{i}-{trial_name(state, i)}" for i in (1, 2, 3)]
    for name in [*names, names[1] + "-1", f"20260101-120002-{trial_name(state, 2)}0"]:  # a same-second twin; not trial 20's
        (path / name).mkdir()
    summarize(study, state, path)
    pruned, killed, running = state.trials
    assert pruned.status == "pruned" and pruned.value == 0.75
    assert killed.status == "failed" and killed.previous_run_dirs == [names[1], names[1] + "-1"]
    assert running.previous_run_dirs == []  # its run is this attempt's, not yet recorded


def test_a_retry_gives_the_trial_its_values_when_the_first_attempt_died_before_it_recorded_them(tmp_path):
    import optuna

    from nnrun.sweep.orchestrate import summarize

    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path, search="random", trials=1)
    study, params = open_study(path, state), {"model.layers.0.units": 12}
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.FAIL))  # killed between its ask and its record
    study.add_trial(optuna.create_trial(state=optuna.trial.TrialState.COMPLETE, value=0.7, system_attrs={RETRY_OF: 0},
                                        user_attrs={"params": params, "number": 1, "status": "completed", "value": 0.7}))
    summarize(study, state, path)
    assert [(t.params, t.attempts, t.status) for t in state.trials] == [(params, 2, "completed")]
    assert state.best["params"] == params and "model.layers.0.units=12" in state.best["retrain"]


def test_a_study_that_is_gone_is_not_made_again_empty_by_join_or_resume(tmp_path, monkeypatch):
    from nnrun.errors import RunDirError
    from nnrun.sweep.orchestrate import resume_state

    monkeypatch.chdir(tmp_path)
    # The journal in the sweep folder; database files relative to the start folder, with and without a driver.
    for i, url in enumerate((None, "sqlite:///s.db", "sqlite+pysqlite:///s2.db")):
        path, state = start_sweep(SWEEP_CONFIG, runs_dir="runs", storage=url, name=f"gone{i}")
        study = tmp_path / url.rpartition("/")[2] if url else path / "study.journal"
        study.rename(tmp_path / "moved")
        shown = re.escape(str(study))
        with pytest.raises(RunDirError, match=f"^{shown}: not found; it holds the sweep's study"):
            resume_state(path, retry_failed=True)  # --resume
        with pytest.raises(RunDirError, match=f"^{shown}: not found; it holds the sweep's study"):
            work(path, resume_state(path, retry_failed=False))  # --join
        assert not study.exists()


OPEN_AT = """import sys, time
from pathlib import Path
from nnrun.sweep.state import SweepState
from nnrun.sweep.study import open_study
state = SweepState(id=sys.argv[2], name="x", mode="random", grid={"a": [1, 2]}, metric="val_accuracy",
                   base_config={"training": {"epochs": 1}}, storage=sys.argv[1], budget=2)
(Path(sys.argv[3]) / sys.argv[2]).touch()  # ready: Optuna imported; then all three go at once
while len(list(Path(sys.argv[3]).iterdir())) < 3:
    time.sleep(0.001)
open_study(sys.argv[3], state, create=True)
"""


@pytest.mark.slow
def test_sweeps_that_make_a_new_databases_tables_at_once_all_start(tmp_path):
    """SQLAlchemy's table creation races: one of two sweeps started together on a new database failed (about half the
    time, three at once), with an SQL error and advice to fix a URL that was fine."""
    for attempt in range(4):
        url, barrier = f"sqlite:///{tmp_path / f'new{attempt}.db'}", tmp_path / f"barrier{attempt}"
        barrier.mkdir()
        workers = [subprocess.Popen([sys.executable, "-c", OPEN_AT, url, f"s{i}", str(barrier)],
                                    stderr=subprocess.PIPE, text=True) for i in range(3)]  # fmt: skip
        errors = [w.communicate(timeout=60)[1] for w in workers]
        assert [w.returncode for w in workers] == [0, 0, 0], errors


def test_the_journal_lock_of_a_killed_worker_goes_at_once(tmp_path):
    """A worker killed while it writes the journal must not hold up the others' writes (their heartbeats)."""
    import threading

    from nnrun.sweep.study import JournalLock

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from nnrun.sweep.study import JournalLock; lock = JournalLock(Path(sys.argv[1])); lock.acquire(); "
                               "print('held', flush=True); time.sleep(60)", str(tmp_path / "journal.lock")],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline() == "held\n"
    lock = JournalLock(tmp_path / "journal.lock")
    waiter = threading.Thread(target=lock.acquire)
    waiter.start()
    waiter.join(1)
    assert waiter.is_alive()  # held by the other process
    holder.kill()
    holder.wait()
    waiter.join(5)
    assert not waiter.is_alive()
    lock.release()


def test_ctrl_c_on_an_idle_worker_leaves_the_sweep_running_while_another_worker_trains(tmp_path, monkeypatch):
    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path, heartbeat=60)
    study = open_study(path, state)
    trials = [ask(study) for _ in range(4)]  # the whole budget; another worker still trains the last
    for trial in trials[:3]:
        study.tell(trial, 0.5)

    def ctrl_c(seconds):  # while this worker waits for the other's trial
        raise KeyboardInterrupt

    monkeypatch.setattr("nnrun.sweep.orchestrate.time.sleep", ctrl_c)
    with pytest.raises(RunInterrupted, match="this worker stopped; other workers still train 1 trial") as stopped:
        work(path, state)
    assert "Continue with: nnrun sweep --join" in str(stopped.value)
    after = read_state(path)
    assert after.status == "running" and after.history[-1]["status"] == "interrupted"  # the sweep, and this worker


def test_resuming_a_ray_sweep_without_ray_says_where_it_trains(tmp_path, monkeypatch):
    from nnrun.sweep import orchestrate

    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    state.executor = "ray"
    write_state(path, state)
    monkeypatch.setattr(orchestrate, "work", lambda path, state, **options: state)  # nothing trained: the note is the point
    result = CliRunner().invoke(app, ["sweep", "--resume", str(path)])
    assert "note: this sweep ran on Ray; this worker trains here (add --executor ray" in " ".join(result.output.split())


def test_ctrl_c_before_a_trial_trains_says_so_and_leaves_it_for_resume(tmp_path, monkeypatch):
    from nnrun.sweep import trial as trial_module

    def ctrl_c(*args):  # SIGINT while the data loads, before the run's own handler is set
        raise KeyboardInterrupt

    monkeypatch.setattr(trial_module, "_train_one", ctrl_c)
    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    with pytest.raises(RunInterrupted, match="nnrun sweep --resume"):
        work(path, state)
    (first,) = read_state(path).trials
    assert (first.status, first.error, first.run_dirs) == ("interrupted", "stopped (SIGINT) before its training began", [])


def test_a_moved_sweep_folder_keeps_the_runs_its_trials_finished(tmp_path):
    """The runs' configs name the folder the sweep was in (run.runs_dir): after a move, a retry took each finished
    seed for another trial's run, and trained it again (an interrupted one from its first epoch)."""
    from nnrun.sweep.space import trial_config
    from nnrun.sweep.trial import _train_one

    path, state = start_sweep(SWEEP_CONFIG, TWO_EPOCHS, runs_dir=tmp_path)
    params = {"model.layers.0.units": 12, "training.batch_size": 16}
    config = trial_config(state.base_config, params, name="diabetes_sweep-t01", runs_dir=str(path))
    then = config.to_dict()
    then["run"]["runs_dir"] = "/where/the/sweep/was"
    (earlier := path / "20260101-000000-diabetes_sweep-t01").mkdir()
    (earlier / "run.json").write_text(json.dumps({"status": "completed", "config": then}))
    assert _train_one(state, config, None, 1) == (earlier, "completed", None)


def test_ctrl_c_in_the_budgets_last_trial_leaves_the_sweep_interrupted_not_failed(tmp_path, monkeypatch):
    from nnrun.sweep import trial as trial_module

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(trial_module, "_train_one", ctrl_c)
    path, state = start_sweep(SWEEP_CONFIG, trials=1, runs_dir=tmp_path)  # the budget: one trial
    with pytest.raises(RunInterrupted, match="nnrun sweep --resume"):
        work(path, state)
    stopped = read_state(path)
    assert (stopped.status, stopped.history[-1]["status"]) == ("interrupted", "interrupted")  # as the console says
    assert [t.status for t in stopped.trials] == ["interrupted"]


def test_ctrl_c_as_a_trial_is_drawn_leaves_it_interrupted_not_running_with_no_worker(tmp_path, monkeypatch):
    """Optuna makes the trial, then the sampler draws (TPE takes a while): Ctrl-C then left a trial running that no
    worker beat for, and the sweep said other workers still trained it."""
    from nnrun.sweep import orchestrate
    from nnrun.sweep import study as study_module

    real = study_module.GridSampler.before_trial
    calls = []

    def ctrl_c_once(self, study, trial):
        calls.append(trial.number)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(self, study, trial)

    monkeypatch.setattr(study_module.GridSampler, "before_trial", ctrl_c_once)
    monkeypatch.setattr(orchestrate, "run_trial", lambda trial, *args: 0.5)
    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    with pytest.raises(RunInterrupted, match=r"^sweep stopped; .*nnrun sweep --resume"):
        work(path, state)
    stopped = read_state(path)
    assert stopped.status == "interrupted" and running_count(open_study(path, stopped)) == 0
    assert [(t.status, t.error) for t in stopped.trials] == [("interrupted", "stopped (SIGINT) before its training began")]
    resumed = work(path, orchestrate.resume_state(path, retry_failed=True))  # at once: no heartbeat to wait out
    assert resumed.status == "completed" and [t.status for t in resumed.trials] == ["completed"] * 4


def test_ctrl_c_while_optuna_records_a_trial_waits_for_the_record_then_stops_the_sweep(tmp_path, monkeypatch):
    """Ctrl-C inside Optuna's tell left the trial running with no worker, and Optuna raised UnboundLocalError (its
    finally read a variable the interrupted call never set): no table, and sweep.json said running."""
    from nnrun.sweep import orchestrate
    from nnrun.sweep import study as study_module

    real = study_module.GridSampler.after_trial

    def ctrl_c_as_it_records(self, *args):  # Optuna's tell calls the sampler's after_trial before it stores the state
        os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args)

    monkeypatch.setattr(study_module.GridSampler, "after_trial", ctrl_c_as_it_records)
    monkeypatch.setattr(orchestrate, "run_trial", lambda trial, *args: 0.5)
    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    with pytest.raises(RunInterrupted, match=r"^sweep stopped; .*nnrun sweep --resume"):
        work(path, state)
    stopped = read_state(path)
    assert [t.status for t in stopped.trials] == ["completed"] and stopped.status == "interrupted"
    assert running_count(open_study(path, stopped)) == 0


def test_ctrl_c_as_a_trained_trial_checks_its_data_is_held_until_it_is_recorded(tmp_path, monkeypatch, capfd):
    """After the training, before Optuna's tell (the data's hash, the trial's attributes): a Ctrl-C there left the
    trial failed, 'its worker stopped before it recorded a result'; half its attributes, failed for good."""
    from nnrun.sweep import trial as trial_module

    def trained(state, config, judge, index):
        (run := tmp_path / f"20261124-000000-{config.run.name}").mkdir(exist_ok=True)
        return run, "completed", None

    monkeypatch.setattr(trial_module, "_train_one", trained)
    monkeypatch.setattr(trial_module, "run_values", lambda run, *keys: [0.5, None][: len(keys)])
    monkeypatch.setattr(trial_module, "check_data", lambda *args: os.kill(os.getpid(), signal.SIGINT))
    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    with pytest.raises(RunInterrupted, match=r"^sweep stopped; .*nnrun sweep --resume"):
        work(path, state)
    (first,) = read_state(path).trials
    assert (first.status, first.value, first.error) == ("completed", 0.5, None)
    assert "Ctrl-C: stopping once this trial is recorded (Ctrl-C again to stop at once)." in capfd.readouterr().err


@pytest.mark.parametrize("repeats", [1, 2])
def test_ctrl_c_the_moment_a_trial_finishes_training_is_held_until_it_is_recorded(tmp_path, monkeypatch, repeats):
    """The run's own Ctrl-C handler is gone once it has trained; a Ctrl-C before the trial was held again (as its
    metric is read) left it failed, 'its worker stopped before it recorded a result'; between seeds, too."""
    from nnrun import training
    from nnrun.sweep import trial as trial_module

    def trained(config, **kwargs):
        (run := tmp_path / f"20261124-000000-{config.run.name}").mkdir()
        return training.TrainResult(run, "completed", {}, 0.1)

    sent = []

    def read_as_ctrl_c_comes(run, *keys):  # once: a second Ctrl-C stops at once
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return [0.5, None][: len(keys)]

    monkeypatch.setattr(training, "train", trained)
    monkeypatch.setattr(trial_module, "run_values", read_as_ctrl_c_comes)
    path, state = start_sweep(SWEEP_CONFIG, repeats=repeats, runs_dir=tmp_path)
    with pytest.raises(RunInterrupted, match=r"^sweep stopped; .*nnrun sweep --resume"):
        work(path, state)
    (first,) = read_state(path).trials
    if repeats == 1:
        assert (first.status, first.value, first.error) == ("completed", 0.5, None)
    else:  # the first seed is kept for --resume; the second never started
        assert (first.status, first.error, len(first.run_dirs)) == ("interrupted", "stopped (SIGINT) before seed 43 began", 1)


def test_a_jobs_helpers_line_waits_while_this_worker_hides_stderr(tmp_path, monkeypatch):
    """TensorFlow's first import, and an image folder's decoding, hide stderr for a while (absl's, libjpeg's noise).
    In sweep --resume --jobs 2 the import came as a helper's first trial line was shown here: that line was lost."""
    import subprocess

    from nnrun.sweep.jobs import join_process
    from nnrun.tf import quiet_stderr

    real = subprocess.Popen
    say = "import sys; print('trial 1/1 training model.layers[0].units=8', file=sys.stderr)"
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kwargs: real([sys.executable, "-c", say], **kwargs))
    shown = []
    with quiet_stderr():  # as TensorFlow is imported
        helper, log = join_process(tmp_path, shown.append)
        helper.wait()
        time.sleep(0.6)  # the tail reads every 0.2 s
        assert shown == []  # not shown into the hidden stderr
    helper.reader.join(timeout=10)
    log.close()
    assert shown == [f"[dim](--join pid {helper.pid})[/] trial 1/1 training model.layers[0].units=8"]


def test_ctrl_c_just_after_a_trial_is_announced_stops_it_before_its_training(tmp_path, monkeypatch):
    """Between the trial's line and its training (its attributes, sweep.json): it was told failed, 'its worker
    stopped before it recorded a result', as if the worker had been killed."""
    from nnrun.sweep import trial as trial_module

    trained = []
    monkeypatch.setattr(trial_module, "_train_one", lambda *args: trained.append(args))
    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)

    def echo(line):
        if " training " in line:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(RunInterrupted, match=r"^sweep stopped; .*nnrun sweep --resume"):
        work(path, state, echo=echo)
    (first,) = read_state(path).trials
    assert (first.status, first.error, trained) == ("interrupted", "stopped (SIGINT) before its training began", [])


@pytest.mark.parametrize("when", ["before its record", "after its record", "after its record, failed"])
def test_a_trial_another_worker_took_over_is_reported_lost_and_the_worker_goes_on(tmp_path, monkeypatch, when):
    """A worker too slow to beat: another fails its trial and queues it again; this one's tell must not crash it."""
    import optuna

    from nnrun.sweep import orchestrate
    from nnrun.sweep.trial import TrialFailed

    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    other, trained = open_study(path, state), []

    def stalled_then_recorded(trial, index, name, params, state, sweep_dir, echo):  # Optuna's side is real
        trained.append(index)
        if len(trained) == 1 and when != "before its record":
            trial.set_user_attr("status", "completed")  # run_trial's recording of the result, before the tell
        if len(trained) == 1:  # what fail_stale_trials does in the other worker while this one trains
            other._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            retry(other, other._storage.get_trial(trial._trial_id))
        if len(trained) == 1 and when == "after its record, failed":
            raise TrialFailed("a failed trial is told too")
        if len(trained) > 1 or when == "before its record":
            trial.set_user_attr("status", "completed")
        return 0.5

    monkeypatch.setattr(orchestrate, "run_trial", stalled_then_recorded)
    lines = []
    result = work(path, state, echo=lines.append)
    first = trained[0]
    assert any(f"trial {first}/4 lost" in line for line in lines), lines
    assert trained[1] == first  # its retry ran next, here
    assert result.status == "completed" and [t.status for t in result.trials] == ["completed"] * 4
    assert [t.attempts for t in result.trials if t.index == first] == [2]
    assert [t.index for t in result.trials] == [1, 2, 3, 4]  # the retry took an Optuna number, not a trial index
    numbers = [t.user_attrs["trial"] for t in open_study(path, state).trials]  # as optuna-dashboard shows them
    assert sorted(numbers) == sorted([1, 2, 3, 4, first])  # the retry's is its trial's


def test_a_trial_failed_as_stale_before_it_recorded_its_values_is_lost_not_a_crash(tmp_path, monkeypatch):
    import optuna

    from nnrun.sweep import orchestrate

    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    other, decoded, decode = open_study(path, state), [], orchestrate.space.decode

    def paused_as_it_began(trial, grid):  # this worker stopped (SIGSTOP, say) between its ask and its first record
        decoded.append(trial.number)
        if len(decoded) == 1:
            other._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
            retry(other, other._storage.get_trial(trial._trial_id))
        return decode(trial, grid)

    def recorded(trial, *args):
        trial.set_user_attr("status", "completed")
        return 0.5

    monkeypatch.setattr(orchestrate.space, "decode", paused_as_it_began)
    monkeypatch.setattr(orchestrate, "run_trial", recorded)
    lines = []
    result = work(path, state, echo=lines.append)
    assert any("trial 1/4 lost" in line for line in lines), lines
    assert result.status == "completed" and [t.status for t in result.trials] == ["completed"] * 4
    assert all(t.params for t in result.trials)  # the retry's values


def test_ctrl_c_while_waiting_for_the_jobs_workers_stops_them_and_says_how_to_resume(tmp_path, monkeypatch):
    """The main worker is done and waits for its --jobs helper; a SIGINT to it alone (kill -INT) stops both."""
    import tempfile
    import threading

    from nnrun.sweep import orchestrate

    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # work() sets them for its workers; restored after
    helper = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; signal.signal(signal.SIGINT, lambda *a: "
                               "sys.exit(130)); print('ready', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE)  # a --join worker still training; 130 as nnrun's  # fmt: skip
    assert helper.stdout.readline() == b"ready\n"  # its handler is set before the SIGINT comes
    monkeypatch.setattr(orchestrate, "join_process", lambda sweep_dir, echo: (helper, tempfile.TemporaryFile("w+")))
    monkeypatch.setattr(orchestrate, "_optimize", lambda *args: None)  # this worker has nothing left to train
    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.perf_counter()
    lines = []
    try:
        work(path, state, jobs=2, echo=lines.append)
        stopped = None
    except BaseException as exc:  # noqa: BLE001 - a bare KeyboardInterrupt is the failure this test looks for
        stopped = exc
    assert isinstance(stopped, RunInterrupted) and "nnrun sweep --resume" in str(stopped), repr(stopped)
    assert helper.wait(timeout=10) == 130 and time.perf_counter() - started < 10  # stopped, not waited out
    assert not [line for line in lines if "ended with exit code" in line]  # interrupted as asked: no red line
    assert read_state(path).status == "interrupted"


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RunDirError("sweep.json: No space left")])
def test_an_error_in_the_main_worker_stops_its_jobs_workers_rather_than_waiting_out_the_budget(tmp_path, monkeypatch,
                                                                                              error):
    import tempfile

    from nnrun.sweep import orchestrate

    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    told = f"import json; s = json.load(open({str(path / 'sweep.json')!r})); s['status'] = 'interrupted'; " \
           f"json.dump(s, open({str(path / 'sweep.json')!r}, 'w'))"  # as a --join worker Ctrl-C stopped tells it
    # It tells its trial interrupted a moment after the SIGINT (its epoch ends): after the main worker's 'failed'
    # unless the main worker waits for it first.
    helper = subprocess.Popen([sys.executable, "-c", f"import signal, sys, time\ndef stop(*a):\n time.sleep(0.5)\n "
                               f"{told}\n sys.exit(130)\n"
                               "signal.signal(signal.SIGINT, stop); print('ready', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE)  # fmt: skip
    assert helper.stdout.readline() == b"ready\n"  # its handler is set: the SIGINT below cannot come before it
    monkeypatch.setattr(orchestrate, "join_process", lambda sweep_dir, echo: (helper, tempfile.TemporaryFile("w+")))

    def disk_full(*args):
        raise error

    monkeypatch.setattr(orchestrate, "_optimize", disk_full)
    started = time.perf_counter()
    with pytest.raises(type(error), match="No space left"):
        work(path, state, jobs=2)
    assert helper.wait(timeout=10) == 130 and time.perf_counter() - started < 10
    if isinstance(error, RunDirError):  # nnrun's error: the sweep failed, after its helpers were stopped
        assert read_state(path).status == "failed"


def test_a_jobs_worker_gets_a_red_line_for_its_own_error_or_death_not_for_a_sweep_that_ended_failed():
    import tempfile

    from nnrun.sweep.jobs import reap

    def helper(code, stderr):
        log = tempfile.TemporaryFile("w+")
        script = f"import os, sys; sys.stderr.write({stderr!r}); sys.stderr.flush(); " + (
            "os.kill(os.getpid(), 9)" if code == -9 else f"sys.exit({code})")  # -9: killed
        return subprocess.Popen([sys.executable, "-c", script], stderr=log, text=True), log

    lines = []
    reap([helper(1, "W0000 some TensorFlow log line\n"), helper(130, ""), helper(0, "")], lines.append)
    assert lines == []  # exit 1 as the sweep failed: the main worker prints the sweep's status
    reap([helper(1, "noise\n\x1b[1;31mError:\x1b[0m unexpected OSError: disk full (run again with --debug)\n"),
           helper(-9, ""), helper(1, "Traceback (most recent call last):\n  ...\nValueError: bug\n")],
          lines.append)  # fmt: skip
    assert len(lines) == 3 and "exit code 1" in lines[0] and lines[0].endswith("Error: unexpected OSError: disk full "
                                                                             "(run again with --debug)")  # fmt: skip
    assert "exit code -9" in lines[1] and lines[2].endswith("ValueError: bug")
    lines.clear()  # stopped by the error this worker ends with (the data changed): shown once, by this worker
    reap([helper(2, "\x1b[1;31mError:\x1b[0m dataset.path d.csv changed\n"), helper(2, "Error: --storage x: no\n")],
          lines.append, said="dataset.path d.csv changed")  # fmt: skip
    assert len(lines) == 1 and lines[0].endswith("exit code 2[/]: Error: --storage x: no")  # an error of its own


def test_a_trial_that_heard_ctrl_c_in_its_last_epoch_stops_the_worker_after_it_is_told(tmp_path, monkeypatch):
    from nnrun.sweep import orchestrate

    def completed_but_stopped(trial, index, name, params, state, sweep_dir, echo):  # Optuna's side is real
        trial.set_user_attr("status", "completed")
        trial.set_user_attr("stopped", "SIGINT" if index == 1 else None)
        return 0.5

    monkeypatch.setattr(orchestrate, "run_trial", completed_but_stopped)
    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    with pytest.raises(RunInterrupted, match="nnrun sweep --resume"):
        work(path, state)
    stopped = read_state(path)
    assert stopped.status == "interrupted" and [(t.index, t.status, t.value) for t in stopped.trials] == [(1, "completed", 0.5)]


def test_cli_grid_replaces_the_config_section_key():
    config = load_config(SWEEP_CONFIG)
    grid = collect_grid(config, ["training.batch_size=8,32,128", "training.epochs=1,2"])
    assert grid == {"model.layers.0.units": [12, 64], "training.batch_size": [8, 32, 128], "training.epochs": [1, 2]}
    with pytest.raises(ConfigError, match="nothing to sweep"):
        collect_grid(load_config(ROOT / "configs" / "diabetes_mlp.yaml"), [])
    # A value twice would train its point twice; true and 1 would be one choice to Optuna, and decode true as 1.
    with pytest.raises(ConfigError, match=r"^sweep key training.batch_size: 32 is listed twice; list each value once.$"):
        collect_grid(config, ["training.batch_size=32,8,32"])
    with pytest.raises(ConfigError, match=r"^sweep key training.shuffle: 1 and true are one value to Python; list each"):
        collect_grid(config, ["training.shuffle=true,1"])
    with pytest.raises(ConfigError, match=r'^sweep key dataset.path: "\[1, 2\]" and \[1, 2\] are one choice to Optuna, '
                                          r"which takes a list or mapping as its JSON text; list each value once.$"):
        collect_grid(config, ["dataset.path=[1,2],'[1, 2]'"])  # Optuna's one choice: the grid would train [1, 2] twice
    # Two spellings of one key: the second replaced the first, whose values were silently dropped.
    with pytest.raises(ConfigError, match=r"^--grid model.layers.-1.units and model.layers.2.units are one key "
                                          r"\(model.layers.2.units\); give its values once.$"):
        collect_grid(config, ["model.layers.-1.units=1,2", "model.layers.2.units=3,4"])
    with pytest.raises(ConfigError, match=r"^--grid model.layers.0.units is given twice; give its values once.$"):
        collect_grid(config, ["model.layers[0].units=1,2", "model.layers.0.units=3,4"])
    # --grid replaces the config's own key, however either spells it (the README says so).
    assert collect_grid(config, ["model.layers.-3.units=3,4"])["model.layers.0.units"] == [3, 4]
    # A range Optuna cannot draw from.
    for text in ("uniform(0, inf)", "loguniform(1e-4, 1e400)", "uniform(-1e308, 1e308)"):
        with pytest.raises(ConfigError, match=r"needs finite bounds \(Optuna cannot draw from an infinite range\)"):
            collect_grid(config, [f"training.optimizer.learning_rate={text}"])


def test_grid_values_yaml_reads_as_dates_stay_the_text_written():
    config = load_config(SWEEP_CONFIG)
    grid = collect_grid(config, ["dataset.path=2024-01-01,b.csv", "model.layers.0.units=[2024-01-02 10:00:00]"])
    assert grid["dataset.path"] == ["2024-01-01", "b.csv"]  # a str, which sweep.json and Optuna's choices hold
    assert grid["model.layers.0.units"] == [["2024-01-02 10:00:00"]]


def test_each_value_of_a_grid_list_is_checked_as_its_own_config_before_the_sweep_starts(tmp_path):
    # A value holding more layers than the base config: its extra layer is checked too.
    layers = ("model.layers=[{type: Dense, units: 4}, {type: Dense, units: 1, activation: sigmoid}],"
              "[{type: Dense, units: 4}, {type: Dense, units: 4}, {type: Dense, units: 4}, {type: Dense, units: -1}]")
    with pytest.raises(ConfigError, match=r"sweep key model.layers value .*model.layers\[3\] \(Dense\): .*units"):
        start_sweep(SWEEP_CONFIG, [], [layers], runs_dir=tmp_path / "a")
    assert not (tmp_path / "a").exists()
    # A value that changes what the data is (a CSV, an image folder, MNIST) is checked as what it is.
    folder = make_image_folder(tmp_path / "shapes", per_class=4)
    data = (f"dataset={{name: images, path: {folder}, image_size: [32, 32], validation: 0.2}},"
            "{name: mnist, validation: 0.2}")  # fmt: skip
    start_sweep(ROOT / "configs" / "shapes_rgb.yaml", [], [data], runs_dir=tmp_path / "b")
    with pytest.raises(DataError, match="sweep key dataset value .*nowhere"):
        start_sweep(ROOT / "configs" / "shapes_rgb.yaml", [], [data.replace(str(folder), str(tmp_path / "nowhere"))],
                    runs_dir=tmp_path / "c")  # fmt: skip


def test_bad_sweeps_fail_before_anything_is_created(tmp_path):
    def start(*grid, sets=(), **kwargs):
        return start_sweep(SWEEP_CONFIG, grid_options=list(grid), sets=list(sets), runs_dir=tmp_path, **kwargs)

    with pytest.raises(ConfigError, match=r"--grid model.layers\[0\].unit: there is no key 'unit'.*did you mean 'units'"):
        start("model.layers.0.unit=1,2")
    with pytest.raises(ConfigError, match=r"^sweep.grid model.layers\[0\].unit: there is no key 'unit'"):  # as written
        start(sets=["sweep.grid={model.layers.0.unit: [1, 2]}"])
    with pytest.raises(ConfigError, match="list of 3 items"):
        start("model.layers.5.units=1,2")
    with pytest.raises(ConfigError, match=r"^--grid training.optimizer.learning_rate: 'loguniform\(0, 1\)': loguniform "
                       "needs bounds > 0"):  # fmt: skip
        start("training.optimizer.learning_rate=loguniform(0, 1)", search="random", trials=2)
    with pytest.raises(ConfigError, match=r"^sweep key model.layers.0.units: randint\(-3, 8\) can draw -3: .*units=-3.* "
                       "keep the range to values that work.$"):  # Keras's check, at the range's bounds  # fmt: skip
        start("model.layers.0.units=randint(-3, 8)", search="random", trials=2)
    with pytest.raises(ConfigError, match="cannot vary 'run.name'"):
        start("run.name=a,b")
    with pytest.raises(ConfigError, match="sweep.metric val_accuracy: the trials have no validation data.*"
                       "--set dataset.validation=0.2"):  # fmt: skip
        start(sets=["dataset.validation=none"])
    with pytest.raises(ConfigError, match="the default metric val_accuracy: the trials have no validation data"):
        start_sweep(ROOT / "configs" / "diabetes_mlp.yaml", ["dataset.validation=none"], [LR], search="random",
                    trials=2, runs_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match="--metric 'speed': not a metric"):
        start(metric="speed")
    with pytest.raises(ConfigError, match="sweep.metric 'speed': not a metric"):  # named as the user gave it
        start(sets=["sweep.metric=speed"])
    with pytest.raises(ConfigError, match="--metric test_r2: only a regression's runs measure it"):
        start(metric="test_r2")
    with pytest.raises(ConfigError, match=r"'val_acc': .* Use one of best_val_accuracy, best_val_loss, test_accuracy, "
                       r"test_loss; did you mean val_accuracy \(short for best_val_accuracy\)\?$"):  # no regression metric
        start(metric="val_acc")
    with pytest.raises(ConfigError, match=r"'val_r2': .*; r2 is nnrun's own measure of a regression, taken once, on the "
                       r"test data \(test_r2\).$"):  # not validation.r2, which no run logs
        start(metric="val_r2")
    with pytest.raises(ConfigError, match=r"Use one of best_val_loss, test_loss, test_r2, test_mae, test_rmse; did you "
                       r"mean test_rmse\?$"):  # fmt: skip
        start_sweep(ROOT / "configs" / "penguins_mass.yaml", grid_options=[LR], search="random", trials=2,
                    metric="test_rmsee", runs_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match=r"^--metric val_accuracy \(best_val_accuracy\): the trials log only loss"):
        start_sweep(ROOT / "configs" / "penguins_mass.yaml", grid_options=[LR], search="random", trials=2,
                    metric="val_accuracy", runs_dir=tmp_path)  # as typed, not only the column it stands for
    with pytest.raises(ConfigError, match="validation.auc: the trials log only loss, accuracy, val_loss, val_accuracy; add "
                       "auc to training.metrics"):  # fmt: skip
        start(metric="validation.auc")  # without --prune too: else every trial trains, and none has it
    with pytest.raises(ConfigError, match="validation.auc: the trials log only loss, accuracy, AUC, .*Keras logs a metric "
                       "by the name training.metrics gives it: pass validation.AUC"):  # fmt: skip
        start(sets=["training.metrics=[accuracy, AUC]"], metric="validation.auc")
    with pytest.raises(ConfigError, match="training.metrics has 'acuracy': if you meant accuracy, spell it so there"):
        start(sets=["training.metrics=[acuracy]"])  # a typo there, not a metric to add: the default metric needs it
    _, state = start_sweep(SWEEP_CONFIG, ["training.metrics=[accuracy, AUC]"], metric="best_validation.AUC",
                           runs_dir=tmp_path / "auc")  # fmt: skip
    assert (state.metric, state.direction) == ("best_validation.AUC", "maximize")
    for metric, direction in (("validation.cosine_similarity", "maximize"), ("validation.KLDivergence", "minimize")):
        _, state = start_sweep(SWEEP_CONFIG, [f"training.metrics=[{metric.split('.')[1]}]"], metric=metric,
                               runs_dir=tmp_path / "auc")  # fmt: skip
        assert state.direction == direction, metric  # cosine similarity was minimized: the worst trial ranked best
    shutil.rmtree(tmp_path / "auc")
    with pytest.raises(ConfigError, match="validation.mean: nnrun cannot tell whether a higher or a lower mean is better"):
        start(sets=["training.metrics=[mean]"], metric="validation.mean")
    with pytest.raises(ConfigError, match=r"--grid training.batch_size: uniform\(8, 64\) draws fractions, and "
                       r"training.batch_size takes whole numbers: use randint\(8, 64\).$"):  # not 'got 29.392', a point
        start("training.batch_size=uniform(8, 64)", search="random", trials=2)  # a fraction inside the range
    with pytest.raises(ConfigError, match=r"training.batch_size: input should be greater than or equal to 1, got 0"):
        start("training.batch_size=16,0")
    with pytest.raises(ConfigError, match="--repeats 2 already trains every trial at seeds run.seed, run.seed"):
        start("run.seed=1,2", repeats=2)
    with pytest.raises(ConfigError, match="the sweep's own set-up cannot be varied"):
        start("sweep.seed=1,2")
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:s?mode=memory&uri=true", "sqlite+pysqlite://",
                "sqlite://?timeout=20"):  # out of the other workers' reach
        with pytest.raises(ConfigError, match=f"--storage {re.escape(url)}: an in-memory database lives only as long"):
            start(storage=url)
    assert list(tmp_path.iterdir()) == []


def test_check_shows_the_sweep_of_a_configs_sweep_section_and_refuses_a_bad_one_before_tensorflow(tmp_path):
    from nnrun.check import sweep_line

    line = sweep_line(load_config(SWEEP_CONFIG, ["sweep.prune=median", "sweep.repeats=3"]))
    assert line.endswith("sweep: grid search, 4 trials over model.layers.0.units, training.batch_size; ranked by "
                         "best_val_accuracy (higher is better), median pruning, 3 seeds each")  # fmt: skip
    assert "has no grid" in sweep_line(load_config(SWEEP_CONFIG, ["sweep.grid={}", "sweep.search=tpe", "sweep.trials=9"]))
    bad = tmp_path / "bad.yaml"
    bad.write_text(SWEEP_CONFIG.read_text().replace("model.layers.0.units:", "model.layers.0.unit:"))
    code = "import sys\nfrom nnrun.cli import app\ntry:\n    app()\nfinally:\n    assert 'tensorflow' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code, "check", str(bad)], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "sweep.grid model.layers[0].unit: there is no key 'unit'" in result.stderr.replace("\n", "")
    # Keras's names, as nnrun sweep checks them before it starts (check passed these, and every such trial failed).
    for grid, error in (("{model.layers.1.activation: [relu, reluu]}", "Could not interpret activation"),
                        ("{model.layers.0.units: [12, -3]}", "expected a positive integer"),
                        ("{training.loss: [binary_crossentropy, binary_crossentropyy]}", "binary_crossentropyy")):
        with pytest.raises(ConfigError, match=f"sweep key .* value .*{error}"):
            sweep_line(load_config(SWEEP_CONFIG, [f"sweep.grid={grid}"]))


def test_the_retrain_command_repeats_the_sweeps_own_settings(tmp_path):
    from nnrun.sweep.orchestrate import retrain_command

    _, state = start_sweep(SWEEP_CONFIG, ["training.epochs=3", "sweep.seed=4"], ["training.batch_size=16,32"],
                           runs_dir=tmp_path)  # fmt: skip
    command = retrain_command(state, {"model.layers.0.units": 64, "training.batch_size": 32})
    assert command == (f"nnrun train {SWEEP_CONFIG} --set training.epochs=3 --set model.layers.0.units=64 "
                       f"--set training.batch_size=32 --set dataset.validation=none --set sweep=null --runs-dir {tmp_path} "
                       "--name diabetes_sweep-best")  # the new run goes beside the sweep's folder
    # Without validation the config's sweep: section (ranked by val_accuracy) would not pass nnrun check: it goes.
    from nnrun.sweep.plan import plan

    with pytest.raises(ConfigError, match="the trials have no validation data"):
        plan(load_config(SWEEP_CONFIG, ["dataset.validation=none"]))
    assert load_config(SWEEP_CONFIG, ["dataset.validation=none", "sweep=null"]).sweep is None
    # The sweep's --set training.optimizer=sgd, and a grid over its learning rate: train reads --set in order, and
    # reaches the key inside "sgd" as the sweep did.
    _, state = start_sweep(SWEEP_CONFIG, ["training.optimizer=sgd"], ["training.optimizer.learning_rate=0.1,0.01"],
                           runs_dir=tmp_path)  # fmt: skip
    words = shlex.split(retrain_command(state, {"training.optimizer.learning_rate": 0.01}))
    sets = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    assert sets == ["training.optimizer=sgd", "training.optimizer.learning_rate=0.01", "dataset.validation=none", "sweep=null"]
    optimizer = load_config(SWEEP_CONFIG, sets).training.optimizer
    assert (optimizer.type, optimizer.learning_rate) == ("sgd", 0.01)
    # Whatever the mix of short forms and keys below them, the command trains the trial's own config.
    from nnrun.sweep.space import trial_config

    for sets, grid, params in (
        (["training.optimizer=adam", "training.optimizer=sgd"], ["training.optimizer.learning_rate=0.1,0.01"],
         {"training.optimizer.learning_rate": 0.01}),
        (["training.optimizer=sgd", "training.epochs=3"], ["training.optimizer.learning_rate=0.1,0.01", "model.layers.0.units=4,8"],
         {"training.optimizer.learning_rate": 0.1, "model.layers.0.units": 8}),
        (["training.callbacks=[{type: EarlyStopping, patience: 2, monitor: val_loss}]", "training.callbacks.0.patience=5"],
         ["training.callbacks.0.monitor=val_loss,val_accuracy"], {"training.callbacks.0.monitor": "val_accuracy"}),
        ([], ["model.layers.0.activation=relu,'null'"], {"model.layers.0.activation": "null"}),  # text, not None
        ([], ["training.optimizer=sgd,adam", "training.optimizer.learning_rate=0.1,0.01"],  # a key inside a short form
         {"training.optimizer": "sgd", "training.optimizer.learning_rate": 0.1}),
        ([], ["training.optimizer.learning_rate=0.1,0.01", "training.optimizer=sgd,adam"],  # given first: set after
         {"training.optimizer.learning_rate": 0.1, "training.optimizer": "sgd"}),
        (["training.optimizer={type: sgd, momentum: 0.9}"], ["training.optimizer.learning_rate=0.1,0.01"],  # no rate key
         {"training.optimizer.learning_rate": 0.01}),
        (["model.layers.1={type: Dropout, rate: 0.2}"], ["model.layers.1.rate=0.00005,0.3"],  # printed 5e-05: a number
         {"model.layers.1.rate": 0.00005}),
    ):  # fmt: skip
        _, state = start_sweep(SWEEP_CONFIG, sets, grid, runs_dir=tmp_path)
        trained = trial_config(state.base_config, params, name="x", runs_dir="r").to_dict()
        words = shlex.split(retrain_command(state, params))
        again = load_config(SWEEP_CONFIG, [words[i + 1] for i, word in enumerate(words) if word == "--set"]).to_dict()
        if "training.optimizer.learning_rate" in params:
            assert trained["training"]["optimizer"]["learning_rate"] == params["training.optimizer.learning_rate"]
        for config in (trained, again):
            config["run"].update(name=None, runs_dir=None)
            config.update(sweep=None, dataset={**config["dataset"], "validation": None})
        assert again == trained, (sets, grid)
    with pytest.raises(ConfigError, match=r"--set training.optimizer.learning_rate=0.5: --grid training.optimizer replaces "
                       r"training.optimizer whole with each of its values, so this --set would be lost; give the values "
                       r"whole, e.g. --grid 'training.optimizer=\{type: adam, learning_rate: ...\},"):  # fmt: skip
        start_sweep(SWEEP_CONFIG, ["training.optimizer.learning_rate=0.5"], ["training.optimizer=adam,sgd"],
                    runs_dir=tmp_path / "refused")  # fmt: skip
    with pytest.raises(ConfigError, match=r"--set training.optimizer.learning_rate=0.5: --grid training.optimizer "
                       r"replaces .* --grid 'training.optimizer=\{type: sgd, learning_rate: ...\},"):  # fmt: skip
        start_sweep(SWEEP_CONFIG, ["training.optimizer.learning_rate=0.5"], ["training.optimizer={type: sgd},{type: adam}"],
                    runs_dir=tmp_path / "refused")  # a mapping replaces it whole too
    with pytest.raises(ConfigError, match=r"no key 'momentum' in training.optimizer. Valid keys: type, learning_rate. "
                       r"To pass sgd an argument it has no key for yet, set training.optimizer whole, e.g. --set "
                       r"'training.optimizer=\{type: sgd, learning_rate: 0.01, momentum: ...\}'.$"):  # fmt: skip
        load_config(SWEEP_CONFIG, ["training.optimizer=sgd", "training.optimizer.learning_rate=0.01",
                                   "training.optimizer.momentum=0.9"])  # fmt: skip
    with pytest.raises(ConfigError, match=r"training.loss is a value \('binary_crossentropy'\), not a section with keys.$"):
        load_config(SWEEP_CONFIG, ["training.loss.from_logits=true"])  # a plain string: no {type: ...} to suggest


def test_a_grid_key_inside_another_is_checked_in_each_of_its_values_and_negative_indexes_are_one_key(tmp_path):
    from nnrun.sweep.space import trial_config

    # model.layers[-1] is model.layers.2 of three: the activation is set after the layer, not lost under it.
    with pytest.raises(ConfigError, match=r"--grid model.layers.2.activation: model.layers.2 value \"Dense\" has no key "
                       r"'activation' to vary; drop that value, or stop varying model.layers.2.activation \(or, if "
                       r"Dense takes activation, give it: \{type: Dense, activation: ...\}\).$"):  # fmt: skip
        start_sweep(SWEEP_CONFIG, [], ["model.layers[-1].activation=linear,tanh", "model.layers[2]=Dense,Dropout"],
                    runs_dir=tmp_path / "a")  # fmt: skip
    with pytest.raises(ConfigError, match=r"--set model.layers\[-1\].activation=linear: --grid model.layers.2 replaces"):
        start_sweep(SWEEP_CONFIG, ["model.layers[-1].activation=linear"], ["model.layers[2]={type: Dense, units: 1}"],
                    runs_dir=tmp_path / "b")  # fmt: skip
    layers = "model.layers.2={type: Dense, units: 1, activation: relu},{type: Dense, units: 1, activation: sigmoid}"
    _, state = start_sweep(SWEEP_CONFIG, [], ["model.layers[-1].activation=linear,tanh", layers], runs_dir=tmp_path)
    assert list(state.grid)[-2:] == ["model.layers.2.activation", "model.layers.2"]
    params = {"model.layers.2.activation": "tanh", "model.layers.2": state.grid["model.layers.2"][0]}
    assert trial_config(state.base_config, params, name="x", runs_dir="r").model.layers[2].activation == "tanh"
    # A mapping without the inner key the schema gives it (an optimizer's learning_rate), unchanged in sweep.json.
    optimizers = "training.optimizer={type: sgd, momentum: 0.9},{type: adam}"
    _, state = start_sweep(SWEEP_CONFIG, [], [optimizers, "training.optimizer.learning_rate=0.1,0.01"], runs_dir=tmp_path)
    assert state.grid["training.optimizer"] == [{"type": "sgd", "momentum": 0.9}, {"type": "adam"}]
    params = {"training.optimizer": {"type": "sgd", "momentum": 0.9}, "training.optimizer.learning_rate": 0.1}
    optimizer = trial_config(state.base_config, params, name="x", runs_dir="r").training.optimizer
    assert optimizer.model_dump() == {"type": "sgd", "learning_rate": 0.1, "momentum": 0.9}
    assert params["training.optimizer"] == {"type": "sgd", "momentum": 0.9}  # the trial's own value, not changed
    # An inner key the base config lacks, which every outer value has; and a negative index under a replaced list.
    start_sweep(SWEEP_CONFIG, [], ["training.optimizer={type: sgd, momentum: 0.0}", "training.optimizer.momentum=0.5,0.9"],
                runs_dir=tmp_path)  # fmt: skip
    two, one = "[{type: Dense, units: 8}, {type: Dense, units: 1, activation: relu}]", "[{type: Dense, units: 1, activation: relu}]"
    _, state = start_sweep(SWEEP_CONFIG, [], [f"model.layers={two},{one}", "model.layers.-1.activation=sigmoid"],
                           runs_dir=tmp_path)  # fmt: skip
    assert "model.layers.-1.activation" in state.grid  # the last of each value's layers, not the base's third
    with pytest.raises(ConfigError, match=r"preprocessing.0 value \"flatten\" has no key 'factor' to vary; drop that "
                       r"value, or stop varying preprocessing.0.factor.$"):  # a step's keys are fixed: {type: flatten, factor} fails
        start_sweep(SWEEP_CONFIG, ["preprocessing=[{type: scale, factor: 1}]"], ["preprocessing.0=flatten,{type: scale, "
                    "factor: 2}", "preprocessing.0.factor=1,2"], runs_dir=tmp_path)  # fmt: skip


def test_the_retrain_command_trains_the_trials_own_config_once_the_config_file_has_changed(tmp_path):
    from nnrun.sweep.orchestrate import resume_state, retrain_command

    config, runs = tmp_path / "cfg.yaml", tmp_path / "runs"
    config.write_text(SWEEP_CONFIG.read_text())
    _, state = start_sweep(config, ["dataset.validation=0.25"], runs_dir=runs)
    params, run = {"model.layers.0.units": 64, "training.batch_size": 16}, Path("runs/sweep-x/20260101-120000-cfg-t01")
    command = retrain_command(state, params, run)
    assert command.startswith(f"nnrun train {config} --set model.layers.0.units=64")
    assert command.count("dataset.validation") == 1  # =none; not =0.25 first
    # Edited since the sweep started (or gone): the file would train another model, so the trial's run directory
    # gives the config, which --rerun trains again in a new run.
    config.write_text(SWEEP_CONFIG.read_text().replace("units: 8, activation: relu", "units: 16, activation: relu"))
    rerun = f"nnrun train --rerun {run} --set dataset.validation=none --runs-dir {runs} --name cfg-best"
    assert retrain_command(state, params, run) == rerun
    config.unlink()
    assert retrain_command(state, params, run) == rerun
    # As the sweep writes it into sweep.json: from the best trial's own run directory.
    import optuna

    from nnrun.sweep.orchestrate import summarize

    config.write_text(SWEEP_CONFIG.read_text())
    path = start_sweep(config, ["dataset.validation=0.25"], runs_dir=runs)[0]
    state = read_state(path)
    study, name = open_study(path, state), "20260101-120000-cfg-t01"
    study.add_trial(optuna.create_trial(value=0.7, user_attrs={"params": params, "number": 0, "status": "completed",
                                                                "value": 0.7, "run_dirs": [name]}))  # fmt: skip
    summarize(study, state, path)
    assert state.best["retrain"].startswith(f"nnrun train {config} --set model.layers.0.units=64")
    state.status = "completed"
    write_state(path, state)  # as the sweep ended, with the command that the config file gave then
    config.write_bytes(SWEEP_CONFIG.read_bytes().replace(b"# A small", b"# \xe9 small"))  # Latin-1: unreadable now
    summarize(study, state, path)
    assert state.best["retrain"].startswith(f"nnrun train --rerun {path / name} --set dataset.validation=none")
    # --join or --resume of the sweep, ended before the edit: the command as the file reads now, not sweep.json's.
    assert resume_state(path, retry_failed=False).best["retrain"] == state.best["retrain"]
    assert read_state(path).best["retrain"].startswith(f"nnrun train {config} ")  # sweep.json left as it was


def test_the_retrain_command_keeps_the_validation_split_a_callback_monitors(tmp_path):
    from nnrun.sweep.orchestrate import retrain_command, watches_validation

    config = ROOT / "configs" / "mnist_mlp_earlystop.yaml"  # EarlyStopping on val_loss, validation 0.1
    _, state = start_sweep(config, [], ["training.batch_size=64,128"], runs_dir=tmp_path)
    assert watches_validation(state, {}) == "val_loss"
    assert "dataset.validation" not in retrain_command(state, {"training.batch_size": 64})  # =none: it would fail
    _, state = start_sweep(config, ["training.callbacks=[{type: EarlyStopping}]"], ["training.batch_size=64,128"],
                           runs_dir=tmp_path)  # fmt: skip
    assert watches_validation(state, {}) == "val_loss"  # EarlyStopping's default monitor
    _, state = start_sweep(config, ["training.callbacks=[{type: ModelCheckpoint, filepath: m.keras}]"],
                           ["training.batch_size=64,128"], runs_dir=tmp_path)  # fmt: skip
    assert watches_validation(state, {}) is None  # it reads its monitor only with save_best_only
    _, state = start_sweep(config, ["training.callbacks=[]"], ["training.batch_size=64,128"], runs_dir=tmp_path)
    assert watches_validation(state, {}) is None
    assert retrain_command(state, {"training.batch_size": 64}).endswith(f"--set dataset.validation=none --runs-dir {tmp_path} --name mnist_mlp_earlystop-best")


def test_the_retrain_command_follows_the_best_trials_own_split_and_callbacks(tmp_path):
    """The space varies the validation split or the callbacks: the retrain gives back the split the best trial held
    out, and keeps the one its EarlyStopping watched; the base config's say nothing of that trial."""
    from nnrun.sweep.orchestrate import retrain_command, watches_validation

    config = ROOT / "configs" / "diabetes_mlp.yaml"
    _, state = start_sweep(config, [], ["dataset.validation=0.2,test"], metric="test_accuracy", runs_dir=tmp_path)
    assert state.base_config["dataset"]["validation"] == "none"  # the config's own: no split to give back
    held_out = retrain_command(state, {"dataset.validation": 0.2})
    assert held_out.count("dataset.validation") == 1 and "--set dataset.validation=none" in held_out  # all the data
    assert "dataset.validation=test" in retrain_command(state, {"dataset.validation": "test"})
    stop = "[{type: EarlyStopping, monitor: val_loss, patience: 2}]"
    _, state = start_sweep(config, ["dataset.validation=0.2"], [f"training.callbacks=[],{stop}"],
                           metric="test_accuracy", runs_dir=tmp_path)  # fmt: skip
    early = state.grid["training.callbacks"][1]
    assert watches_validation(state, {"training.callbacks": early}) == "val_loss"
    assert "dataset.validation=none" not in retrain_command(state, {"training.callbacks": early})  # it watches val_loss
    assert watches_validation(state, {"training.callbacks": []}) is None
    assert "--set dataset.validation=none" in retrain_command(state, {"training.callbacks": []})


def test_a_space_that_varies_the_metrics_or_the_split_is_checked_by_its_values_not_the_base_config(tmp_path):
    """Every trial replaces the base config's metrics or validation split: a base that lacks the sweep metric is no
    reason to refuse a space whose every value logs it; a value (or a range's point) that drops it still is."""
    _, state = start_sweep(SWEEP_CONFIG, grid_options=["training.metrics=[accuracy,AUC],[AUC]"],
                           metric="validation.AUC", runs_dir=tmp_path)  # the base logs accuracy only
    assert (state.metric, state.budget) == ("validation.AUC", 8)  # with the config's 2 x 2 grid
    config = ROOT / "configs" / "diabetes_mlp.yaml"  # dataset.validation: none
    _, state = start_sweep(config, grid_options=["dataset.validation=0.2,0.3"], metric="val_accuracy", prune="median",
                           runs_dir=tmp_path)  # fmt: skip
    assert (state.metric, state.monitor) == ("best_val_accuracy", "val_accuracy")
    _, state = start_sweep(config, grid_options=["dataset.validation=uniform(0.1, 0.3)"], metric="val_accuracy",
                           search="random", trials=2, runs_dir=tmp_path)  # fmt: skip
    with pytest.raises(ConfigError, match=r'^sweep key dataset.validation value "none": --metric val_accuracy: '
                                          r"the trials have no validation data"):
        start_sweep(config, grid_options=["dataset.validation=0.2,none"], metric="val_accuracy", runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r'^sweep key training.metrics value \["accuracy"\] and dataset.validation '
                                          r"value 0.2: --metric validation.AUC: the trials log only"):
        start_sweep(config, grid_options=["training.metrics=[accuracy],[AUC]", "dataset.validation=0.2,0.3"],
                    metric="validation.AUC", runs_dir=tmp_path)  # fmt: skip


def test_the_flags_set_sweep_keys_even_for_a_config_without_a_sweep_section(tmp_path):
    _, state = start_sweep(ROOT / "configs" / "diabetes_mlp.yaml", ["dataset.validation=0.2"], [LR], search="random",
                           trials=2, seed=7, heartbeat=3, runs_dir=tmp_path)  # fmt: skip
    assert (state.mode, state.budget, state.seed, state.heartbeat_s) == ("random", 2, 7, 3)
    assert state.grid == {"training.optimizer.learning_rate": "loguniform(1e-4, 1e-1)"}
    with pytest.raises(ConfigError, match="sweep.trials: input should be greater than or equal to 1, got 0"):
        start_sweep(ROOT / "configs" / "diabetes_mlp.yaml", ["dataset.validation=0.2"], [LR], search="random", trials=0,
                    runs_dir=tmp_path)  # fmt: skip
    # --random N, the older spelling of --search random --trials N: the same sweep, and its own name in errors.
    _, state = start_sweep(SWEEP_CONFIG, grid_options=[LR], random=3, runs_dir=tmp_path)
    assert (state.mode, state.budget) == ("random", 3)
    with pytest.raises(ConfigError, match="sweep.random: input should be greater than or equal to 1, got 0.*--random"):
        start_sweep(SWEEP_CONFIG, grid_options=[LR], random=0, runs_dir=tmp_path)
    with pytest.raises(ConfigError, match="give one spelling, not both"):
        start_sweep(SWEEP_CONFIG, grid_options=[LR], random=3, search="tpe", runs_dir=tmp_path)


def test_a_regression_sweep_ranks_by_any_test_metric_the_table_shows(tmp_path):
    from nnrun.sweep.plan import ranked_on_test_data

    config = ROOT / "configs" / "penguins_mass.yaml"
    for metric, direction in (("test_r2", "maximize"), ("test_mae", "minimize"), ("test_rmse", "minimize"),
                              ("test.r2", "maximize"), ("test.rmse", "minimize")):  # fmt: skip
        _, state = start_sweep(config, grid_options=[LR], search="random", trials=2, metric=metric, runs_dir=tmp_path)
        assert (state.metric, state.direction) == (metric, direction)
        note = ranked_on_test_data(state.metric)
        assert f"ranking by {metric} chooses the hyperparameters on the test data" in note
        assert "(val_loss, say)" in note  # a metric these regressions log: not val_accuracy, nor validation.r2
    assert "(validation.AUC, say)" in ranked_on_test_data("test.AUC")
    assert ranked_on_test_data("val_loss") is None and ranked_on_test_data("validation.mae") is None
    # A validation metric on trials that validate on the test data (dataset.validation: test): the same warning.
    _, state = start_sweep(SWEEP_CONFIG, ["dataset.validation=test"], runs_dir=tmp_path)
    note = ranked_on_test_data(state.metric, state.base_config, state.grid)
    assert note.startswith("dataset.validation is 'test', so best_val_accuracy is measured on the test data: ")
    _, state = start_sweep(SWEEP_CONFIG, grid_options=["dataset.validation=0.2,test"], runs_dir=tmp_path)
    note = ranked_on_test_data(state.metric, state.base_config, state.grid)
    assert note.startswith("dataset.validation is 'test' in some trials, whose values are ranked against the others',")
    _, state = start_sweep(SWEEP_CONFIG, grid_options=["dataset.validation=0.2,0.1"], runs_dir=tmp_path)
    assert ranked_on_test_data(state.metric, state.base_config, state.grid) is None
    _, state = start_sweep(ROOT / "configs" / "mnist_mlp.yaml", grid_options=["dataset.validation=uniform(0.1, 0.3)"],
                           search="random", trials=2, runs_dir=tmp_path)  # its dataset.validation: test
    assert state.base_config["dataset"]["validation"] == "test"
    assert ranked_on_test_data(state.metric, state.base_config, state.grid) is None  # fractions replace the base's
    with pytest.raises(ConfigError, match="--metric test_accuracy: the trials log only loss, .*; rank these regressions"):
        start_sweep(config, grid_options=[LR], search="random", trials=2, metric="test_accuracy", runs_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"the trials have no validation data .*, e.g. --metric test_r2.$"):
        start_sweep(config, ["dataset.validation=none"], [LR], search="random", trials=2, runs_dir=tmp_path)  # a fix that works


def test_the_table_of_a_sweep_whose_runs_name_no_trial_groups_by_the_keys(tmp_path):
    """Runs of an older nnrun have no ``trial`` in run.json; grouping by it would fail."""
    from nnrun import rundir as rd
    from nnrun.sweep.orchestrate import sweep_comparison
    from nnrun.sweep.space import trial_config
    from nnrun.sweep.state import Trial

    path, state = start_sweep(SWEEP_CONFIG, grid_options=["training.batch_size=16"], repeats=2, runs_dir=tmp_path)
    params = {"model.layers.0.units": 12, "training.batch_size": 16}
    trial = Trial(1, f"{state.name}-t01", params, status="completed")
    for second, seed in enumerate((42, 43)):
        config = trial_config(state.base_config, {**params, "run.seed": seed}, name=f"{trial.name}-seed{seed}",
                              runs_dir=str(path))  # fmt: skip
        run = rd.RunDir(rd.create_run_dir(path, config.run.name, datetime(2026, 1, 1, 0, 0, second)))
        run.start(name=config.run.name, seed=seed, argv=[], now=datetime(2026, 1, 1), extra={"config": config.to_dict()})
        run.finish("completed", now=datetime(2026, 1, 1, 0, 1))
        trial.run_dirs.append(run.path.name)
    state.trials = [trial]
    comparison = sweep_comparison(path, state)
    assert "trial" not in comparison.columns and [r.fields["runs"] for r in comparison.records] == [2]


@pytest.mark.parametrize("repeats", [1, 2])
def test_a_table_of_pruned_trials_only_says_where_their_values_are_when_the_metric_is_measured_at_the_end(tmp_path, repeats):
    from nnrun import rundir as rd
    from nnrun.sweep.space import trial_config
    from nnrun.sweep.state import Trial

    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path, prune="median", metric="validation.accuracy",
                              repeats=repeats)  # fmt: skip
    params = {"model.layers.0.units": 12, "training.batch_size": 16}
    trial = Trial(1, f"{state.name}-t01", params, status="pruned", error="pruned after epoch 1: val_accuracy 0.5345")
    name = trial.name + "-seed42" * (repeats > 1)  # a pruned trial stops at its first seed
    config = trial_config(state.base_config, params, name=name, runs_dir=str(path))
    run = rd.RunDir(rd.create_run_dir(path, name, datetime(2026, 1, 1)))
    run.start(name=name, seed=42, argv=[], now=datetime(2026, 1, 1), extra={"config": config.to_dict(), "trial": 1})
    run.finish("pruned", now=datetime(2026, 1, 1, 0, 1), error=trial.error)
    trial.run_dirs.append(run.path.name)
    state.trials = [trial]
    # No run has validation.accuracy (no metrics.json): compare would refuse to sort by it, so the table leaves it out.
    comparison = sweep_comparison(path, state)
    assert [r.status for r in comparison.records] == ["pruned"] and "validation.accuracy" not in comparison.columns
    assert comparison.notes[-1] == ("pruned trials stop before validation.accuracy is measured, at the end of "
                                    "training: the val_accuracy each was pruned at is in sweep.json (the trial's error).")


def test_resume_queues_a_failed_trial_again_even_after_its_heartbeat_retries(tmp_path):
    import optuna

    from nnrun.sweep.orchestrate import resume_state

    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path)
    study = open_study(path, state)
    for attempt in range(4):  # the first attempt, and the 3 retries heartbeats allow
        trial = ask(study)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        retry(study, study.trials[-1])
    assert not [t for t in study.get_trials() if t.state.name == "WAITING"]  # no fourth retry by heartbeat
    resume_state(path, retry_failed=True)
    waiting = [t for t in study.get_trials() if t.state.name == "WAITING"]
    assert len(waiting) == 1 and waiting[0].system_attrs[RETRY_OF] == 0  # but --resume asks for it


def test_resume_queues_the_stale_trial_of_a_killed_worker_even_past_its_retries(tmp_path, monkeypatch):
    import optuna

    from nnrun.sweep.orchestrate import resume_state

    path, state = start_sweep(SWEEP_CONFIG, runs_dir=tmp_path, heartbeat=1)
    study = open_study(path, state)
    for attempt in range(3):  # the first attempt and 2 retries failed; the third retry is running when killed
        study.tell(ask(study), state=optuna.trial.TrialState.FAIL)
        retry(study, study.trials[-1])
    killed = ask(study)
    later = time.time() + 10  # its heartbeat long stale
    with monkeypatch.context() as clock:
        clock.setattr("nnrun.sweep.study.time", SimpleNamespace(time=lambda: later))
        resume_state(path, retry_failed=True)
    assert study.trials[killed.number].state == optuna.trial.TrialState.FAIL  # failed here, not in a later ask
    waiting = [t for t in study.get_trials() if t.state.name == "WAITING"]
    assert len(waiting) == 1 and waiting[0].system_attrs[RETRY_OF] == 0  # queued, though its retries are used up


def test_start_writes_the_set_up_and_an_empty_study(tmp_path):
    path, state = start_sweep(SWEEP_CONFIG, grid_options=["training.epochs=1,2"], runs_dir=tmp_path)
    saved = json.loads((path / "sweep.json").read_text())
    assert saved["mode"] == "grid" and saved["metric"] == "best_val_accuracy" and saved["budget"] == 8
    assert saved["direction"] == "maximize" and saved["prune"] == "none" and saved["trials"] == []
    assert (path / "study.journal").is_file() and path.name.startswith("sweep-") and path.name.endswith("-diabetes_sweep")
    assert open_study(path, state).user_attrs["nnrun.budget"] == 8
    with pytest.raises(ConfigError, match=r"--search tpe \(sweep.search\) needs --trials N"):
        start_sweep(SWEEP_CONFIG, search="tpe", runs_dir=tmp_path / "other")
    assert not (tmp_path / "other").exists()


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
    for flag in ("--join", "--resume"):  # a done sweep: its table and best again, and sweep.json left as it was
        again = CliRunner().invoke(app, ["sweep", flag, str(sweep_dir)])
        assert again.exit_code == 0 and "every trial of this sweep is done: nothing left to run." in again.output
        assert "best: trial" in again.output and json.loads((sweep_dir / "sweep.json").read_text()) == saved


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
    nothing = CliRunner().invoke(app, ["sweep", str(SWEEP_CONFIG), "--set", "training.epochs=1", "--grid", "model.layers.0.units=12",
                                       "--grid", "training.batch_size=64", "--grid", "model.layers.2.units=3",
                                       "--runs-dir", str(tmp_path)])  # fmt: skip
    assert nothing.exit_code == 1 and "sweep failed: 1 invalid" in nothing.output  # nothing trained: no success
    assert "--resume" not in nothing.output  # an invalid trial is not run again


@pytest.mark.slow
def test_a_grid_over_a_value_the_runs_keep_as_a_mapping_is_shown_by_the_keys_under_it(tmp_path):
    """``training.optimizer: sgd`` is stored as ``{type: sgd, learning_rate: null}``: the table crashed on the key."""
    result = CliRunner().invoke(app, ["sweep", str(SWEEP_CONFIG), "--smoke", "--grid", "training.optimizer=adam,sgd",
                                      "--grid", "model.layers.0.units=12", "--grid", "training.batch_size=64",
                                      "--set", "training.metrics=[accuracy,AUC]", "--runs-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    # The printed retrain command keeps '[accuracy,AUC]' (rich read it as a style tag, and printed 'training.metrics=').
    assert "--set 'training.metrics=[accuracy,AUC]'" in result.output.replace("\n", "")
    header = next(line for line in result.output.splitlines() if line.startswith("name "))
    assert "training.optimizer.type" in header and "training.optimizer.learning_rate" not in header  # only what differs
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("diabetes_sweep-t")}
    by_trial = {t.name: t.params["training.optimizer"] for t in read_state(Path(result.stdout.strip().splitlines()[-1])).trials}
    assert sorted(by_trial.values()) == ["adam", "sgd"]
    assert all(f" {by_trial[name]} " in row for name, row in rows.items())
    assert "best: trial" in result.output
    assert "--smoke --name diabetes_sweep-best" in result.output.replace("\n", "")  # a smoke sweep's retrain is one too


@pytest.mark.slow
def test_a_diverged_trial_is_told_apart_and_not_offered_again(tmp_path, monkeypatch):
    result = CliRunner().invoke(app, ["sweep", str(ROOT / "configs" / "penguins_mass.yaml"), "--smoke", "--set",
                                      "training.optimizer=sgd", "--grid", "training.optimizer.learning_rate=1e9,1e-9",
                                      "--runs-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output  # a point of the space that diverges is a result, not a failure
    sweep_dir = Path(result.stdout.strip().splitlines()[-1])
    by_rate = {t.params["training.optimizer.learning_rate"]: t for t in read_state(sweep_dir).trials}
    assert by_rate[1e-9].status == "completed" and by_rate[1e-9].value is not None  # a number, as YAML 1.2 reads it
    assert by_rate[1e9].status == "diverged" and by_rate[1e9].error.startswith("the loss became NaN in epoch 1: "
                                                                                   "the training diverged")  # fmt: skip
    assert "sweep completed: 1 completed, 1 diverged" in result.output and "--resume" not in result.output
    from nnrun.sweep.study import open_study

    frozen = {t.user_attrs["status"]: t.state.name for t in open_study(sweep_dir, read_state(sweep_dir)).trials}
    assert frozen == {"completed": "COMPLETE", "diverged": "PRUNED"}  # not FAIL, which TPE would not learn from
    started_in = Path.cwd()
    monkeypatch.chdir(tmp_path)  # another terminal: the retrain command's config path is from the sweep's folder
    resumed = CliRunner().invoke(app, ["sweep", "--resume", str(sweep_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert [t.attempts for t in read_state(sweep_dir).trials] == [1, 1]  # neither trained again
    assert f"  cd {shlex.quote(str(started_in))} && nnrun train " in resumed.output
    # A classifier's accuracy on NaN weights is still a number (one class's share): the run's NaN loss tells.
    result = CliRunner().invoke(app, ["sweep", str(SWEEP_CONFIG), "--smoke", "--set", "training.optimizer=sgd", "--grid",
                                      "training.optimizer.learning_rate=1e9,0.01", "--grid", "training.batch_size=64",
                                      "--grid", "model.layers.0.units=12", "--prune", "median",  # epochs reported
                                      "--runs-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    state = read_state(Path(result.stdout.strip().splitlines()[-1]))
    by_rate = {t.params["training.optimizer.learning_rate"]: t for t in state.trials}
    assert by_rate[1e9].status == "diverged" and "the loss became NaN in epoch 1" in by_rate[1e9].error
    assert by_rate[1e9].value is None  # not the NaN run's accuracy, which Optuna keeps for a pruned trial
    assert by_rate[0.01].status == "completed" and state.best["trial"] == by_rate[0.01].index
    # Its run shows diverged wherever runs are listed: the table (after the completed one), compare and show.
    rows = [line.split() for line in result.output.splitlines() if line.startswith("diabetes_sweep-t")]
    assert [row[1] for row in rows] == ["completed", "diverged"], result.output
    diverged_run = Path(result.stdout.strip().splitlines()[-1]) / by_rate[1e9].run_dir
    shown = CliRunner().invoke(app, ["show", str(diverged_run)])
    assert shown.output.splitlines()[0].split()[1] == "diverged", shown.output


def test_data_missing_where_a_worker_runs_fails_the_trial_for_a_retry_rather_than_skipping_it(tmp_path):
    config = ROOT / "configs" / "penguins_species.yaml"
    data = Path(shutil.copy(ROOT / "configs" / "data" / "penguins.csv", tmp_path / "here-at-the-start.csv"))
    path, _ = start_sweep(config, [f"dataset.path={data}"], ["training.batch_size=16"], runs_dir=tmp_path)
    data.unlink()  # gone where the worker runs (the sweep's start refuses a file missing there)
    result = CliRunner().invoke(app, ["sweep", "--resume", str(path)])
    assert result.exit_code == 1, result.output
    (trial,) = read_state(path).trials
    assert trial.status == "failed" and "here-at-the-start.csv: file not found" in trial.error  # not "invalid", which --resume never runs again
    assert "nnrun sweep --resume" in result.output
    # Data that is there but cannot serve this point (a continuous label for a classifier) is a bad point: invalid.
    result = CliRunner().invoke(app, ["sweep", str(config), "--grid", "dataset.label=body_mass_g",
                                      "--runs-dir", str(tmp_path)])  # fmt: skip
    (trial,) = read_state(Path(result.stdout.strip().splitlines()[-1])).trials
    assert trial.status == "invalid" and "body_mass_g" in trial.error, trial
    assert "--resume" not in result.output


def test_join_and_resume_work_in_the_folder_the_sweep_started_in(tmp_path, monkeypatch):
    from nnrun.sweep.orchestrate import resume_state

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    path, _ = start_sweep(SWEEP_CONFIG, runs_dir="runs")
    monkeypatch.chdir(tmp_path / "b")  # another terminal, or another machine's mount of the same folder
    state = resume_state(Path("..") / "a" / path.relative_to(tmp_path / "a"), retry_failed=False)
    assert Path.cwd().resolve() == (tmp_path / "a").resolve() and Path(state.cwd).resolve() == Path.cwd().resolve()


@pytest.mark.slow
def test_a_run_of_the_trials_name_is_kept_only_if_it_trained_the_trials_config(tmp_path):
    """A retry keeps an earlier finished run by name; one of another config under that name is not the trial's."""
    from nnrun import rundir as rd
    from nnrun.sweep.space import trial_config
    from nnrun.sweep.trial import _train_one

    path, state = start_sweep(SWEEP_CONFIG, sets=["training.epochs=1"], runs_dir=tmp_path)
    name = f"{state.name}-t04"
    config = trial_config(state.base_config, {"model.layers.0.units": 12, "training.batch_size": 16}, name=name,
                          runs_dir=str(path))  # fmt: skip
    other = trial_config(state.base_config, {"model.layers.0.units": 64, "training.batch_size": 64}, name=name,
                         runs_dir=str(path))  # fmt: skip
    for planted_config, kept in ((other, False), (config, True)):
        planted = rd.RunDir(rd.create_run_dir(path, name, datetime(2026, 1, 1, 0, 0, int(kept))))
        planted.start(name=name, seed=42, argv=[], now=datetime(2026, 1, 1), extra={"config": planted_config.to_dict()})
        planted.finish("completed", now=datetime(2026, 1, 1, 0, 1))
        run, status, _ = _train_one(state, config, None, 4)
        assert (run == planted.path) is kept and status == "completed"
        if not kept:
            assert json.loads((run / "run.json").read_text())["config"]["model"]["layers"][0]["units"] == 12  # trained
            shutil.rmtree(run)


@pytest.mark.slow
def test_ctrl_c_in_a_trials_last_epoch_completes_it_and_stops_the_sweep(tmp_path, monkeypatch):
    """The run finishes its last epoch and completes, as ``nnrun train`` does; the sweep must not go on."""
    from nnrun import training

    original = training.make_run_callbacks

    def interrupting(*args, **kwargs):
        from nnrun.tf import import_keras

        class CtrlC(import_keras().callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 1:  # the last of 2
                    os.kill(os.getpid(), signal.SIGINT)

        return [*original(*args, **kwargs), CtrlC()]

    monkeypatch.setattr(training, "make_run_callbacks", interrupting)
    path, state = start_sweep(SWEEP_CONFIG, sets=TWO_EPOCHS, grid_options=["training.batch_size=16,64"], runs_dir=tmp_path)
    with pytest.raises(RunInterrupted, match="nnrun sweep --resume"):
        work(path, state)
    stopped = read_state(path)
    assert stopped.status == "interrupted" and [t.status for t in stopped.trials] == ["completed"]  # no trial 2
    run = json.loads((path / stopped.trials[0].run_dir / "run.json").read_text())
    assert run["status"] == "completed" and run["epochs_run"] == 2
    # In the last trial's last epoch: nothing is left to stop, so the sweep completed and says so.
    path, state = start_sweep(SWEEP_CONFIG, sets=TWO_EPOCHS, grid_options=["training.batch_size=16,64"], trials=1,
                              runs_dir=tmp_path / "one")  # fmt: skip
    assert work(path, state).status == "completed"
    ended = read_state(path)
    assert ended.status == "completed" and ended.history[-1]["status"] == "completed" and ended.best["trial"] == 1


@pytest.mark.slow
def test_parallel_jobs_give_the_same_results_as_sequential(grid_sweep, tmp_path):
    path, state = start_sweep(SWEEP_CONFIG, sets=TWO_EPOCHS, grid_options=["training.batch_size=16,64"], runs_dir=tmp_path)
    lines = []
    result = work(path, state, jobs=2, echo=lines.append)
    assert result.status == "completed"
    assert result.history[-1]["jobs"] == 2
    assert not [line for line in lines if "ended with exit code" in line]  # the helper did not fail...
    assert {entry["pid"] for entry in result.history} - {os.getpid()}  # ...and ran to its end (its own history entry)
    # Every trial's end is shown as it comes, the helper's marked with its pid (run.json's: it trained the run).
    ended = {int(m[1]): line for line in lines if (m := re.search(r"trial (\d)/4 (\[green\])?completed", line))}
    assert sorted(ended) == [1, 2, 3, 4], lines
    for trial in read_state(path).trials:
        pid = json.loads((path / trial.run_dir / "run.json").read_text())["pid"]
        assert ("(--join pid " in ended[trial.index]) == (pid != os.getpid()), (pid, ended[trial.index])
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
        work(path, state)
    stopped = read_state(path)
    assert stopped.status == "interrupted"
    assert [t.status for t in stopped.trials] == ["completed", "interrupted"]  # the other two never started
    assert "stopped after 1 completed epoch" in stopped.trials[1].error
    assert "nnrun train --resume" not in stopped.trials[1].error  # the sweep's --resume continues it, not train's
    run = json.loads((path / stopped.trials[1].run_dir / "run.json").read_text())
    assert run["error"].endswith(f"Continue with: nnrun sweep --resume {path}")  # as show prints it, too
    first_run = json.loads((path / stopped.trials[0].run_dir / "run.json").read_text())
    monkeypatch.setattr(training, "make_run_callbacks", original)

    result = CliRunner().invoke(app, ["sweep", "--resume", str(path)])
    assert result.exit_code == 0, result.output
    resumed = read_state(path)
    assert resumed.status == "completed" and [t.status for t in resumed.trials] == ["completed"] * 4
    assert "resuming" in result.output
    # Trial 1 was not trained again; trial 2 continued in the same run directory from epoch 2.
    assert json.loads((path / resumed.trials[0].run_dir / "run.json").read_text()) == first_run
    assert "trial 2/4 training" in result.output and "(attempt 2)" in result.output
    assert "trial 4/4 training" in result.output and "trial 5/4" not in result.output  # numbered 1-4, no gap
    assert [t.index for t in resumed.trials] == [1, 2, 3, 4]
    assert [t.run_dir.endswith(f"-t0{t.index}") for t in resumed.trials] == [True] * 4
    assert resumed.trials[0].attempts == 1 and resumed.trials[1].attempts == 2
    assert resumed.trials[1].run_dir == stopped.trials[1].run_dir
    second_run = json.loads((path / resumed.trials[1].run_dir / "run.json").read_text())
    assert second_run["resumed"][0]["from_epoch"] == 1
    # Its duration is the run's time trained, both epochs, not only the attempt that resumed it.
    assert resumed.trials[1].duration_s == pytest.approx(second_run["duration_s"], abs=1e-3)
    # ...and every trial ends exactly where the uninterrupted sweep did.
    assert_same_results(trial_results(path), trial_results(grid_sweep[0]), tolerance=1e-6)
    assert len(resumed.history) == 2 and resumed.history[0]["status"] == "interrupted"
    assert resumed.best["trial"] in (1, 2, 3, 4) and "nnrun train" in resumed.best["retrain"]


@pytest.mark.slow
def test_median_pruning_stops_a_clearly_worse_trial_after_an_epoch(tmp_path):
    rates = [0.01, 0.005, 1e-5]  # the last barely moves from its initial loss
    path, state = start_sweep(SWEEP_CONFIG, sets=["training.epochs=3"], search="grid",
                              grid_options=["model.layers.0.units=12", "training.batch_size=64",
                                            "training.optimizer.learning_rate=0.01,0.005,0.00001"],
                              prune="median", metric="val_loss", runs_dir=tmp_path)  # fmt: skip
    study = open_study(path, state)
    for rate in rates:  # Optuna's own queue fixes the order: two good trials first, then the poor one
        study.enqueue_trial({"model.layers.0.units": 12, "training.batch_size": 64, "training.optimizer.learning_rate": rate})
    result = work(path, state)
    assert state.monitor == "val_loss" and result.status == "completed"
    by_rate = {t.params["training.optimizer.learning_rate"]: t for t in result.trials}
    assert [by_rate[r].status for r in rates] == ["completed", "completed", "pruned"]
    pruned = path / by_rate[1e-5].run_dir
    run = json.loads((pruned / "run.json").read_text())
    assert run["status"] == "pruned" and run["epochs_run"] < 3 and "pruned after epoch" in run["error"]
    assert (pruned / "checkpoints" / "last.keras").is_file() and not (pruned / "model.keras").exists()
    # The pruner heard val_loss after every epoch, from the run's own history.
    history = list(csv.DictReader(open(pruned / "history.csv")))
    assert len(history) == run["epochs_run"]
    assert study.trials[2].intermediate_values == {i + 1: float(r["val_loss"]) for i, r in enumerate(history)}
    assert by_rate[1e-5].value == pytest.approx(min(float(r["val_loss"]) for r in history))  # best_val_loss, ranked
    assert by_rate[1e-5].error == run["error"]  # sweep.json says where it was pruned, as its trial line did
    assert not [n for n in sweep_comparison(path, result).notes if "pruned" in n]  # best_val_loss: from its history
    # compare and show say pruned too.
    listed = CliRunner().invoke(app, ["compare", str(path), "--format", "csv", "--columns", "id,status"])
    assert f"{pruned.name},pruned" in listed.stdout
    assert "pruned" in CliRunner().invoke(app, ["show", str(pruned)]).output


def nnrun(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "nnrun", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)  # fmt: skip


def wait_for(check, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not check():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def the_sweep(runs: Path) -> Path:
    wait_for(lambda: any((p / "sweep.json").exists() for p in runs.glob("sweep-*")))
    return next(runs.glob("sweep-*"))


@pytest.mark.slow
def test_two_join_workers_share_the_budget_with_no_duplicate_and_no_lost_trial(tmp_path):
    first = nnrun("sweep", str(SWEEP_CONFIG), "--set", "training.epochs=2", "--grid", "model.layers.0.units=4,8,12,16",
                  "--runs-dir", str(tmp_path))  # the config's 2 batch sizes: 8 trials
    sweep_dir = the_sweep(tmp_path)
    second = nnrun("sweep", "--join", str(sweep_dir))
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    study = open_study(sweep_dir, read_state(sweep_dir))
    trials = study.get_trials()
    assert len(trials) == 8 and all(t.state.name == "COMPLETE" for t in trials)
    combos = {tuple(sorted(t.params.items())) for t in trials}
    assert len(combos) == 8  # the whole 4 x 2 grid, each point once
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes trained
    run_dirs = [d for t in trials for d in t.user_attrs["run_dirs"]]
    assert len(set(run_dirs)) == 8 and sorted(run_dirs) == sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    state = read_state(sweep_dir)
    assert state.status == "completed" and [t.status for t in state.trials] == ["completed"] * 8
    assert "joining sweep" in outputs[1][1]


@pytest.mark.slow
def test_a_worker_killed_mid_trial_loses_only_that_trial_which_resumes_from_its_checkpoint(tmp_path):
    worker = nnrun("sweep", str(SWEEP_CONFIG), "--set", "training.epochs=40", "--grid", "model.layers.0.units=12",
                   "--grid", "training.batch_size=16,32,64", "--heartbeat", "1", "--runs-dir", str(tmp_path))
    sweep_dir = the_sweep(tmp_path)

    def second_trial_has_a_checkpoint() -> bool:
        trials = read_state(sweep_dir).trials
        runs = sorted(p for p in sweep_dir.glob("*-t0*") if (p / "checkpoints" / "last.json").is_file())
        return len(trials) >= 2 and len(runs) >= 2 and json.loads((runs[-1] / "run.json").read_text())["status"] == "running"

    wait_for(second_trial_has_a_checkpoint)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    killed = sorted(p for p in sweep_dir.glob("*-t0*"))[-1]
    info = json.loads((killed / "run.json").read_text())
    assert info["status"] == "running"  # what kill -9 leaves
    # As if the worker ran on another machine: its pid proves nothing here; its free run.lock shows it dead.
    (killed / "run.json").write_text(json.dumps({**info, "host": "another-host"}))

    result = CliRunner().invoke(app, ["sweep", "--join", str(sweep_dir)])
    assert result.exit_code == 0, result.output
    state = read_state(sweep_dir)
    assert state.status == "completed" and [t.status for t in state.trials] == ["completed"] * 3
    second = state.trials[1]
    assert second.attempts == 2 and second.run_dir == killed.name  # the same run directory, continued
    run = json.loads((killed / "run.json").read_text())
    assert run["status"] == "completed" and run["resumed"][0]["from_epoch"] >= 1 and run["epochs_run"] == 40
    assert run["host"] == run["resumed"][0]["host"] == socket.gethostname()  # who resumed it, with its pid
    study = open_study(sweep_dir, state)
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and "status" not in failed[0].user_attrs  # failed by heartbeat: its worker recorded nothing
    retried = [t for t in study.trials if t.system_attrs.get(RETRY_OF) == failed[0].number]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE" and retried[0].user_attrs["pid"] == os.getpid()


@pytest.mark.slow
def test_repeats_rank_by_the_mean_over_seeds(tmp_path):
    # Random search over one point: both trials draw the same values, and must still be a row each.
    result = CliRunner().invoke(app, ["sweep", str(SWEEP_CONFIG), "--set", "training.epochs=2", "--grid", "training.batch_size=64",
                                      "--grid", "model.layers.0.units=12,64", "--search", "random", "--trials", "3",
                                      "--repeats", "3", "--runs-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    sweep_dir = Path(result.stdout.strip().splitlines()[-1])
    state = read_state(sweep_dir)
    assert len(state.trials) == 3 and all(len(t.run_dirs) == 3 for t in state.trials)
    units = [t.params["model.layers.0.units"] for t in state.trials]
    assert len(set(units)) < 3  # three trials, two points: two trials drew the same one
    for trial in state.trials:
        best = []
        for seed, run_dir in zip((42, 43, 44), trial.run_dirs):
            assert json.loads((sweep_dir / run_dir / "run.json").read_text())["seed"] == seed
            best.append(max(float(r["val_accuracy"]) for r in csv.DictReader(open(sweep_dir / run_dir / "history.csv"))))
        mean = sum(best) / 3
        std = math.sqrt(sum((b - mean) ** 2 for b in best) / 2)  # by hand: the sample standard deviation
        assert math.isclose(trial.value, mean, abs_tol=1e-9) and math.isclose(trial.std, std, abs_tol=1e-9)
        assert f"{mean:.4f} ± {std:.4f}" in result.output
    assert state.best["value"] == max(t.value for t in state.trials)
    best = state.best
    assert f"best: trial {best['trial']}, best_val_accuracy {best['value']:.4f} ± {best['std']:.4f}" in result.output
    grouped = CliRunner().invoke(app, ["compare", str(sweep_dir), "--group-by", "trial", "--format", "json"])
    rows = {r["trial"]: r for r in json.loads(grouped.stdout)}
    assert sorted(rows) == [1, 2, 3]  # one row per trial, as the sweep's table has
    for trial in state.trials:
        assert rows[trial.index]["runs"] == 3
        assert math.isclose(rows[trial.index]["best_val_accuracy"]["mean"], trial.value, abs_tol=1e-9)


def test_resume_refuses_a_folder_that_is_not_a_sweep(tmp_path):
    result = CliRunner().invoke(app, ["sweep", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a sweep directory (no sweep.json)" in result.output
    result = CliRunner().invoke(app, ["sweep", "--resume", str(tmp_path), "--grid", "a=1"])
    assert result.exit_code == 2 and "drop --grid" in result.output
    result = CliRunner().invoke(app, ["sweep", "--join", str(tmp_path)])
    assert result.exit_code == 2 and "is not a sweep directory (no sweep.json)" in result.output


# ------------------------------------------------------------------ Ray


@pytest.mark.slow
def test_ray_executor_runs_a_tpe_sweep_with_pruning(tmp_path, capfd, monkeypatch):
    if importlib.util.find_spec("ray") is None:  # not imported here: nnrun sets Ray's log options before it loads
        pytest.skip("Ray is optional: pip install 'nnrun[ray]'")
    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    path, state = start_sweep(SWEEP_CONFIG, sets=TWO_EPOCHS, grid_options=[LR, "training.batch_size=64"], search="tpe",
                              trials=3, prune="median", seed=5, runs_dir=tmp_path)  # fmt: skip
    result = work(path, state, executor="ray", ray_cpus=2)
    shown = capfd.readouterr().err  # the workers' lines, as Ray passes them on to this process
    assert "(sweep_worker pid=" in shown and "\x1b[" not in shown  # not a terminal: no colour codes in a log
    ends = {int(m[1]) for m in re.finditer(r"\(sweep_worker pid=\d+\) trial (\d)/3 (completed|pruned)", shown)}
    assert ends == {1, 2, 3}, shown  # every trial's last line, the last trial's too (not lost as Ray shuts down)
    assert result.status == "completed" and result.executor == "ray"
    assert len(result.trials) == 3 and all(t.status in ("completed", "pruned") for t in result.trials)
    study = open_study(path, state)
    # Asked of the study and told back: every trial has its metric per epoch and a value; each ran in a Ray worker.
    assert all(t.intermediate_values and t.value is not None for t in study.trials)
    assert all(t.user_attrs["pid"] != os.getpid() for t in study.trials)
    workers = [entry for entry in read_state(path).history if entry["pid"] != os.getpid()]
    assert workers and {entry["executor"] for entry in workers} == {"ray task"}  # not "local": they ran in Ray
    for trial in result.trials:
        run = json.loads((path / trial.run_dir / "run.json").read_text())
        assert run["config"]["training"]["optimizer"]["learning_rate"] == trial.params["training.optimizer.learning_rate"]


@pytest.mark.slow
def test_ctrl_c_of_a_ray_sweep_shows_each_workers_interrupted_trial(tmp_path):
    """Their last lines reach this console before Ray shuts down (ray-project/ray#31931 drops them otherwise)."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is optional: pip install 'nnrun[ray]'")
    log = tmp_path / "sweep.log"
    with open(log, "w") as out:
        sweep = subprocess.Popen([sys.executable, "-m", "nnrun", "sweep", str(SWEEP_CONFIG), "--set", "training.epochs=500",
                                  "--search", "random", "--trials", "2", "--executor", "ray", "--runs-dir", str(tmp_path)],
                                 stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
        deadline = time.time() + 120
        while log.read_text().count(" training ") < 2:  # both workers have begun a trial
            assert time.time() < deadline and sweep.poll() is None, log.read_text()
            time.sleep(0.5)
        time.sleep(3)
        sweep.send_signal(signal.SIGINT)
        assert sweep.wait(timeout=120) == 130, log.read_text()
    (path,) = tmp_path.glob("sweep-*")
    stopped = [t.index for t in read_state(path).trials if t.status == "interrupted"]
    shown = [int(m[1]) for m in re.finditer(r"\(sweep_worker pid=\d+\) trial (\d)/2 interrupted", log.read_text())]
    assert stopped and sorted(shown) == sorted(stopped), log.read_text()


@pytest.mark.slow
def test_ray_workers_that_find_the_data_edited_stop_with_its_own_error_said_once(tmp_path, monkeypatch):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is optional: pip install 'nnrun[ray]'")
    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    data = tmp_path / "penguins.csv"
    data.write_text((ROOT / "configs" / "data" / "penguins.csv").read_text())
    path, state = start_sweep(ROOT / "configs" / "penguins_species.yaml", sets=[f"dataset.path={data}"],
                              grid_options=["training.batch_size=16,32"], runs_dir=tmp_path / "runs")  # fmt: skip
    data.write_text(data.read_text().replace("Adelie", "adelie"))
    lines = []
    with pytest.raises(DataChanged, match=rf"changed since the sweep started.* --resume {re.escape(str(path))}, or"):
        work(path, state, executor="ray", ray_cpus=2, echo=lines.append)  # not "can each node reach" the folder
    assert len([line for line in lines if "a Ray worker stopped" in line]) == 1  # two workers, one line
    assert read_state(path).status == "failed" and read_state(path).trials == []  # refused before a trial


def test_the_data_file_is_looked_for_where_the_sweep_starts_unless_a_ray_cluster_trains(tmp_path):
    from nnrun.errors import DataError

    start = dict(sets=["dataset.path=elsewhere/penguins.csv"], grid_options=["training.batch_size=16,32"])
    with pytest.raises(DataError, match="dataset.path elsewhere/penguins.csv: file not found"):
        start_sweep(ROOT / "configs" / "penguins_species.yaml", runs_dir=tmp_path, **start)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # refused before the sweep folder
    path, state = start_sweep(ROOT / "configs" / "penguins_species.yaml", runs_dir=tmp_path, data_here=False, **start)
    assert (path / "sweep.json").is_file() and state.data is None  # the cluster's nodes may mount what this one lacks
    start["sets"] = [f"dataset.path={ROOT / 'configs' / 'data' / 'penguins.csv'}"]
    _, state = start_sweep(ROOT / "configs" / "penguins_species.yaml", runs_dir=tmp_path, data_here=False, **start)
    assert state.data["bytes"] > 0  # here too: the nodes' workers compare theirs with it


def test_a_worker_whose_data_is_other_data_under_the_same_path_is_refused(tmp_path, monkeypatch):
    """Workers in another folder (the start folder gone, or another machine) find dataset.path relative to theirs."""
    import shutil

    from nnrun.sweep.orchestrate import resume_state

    source = ROOT / "configs" / "data" / "penguins.csv"
    for folder, rows in (("a", 120), ("b", 200)):  # the same relative path, other rows
        (tmp_path / folder / "data").mkdir(parents=True)
        lines = source.read_text().splitlines(keepends=True)
        (tmp_path / folder / "data" / "penguins.csv").write_text("".join(lines[: rows + 1]))
    monkeypatch.chdir(tmp_path / "a")
    path, state = start_sweep(ROOT / "configs" / "penguins_species.yaml", sets=["dataset.path=data/penguins.csv"],
                              grid_options=["training.batch_size=16,32"], runs_dir=tmp_path / "runs")  # fmt: skip
    assert state.data["bytes"] == (tmp_path / "a" / "data" / "penguins.csv").stat().st_size
    assert read_state(path).data == state.data  # in sweep.json
    monkeypatch.chdir(tmp_path / "b")
    assert resume_state(path, retry_failed=True).cwd == str(tmp_path / "a")  # it works in a, where the data is
    shutil.move(tmp_path / "a", tmp_path / "gone")
    monkeypatch.chdir(tmp_path / "b")
    for retry_failed in (False, True):  # --join, --resume
        with pytest.raises(DataChanged, match=r"dataset.path data/penguins.csv is other data here \(.*/b/data/pengu"):
            resume_state(path, retry_failed=retry_failed)
    shutil.copy(tmp_path / "gone" / "data" / "penguins.csv", tmp_path / "b" / "data" / "penguins.csv")
    assert resume_state(path, retry_failed=False).data == state.data  # a copy of the same file: fine
    (tmp_path / "b" / "data" / "penguins.csv").unlink()
    resume_state(path, retry_failed=False)  # not here: its trials fail for a worker that has it to retry


def test_data_edited_while_the_sweep_runs_stops_it_before_the_next_trial(tmp_path, monkeypatch):
    from nnrun.sweep import orchestrate
    from nnrun.sweep.orchestrate import resume_state

    data = tmp_path / "penguins.csv"
    data.write_text((ROOT / "configs" / "data" / "penguins.csv").read_text())
    path, state = start_sweep(ROOT / "configs" / "penguins_species.yaml", sets=[f"dataset.path={data}"],
                              grid_options=["training.batch_size=8,16,32"], runs_dir=tmp_path / "runs")  # fmt: skip
    trained = []

    def trained_then_edited(trial, *args):  # the user changes the file while trial 1 trains
        trained.append(trial.number)
        data.write_text(data.read_text().replace("Adelie", "adelie"))
        trial.set_user_attr("status", "completed")
        return 0.5

    monkeypatch.setattr(orchestrate, "run_trial", trained_then_edited)  # so this tests the check in ask only
    with pytest.raises(DataChanged, match="changed since the sweep started"):
        work(path, state)
    assert trained == [0] and read_state(path).status == "failed"  # trial 2 never trained on the edited file
    assert [t.status for t in read_state(path).trials] == ["completed", "failed"]
    assert "changed since the sweep started" in read_state(path).trials[1].error
    with pytest.raises(DataChanged, match=rf"^dataset.path {re.escape(str(data))} changed since the sweep started "
                       r"\(.* bytes then, .* bytes now; its SHA-256 differs\).*Put the data back as it was and go on "
                       rf"with nnrun sweep --resume {re.escape(str(path))}, or start a new sweep on it.$"):  # fmt: skip
        resume_state(path, retry_failed=True)


@pytest.mark.slow
def test_a_trial_whose_data_was_edited_while_it_trained_fails_and_its_retry_trains_again(tmp_path, monkeypatch):
    from nnrun.sweep import trial as trial_module
    from nnrun.sweep.orchestrate import resume_state

    data = tmp_path / "penguins.csv"
    original = (ROOT / "configs" / "data" / "penguins.csv").read_text()
    data.write_text(original)
    path, state = start_sweep(ROOT / "configs" / "penguins_species.yaml", grid_options=["training.batch_size=16,32"],
                              sets=[f"dataset.path={data}", "training.epochs=2"], prune="median",
                              runs_dir=tmp_path / "runs")  # fmt: skip
    real = trial_module._train_one

    def edited_as_it_trains(*args):  # the user saves the file while trial 1's epoch runs (the run read either)
        data.write_text(original.replace("Adelie", "adelie"))
        return real(*args)

    monkeypatch.setattr(trial_module, "_train_one", edited_as_it_trains)
    with pytest.raises(DataChanged, match="changed since the sweep started"):
        work(path, state)
    monkeypatch.undo()
    trials = read_state(path).trials
    assert [(t.status, t.value) for t in trials] == [("failed", None)]  # not ranked; trial 2 never started
    assert "changed since the sweep started" in trials[0].error and len(trials[0].run_dirs) == 1
    run = json.loads((path / trials[0].run_dirs[0] / "run.json").read_text())
    assert run["status"] == "failed" and run["error"].startswith("the data changed as it trained: ")
    data.write_text(original)
    resumed = resume_state(path, retry_failed=True)
    queued = [t for t in open_study(path, resumed).get_trials() if t.state.name == "WAITING"]
    assert len(queued) == 1 and queued[0].intermediate_values == {}  # the pruner forgets the epochs on the other data
    state = work(path, resumed)
    assert state.status == "completed" and [t.status for t in state.trials] == ["completed", "completed"]
    assert state.trials[0].previous_run_dirs == trials[0].run_dirs  # trained again, in a new run directory
    assert state.trials[0].run_dirs != trials[0].run_dirs


def test_an_infinite_metric_is_a_diverged_trial_with_repeats_too(tmp_path, monkeypatch):
    """A loss that overflowed to inf (not NaN): diverged, as NaN is; over seeds, the std of inf and a number crashed
    the worker."""
    from nnrun.sweep import trial as trial_module

    path, state = start_sweep(ROOT / "configs" / "penguins_mass.yaml", grid_options=["training.batch_size=16"],
                              repeats=2, runs_dir=tmp_path / "runs")  # fmt: skip

    def trained(state, config, judge, index):
        (run := path / f"20261124-000000-{config.run.name}").mkdir()
        return run, "completed", None

    def values(run, *keys):  # the first seed's val_loss overflowed; the second's is a number
        return [math.inf if str(run).endswith(f"seed{state.base_config['run']['seed']}") else 0.5, None][: len(keys)]

    monkeypatch.setattr(trial_module, "_train_one", trained)
    monkeypatch.setattr(trial_module, "run_values", values)
    (trial,) = work(path, state).trials
    assert (trial.status, trial.value, trial.std) == ("diverged", None, None)
    assert trial.error.startswith(f"{state.metric} is infinite: the training diverged at these values")


def test_a_trial_that_diverged_as_its_data_was_edited_is_failed_for_a_retry_not_kept_as_diverged(tmp_path, monkeypatch):
    from nnrun.sweep import trial as trial_module

    data = tmp_path / "penguins.csv"
    data.write_text((ROOT / "configs" / "data" / "penguins.csv").read_text())
    path, state = start_sweep(ROOT / "configs" / "penguins_species.yaml", sets=[f"dataset.path={data}"],
                              grid_options=["training.batch_size=16,32"], runs_dir=tmp_path / "runs")  # fmt: skip

    def trained_on_an_edit(state, config, judge, index):  # the edit put a NaN in: the loss went NaN in epoch 1
        data.write_text(data.read_text().replace("39.1", "nan"))
        (run := path / f"20261124-000000-{config.run.name}").mkdir()
        return run, "completed", None

    monkeypatch.setattr(trial_module, "_train_one", trained_on_an_edit)
    monkeypatch.setattr(trial_module, "run_values", lambda run, *keys: [0.5, 1.0][: len(keys)])  # diverged_epoch 1
    with pytest.raises(DataChanged, match="changed since the sweep started"):
        work(path, state)
    assert [t.status for t in read_state(path).trials] == ["failed"]  # "diverged" would never be retried


def test_a_run_that_cannot_be_marked_failed_after_a_data_edit_leaves_a_failed_trial_that_says_so(tmp_path, monkeypatch):
    """A full disk as the run is marked failed: the trial still fails (the sweep's worker does not crash on it), and
    its error says which run to delete, since a retry would keep a run it finds completed."""
    from nnrun import rundir as rd
    from nnrun.sweep import trial as trial_module

    data = tmp_path / "penguins.csv"
    data.write_text((ROOT / "configs" / "data" / "penguins.csv").read_text())
    path, state = start_sweep(ROOT / "configs" / "penguins_species.yaml", sets=[f"dataset.path={data}"],
                              grid_options=["training.batch_size=16,32"], runs_dir=tmp_path / "runs")  # fmt: skip

    def trained_on_an_edit(state, config, judge, index):
        data.write_text(data.read_text().replace("Adelie", "adelie"))
        (run := path / f"20261124-000000-{config.run.name}").mkdir()
        return run, "completed", None

    def full_disk(self, **changes):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trial_module, "_train_one", trained_on_an_edit)
    monkeypatch.setattr(trial_module, "run_values", lambda run, *keys: [0.5, None][: len(keys)])
    monkeypatch.setattr(rd.RunDir, "update_run", full_disk)
    with pytest.raises(DataChanged, match="changed since the sweep started"):
        work(path, state)
    (trial,) = read_state(path).trials
    assert trial.status == "failed" and trial.value is None
    assert trial.error.endswith(f"(could not mark 20261124-000000-{trial.name} failed: [Errno 28] No space left on "
                                "device; delete it before --resume)")  # fmt: skip


def test_resume_of_a_trial_that_trained_on_changed_data_forgets_its_hyperband_rungs(tmp_path):
    """Hyperband keeps the rungs a trial passed as system attributes, which a retry inherits: the retry of a trial
    that trained on other data would skip the rungs it passed on that data, and compete there with its old values."""
    from optuna.trial import TrialState

    from nnrun.sweep.orchestrate import resume_state

    path, state = start_sweep(SWEEP_CONFIG, sets=TWO_EPOCHS, prune="hyperband", runs_dir=tmp_path)
    study = open_study(path, state)
    first = ask(study)
    first.report(0.9, 1)
    study._storage.set_trial_system_attr(first._trial_id, "completed_rung_0", 0.9)  # as Hyperband marks a rung passed
    for key, value in {"status": "failed", "number": first.number, "data_changed": True, "error": "changed"}.items():
        first.set_user_attr(key, value)  # as run_trial tells a trial whose data changed as it trained
    study.tell(first, state=TrialState.FAIL)
    resume_state(path, retry_failed=True)  # the data is back as it was
    (queued,) = open_study(path, state).get_trials(states=(TrialState.WAITING,))
    assert queued.intermediate_values == {} and not any(k.startswith("completed_rung_") for k in queued.system_attrs)
    assert queued.system_attrs["grid_id"] == study._storage.get_trial(first._trial_id).system_attrs["grid_id"]  # one point


def test_data_edited_mid_sweep_fails_one_trial_however_many_workers_ask(tmp_path):
    """Each worker's ask finds the edit before it takes a trial: one failed trial says why, not one per worker; a
    retry queued with its first attempt's status (interrupted) is failed as such."""
    from optuna.trial import TrialState

    from nnrun.sweep.orchestrate import resume_state, summarize

    data = tmp_path / "penguins.csv"
    data.write_text((ROOT / "configs" / "data" / "penguins.csv").read_text())
    path, state = start_sweep(ROOT / "configs" / "penguins_species.yaml", sets=[f"dataset.path={data}"],
                              grid_options=["training.batch_size=8,16,32"], runs_dir=tmp_path / "runs")  # fmt: skip
    study = open_study(path, state)
    first = ask(study)
    for key, value in {"status": "interrupted", "number": first.number, "error": "Ctrl-C"}.items():
        first.set_user_attr(key, value)  # as run_trial tells a trial stopped by Ctrl-C
    study.tell(first, state=TrialState.FAIL)
    resume_state(path, retry_failed=True)  # --resume: queued again, with those attributes
    data.write_text(data.read_text().replace("Adelie", "adelie"))
    workers = [open_study(path, state) for _ in range(3)]  # --join, --jobs or Ray: each asks
    for worker in workers:
        with pytest.raises(DataChanged, match="changed since the sweep started"):
            ask(worker)
    summarize(study, state, path)
    assert len(study.get_trials()) == 2  # the first attempt, and its retry: no trial 2 or 3 taken and failed
    assert [(t.index, t.status, t.attempts) for t in state.trials] == [(1, "failed", 2)]
    assert "changed since the sweep started" in state.trials[0].error
    original = data.read_text().replace("adelie", "Adelie")
    data.write_text(original)  # put back, and --resume: the trial's third attempt completes
    resume_state(path, retry_failed=True)
    third = ask(study)
    for key, value in {"status": "completed", "number": third.number, "error": None}.items():
        third.set_user_attr(key, value)
    study.tell(third, 0.9)
    data.write_text(original.replace("Adelie", "adelie"))  # the same edit again: the same message
    with pytest.raises(DataChanged, match="changed since the sweep started"):
        ask(workers[0])
    data.write_text(original.replace("Adelie", "Adelie_"))  # edited again meanwhile: another message (its size)
    with pytest.raises(DataChanged, match="changed since the sweep started"):
        ask(workers[1])
    summarize(study, state, path)  # trial 2 says why the sweep stopped this time; no trial 3
    assert [(t.index, t.status) for t in state.trials] == [(1, "completed"), (2, "failed")]
    assert "changed since the sweep started" in state.trials[1].error


def test_other_data_is_said_to_be_changed_only_on_the_machine_it_came_from(tmp_path, monkeypatch):
    from nnrun.datasets import fingerprint
    from nnrun.sweep.plan import check_data

    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n1,2\n")
    dataset = {"name": "csv", "path": str(csv)}
    state = SimpleNamespace(base_config={"dataset": dataset}, cwd=str(tmp_path),
                            data={**fingerprint(dataset), "host": "node-a"})  # fmt: skip
    csv.write_text("a,b\n1,30\n")  # node-b's copy, under the same path
    monkeypatch.setattr(socket, "gethostname", lambda: "node-b")
    at = re.escape(str(csv))
    with pytest.raises(DataChanged, match=rf"^dataset.path {at} is other data on node-b \({at}, 9 bytes\) than the "
                       rf"sweep's trials trained on \(on node-a: {at}, 8 bytes; .* \(the sweep started in "
                       rf"{re.escape(str(tmp_path))} on node-a\), or start a new sweep.$"):  # fmt: skip
        check_data(state, tmp_path / "sweep")
    del state.data["host"]  # a sweep.json that did not record the machine: this one's
    with pytest.raises(DataChanged, match=rf"^dataset.path {at} changed since the sweep started"):
        check_data(state, tmp_path / "sweep")


def test_nnrun_data_dir_is_named_only_where_the_image_loader_found_the_folder_there(tmp_path, monkeypatch):
    from nnrun.datasets import fingerprint
    from nnrun.sweep.plan import check_data

    for home, rows in (("a", "1,2"), ("b", "1,30")):
        (tmp_path / home).mkdir()
        (tmp_path / home / "data.csv").write_text(f"x,y\n{rows}\n")
    monkeypatch.setenv("HOME", str(tmp_path / "a"))
    monkeypatch.setenv("NNRUN_DATA_DIR", str(tmp_path / "b"))
    dataset = {"name": "csv", "path": "~/data.csv"}  # the CSV loader expands ~, and never looks in NNRUN_DATA_DIR
    state = SimpleNamespace(base_config={"dataset": dataset}, data=fingerprint(dataset), cwd=str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "b"))
    with pytest.raises(DataChanged, match=r"is other data here \(.*/b/data.csv, 9 bytes\) than") as info:
        check_data(state, tmp_path / "sweep")
    assert "NNRUN_DATA_DIR" not in str(info.value)
    make_image_folder(tmp_path / "a" / "shapes", per_class=2)
    make_image_folder(tmp_path / "b" / "shapes", per_class=3)
    monkeypatch.chdir(tmp_path / "a")
    dataset = {"name": "images", "path": "shapes"}
    state = SimpleNamespace(base_config={"dataset": dataset}, data=fingerprint(dataset), cwd=str(tmp_path / "a"))
    monkeypatch.chdir(tmp_path)  # no shapes/ here: the loader takes $NNRUN_DATA_DIR/shapes
    with pytest.raises(DataChanged, match=rf"is other data here \(.*/b/shapes, 9 files, found through "
                       rf"NNRUN_DATA_DIR={re.escape(str(tmp_path / 'b'))}\) than .*a/shapes, 6 files"):  # fmt: skip
        check_data(state, tmp_path / "sweep")


def test_a_ray_address_where_nothing_answers_is_refused_at_once(tmp_path):
    from nnrun.sweep.ray import check_address

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_address(f"127.0.0.1:{port}")  # a head that answers
    check_address("auto")  # Ray's own forms: Ray's own errors
    with pytest.raises(ConfigError, match=rf"^--address ray://127.0.0.1:{port}: nothing answers there \(Connection refused"):
        check_address(f"ray://127.0.0.1:{port}")  # Ray would retry for many minutes
    if importlib.util.find_spec("ray") is not None:
        result = CliRunner().invoke(app, ["sweep", str(SWEEP_CONFIG), "--executor", "ray", "--address",
                                          f"127.0.0.1:{port}", "--runs-dir", str(tmp_path / "runs")])  # fmt: skip
        assert result.exit_code == 2 and "nothing answers there" in result.output
        assert not (tmp_path / "runs").exists()  # before the sweep folder


@pytest.mark.slow
def test_a_ray_cluster_without_the_gpus_a_trial_needs_is_refused_rather_than_waited_for(tmp_path):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is optional: pip install 'nnrun[ray]'")
    from nnrun.sweep.ray import run_workers

    with pytest.raises(ConfigError, match=r"--gpus-per-trial 1: no node of the Ray cluster has that many GPUs \(the most on one: 0\)"):
        run_workers(tmp_path, address=None, gpus_per_trial=1, num_cpus=1, echo=print)  # a local instance: no GPU here
    result = CliRunner().invoke(app, ["sweep", str(SWEEP_CONFIG), "--executor", "ray", "--gpus-per-trial", "1",
                                      "--runs-dir", str(tmp_path / "runs")])  # fmt: skip
    assert result.exit_code == 2 and "no node of the Ray cluster has that many GPUs" in result.output
    assert list((tmp_path / "runs").iterdir()) == []  # refused before its first trial: no sweep folder left behind


def test_the_main_worker_of_jobs_workers_caps_its_threads_before_the_sweeps_checks_start_tensorflow(monkeypatch):
    from nnrun.sweep import orchestrate
    from nnrun.sweep.command import run_sweep

    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith(("TF_NUM", "OMP"))})
    seen = []

    def start_sweep(*args, **kwargs):  # where check_fixed builds a Keras optimizer: TensorFlow reads its threads
        seen.append(os.environ.get("TF_NUM_INTRAOP_THREADS"))
        raise ConfigError("stop here")

    monkeypatch.setattr(orchestrate, "start_sweep", start_sweep)
    with pytest.raises(ConfigError, match="stop here"):
        run_sweep(SWEEP_CONFIG, None, None, [], [], False, {}, dict(executor="local", jobs=2, address=None))
    assert seen == [str(max(1, len(os.sched_getaffinity(0)) // 2))]  # its share, as its --join helper's


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
        work(path, state, executor="ray")
