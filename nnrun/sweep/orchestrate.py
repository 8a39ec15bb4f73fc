"""Start a sweep, work on its study (first worker, ``--join``, ``--resume``), and rank the trials.

``work`` is one worker: Optuna's ``study.optimize`` asks the study for trials until the budget is spent, trains
each here and tells its result; ``sweep.json`` is rewritten as each trial starts and ends. With Ray, ``work``
starts such workers as Ray tasks instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from rich.markup import escape

from nnrun import rundir as rd
from nnrun.compare import canonical, compare_runs, lookup
from nnrun.compare.query import ABSENT
from nnrun.compare.records import read_record
from nnrun.config import RunConfig, load_config, validate_config
from nnrun.config.load import load_yaml
from nnrun.errors import NnrunError, RunInterrupted
from nnrun.sweep import space
from nnrun.sweep.jobs import join_process, reap, stop
from nnrun.sweep.plan import check_data, data_of, default_metric, plan
from nnrun.sweep.state import DONE, SweepState, Trial, read_state, write_state
from nnrun.sweep.study import (
    RETRY_OF,
    BudgetSpent,
    fail_stale,
    fresh,
    locked,
    open_study,
    requeue,
    running_count,
    trial_indices,
)
from nnrun.sweep.trial import CTRL_C, TrialFailed, run_trial, thread_env

_STATES = {"RUNNING": "running", "WAITING": "pending", "COMPLETE": "completed", "PRUNED": "pruned"}


def start_sweep(config_path: str | Path, sets: list[str] = (), grid_options: list[str] = (), *, smoke: bool = False,
                argv: list[str] = (), now: Callable[[], datetime] = datetime.now, data_here: bool = True,
                **flags: Any) -> tuple[Path, SweepState]:
    """Check the space, metric and pruner (``plan``), then create the sweep folder, its study and ``sweep.json``.

    ``flags`` (``search="tpe"``, ``trials=30``, ``runs_dir``, ``name``...) set the ``sweep:`` section's keys and
    ``run.runs_dir`` and ``run.name``, as the command's flags do; None leaves a key as the config has it.
    ``data_here=False``: the trials train elsewhere (a Ray cluster), so the data file is not looked for here.

    Raises:
        ConfigError: a bad config, grid key, value, range, search, pruner or metric (nothing is created).
    """
    places = {key: v for key in ("runs_dir", "name") if (v := flags.pop(key, None)) is not None}
    config = load_config(config_path, [*sets, *(f"run.{k}={json.dumps(str(v))}" for k, v in places.items())],  # '#' too
                         flags={f"run.{k}": f"--{k.replace('_', '-')}" for k in places})  # the fix names the flag
    keys = {k: v for k, v in flags.items() if v is not None}
    if keys:  # the command line's keys win over the config's, and over its other spelling of search and trials
        data = config.to_dict()
        section = {**(data["sweep"] or {}), **({"search": None, "trials": None} if "random" in keys else {}),
                   **({"random": None} if {"search", "trials"} & keys.keys() else {}), **keys}
        config = validate_config({**data, "sweep": section}, source=f"{config_path} with the sweep's flags",
                                 flags={f"sweep.{key}": f"--{key}" for key in keys})  # the flag wins over --set
    checked = plan(config, grid_options, given=keys)
    space.check_sets(checked["grid"], list(sets), checked["base_config"])
    space.check_fixed(checked["base_config"], checked["grid"], data_here)  # Keras's: `nnrun check`'s plan stays TF-free
    started = now()
    sweep_dir = rd.create_run_dir(config.run.runs_dir, config.run.name, started, prefix=rd.SWEEP_PREFIX).resolve()
    state = SweepState(id=sweep_dir.name, name=config.run.name, config_file=str(config_path), smoke=smoke,
                       argv=list(argv), sets=list(sets), started=started.isoformat(timespec="seconds"),
                       cwd=os.getcwd(), data=data_of(checked["base_config"], checked["grid"]), **checked)  # fmt: skip
    try:
        study = open_study(sweep_dir, state, create=True)
    except BaseException:
        shutil.rmtree(sweep_dir, ignore_errors=True)  # a sweep folder without its study is no sweep
        raise
    for key in ("metric", "mode", "prune", "budget", "repeats"):
        study.set_user_attr(f"nnrun.{key}", getattr(state, key))
    write_state(sweep_dir, state)
    return sweep_dir, state


def work(
    sweep_dir: str | Path,
    state: SweepState,
    *,
    executor: str = "local",
    jobs: int = 1,
    address: str | None = None,
    gpus_per_trial: float = 0,
    ray_cpus: int | None = None,
    echo: Callable[[str], None] = lambda line: None,
) -> SweepState:
    """One worker: Optuna's ``study.optimize`` until the budget is spent; or, with Ray, as many as the cluster takes.

    When the budget is spent but other workers still run trials, it waits for them, and takes over any trial whose
    worker stopped beating. ``jobs`` > 1 starts ``jobs - 1`` more workers (``nnrun sweep --join``) beside it.
    ``executor``, ``jobs``, ``address`` and ``gpus_per_trial`` are the command's flags (``check_executor``);
    ``executor="ray task"`` is one worker inside a Ray task (it trains here, and says so in the sweep's history);
    ``ray_cpus``: the CPUs of a local Ray instance (default: all).

    Raises:
        ConfigError: Ray missing or unreachable.
        NnrunError: every Ray worker stopped.
        RunInterrupted: Ctrl-C; finished trials are kept, ``--resume`` runs the rest.
    """
    sweep_dir = Path(sweep_dir).resolve()
    study = open_study(sweep_dir, state)
    share_cpus(jobs)
    helpers = [join_process(sweep_dir, echo) for _ in range(jobs - 1)]
    state.executor, state.jobs, started = executor, jobs, time.perf_counter()
    try:
        if executor == "ray":
            from nnrun.sweep.ray import run_workers

            run_workers(sweep_dir, address=address, gpus_per_trial=gpus_per_trial, num_cpus=ray_cpus, echo=echo)
        else:
            _optimize(study, state, sweep_dir, echo)
        reap(helpers, echo)  # here, so that Ctrl-C while it waits stops the sweep as any other Ctrl-C does
    except KeyboardInterrupt:
        stop(helpers)  # Ctrl-C, passed on
        refresh(sweep_dir, state, study, finished=("interrupted", datetime.now(), time.perf_counter() - started))
        if state.status == "completed":  # Ctrl-C in the last trial's last epoch: it completed, and nothing is left
            return state
        if not helpers and (others := running_count(study)):  # --join workers elsewhere go on with the sweep
            raise RunInterrupted(f"this worker stopped; other workers still train {others} trial(s) of {sweep_dir}.",
                                 resume=f"nnrun sweep --join {shlex.quote(str(sweep_dir))}") from None
        raise RunInterrupted(f"sweep stopped; finished trials are kept in {sweep_dir}.",
                             resume=f"nnrun sweep --resume {shlex.quote(str(sweep_dir))}") from None
    except Exception as exc:  # a full disk, say: the helpers stop too, rather than finish the budget before it is shown
        stop(helpers)
        reap(helpers, echo, said=str(exc))  # first: their "interrupted" would come after this worker's "failed"
        if isinstance(exc, NnrunError):  # Ray unreachable, or every Ray worker stopped
            refresh(sweep_dir, state, study, finished=("failed", datetime.now(), time.perf_counter() - started))
        raise
    finally:
        reap(helpers, echo)
    refresh(sweep_dir, state, study, finished=(None, datetime.now(), time.perf_counter() - started))
    return state


def share_cpus(jobs: int) -> None:
    """With ``jobs`` workers here, cap this one's TensorFlow threads at an equal share of the CPUs, as its helpers
    are capped: read when TensorFlow starts, so before the sweep's checks build a Keras optimizer."""
    if jobs > 1:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ.update(thread_env(max(1, cpus // jobs)))


def _optimize(study: Any, state: SweepState, sweep_dir: Path, echo: Callable[[str], None]) -> None:
    """Run trials here until the budget is spent, then wait for the other workers' trials (or their beats to stop)."""
    lost: list[int] = []  # trials that another worker failed as stale while this one trained them

    def objective(trial: Any) -> float:
        system = study._storage.get_trial_system_attrs(trial._trial_id)
        index = trial_indices(study.get_trials(deepcopy=False))[system.get(RETRY_OF, trial.number)]
        params = space.decode(trial, state.grid)
        attempt = f" (attempt {len(system['retry_history']) + 1})" if RETRY_OF in system else ""
        echo(f"trial {index}/{state.budget} training {escape(space.params_text(params))}{attempt}")
        try:
            trial.set_user_attr("params", params)
            trial.set_user_attr("trial", index)  # nnrun's number in optuna-dashboard (Optuna's counts from 0, retries)
            refresh(sweep_dir, state, study)  # sweep.json shows it running
            return run_trial(trial, index, trial_name(state, index), params, state, sweep_dir, echo)
        finally:  # another worker failed it meanwhile (this one was paused, say): its record or its tell fails
            CTRL_C.hold()  # Optuna's tell comes next
            if study._storage.get_trial(trial._trial_id).state.is_finished():
                lost.append(index)

    def told(study: Any, frozen: Any) -> None:
        refresh(sweep_dir, state, study)
        CTRL_C.release()
        if frozen.user_attrs.get("stopped"):  # Ctrl-C came in the trial's last epoch: it completed, the sweep stops
            raise KeyboardInterrupt

    waited = False
    with CTRL_C.installed():
        while True:
            try:
                study.optimize(objective, catch=(TrialFailed,), callbacks=[told])
            except BudgetSpent:
                CTRL_C.release()  # held since the ask
                if not (others := running_count(study)):
                    return
                if not waited:
                    echo(f"waiting for {others} trial(s) of other workers (or their heartbeat to stop)")
                waited = True
                time.sleep(min(state.heartbeat_s, 5))
            except Exception:
                if not lost:
                    raise
                # Optuna's tell of that trial then fails too: the retry another worker queued keeps the runs.
                echo(f"[red]trial {lost.pop()}/{state.budget} lost[/]: no heartbeat came from here in time, so "
                     "another worker failed it and queued it again; the runs it finished are kept.")
                CTRL_C.release()


def trial_name(state: SweepState, index: int) -> str:
    """``<name>-t07``: the trial's run name, numbered with as many digits as the budget needs (two at least)."""
    return f"{state.name}-t{index:0{max(2, len(str(state.budget)))}d}"


def summarize(study: Any, state: SweepState, sweep_dir: Path) -> None:
    """``state.trials`` and ``state.best`` from the study: one entry per trial, its retries folded in, and the run
    directories of attempts whose worker was killed before it recorded them."""
    trials: dict[int, Trial] = {}
    frozen_trials = study.get_trials(deepcopy=False)  # by number
    indices = trial_indices(frozen_trials)
    for frozen in frozen_trials:
        first, attrs = frozen.system_attrs.get(RETRY_OF, frozen.number), frozen.user_attrs
        index = indices[first]
        trial = trials.setdefault(first, Trial(index, trial_name(state, index), {}))
        trial.params = attrs.get("params") or trial.params  # an attempt killed as it began has none
        recorded = attrs.get("number") == frozen.number  # a retry starts with its first attempt's attributes
        told = attrs.get("status") if recorded and frozen.state.name in ("PRUNED", "FAIL") else None  # diverged, too
        status = told or _STATES.get(frozen.state.name) or "failed"
        dirs = list(attrs.get("run_dirs") or [])
        trial.previous_run_dirs += [d for d in trial.run_dirs if d not in dirs and d not in trial.previous_run_dirs]
        trial.status = status
        trial.error = None if status in ("completed", "running", "pending") else (
            attrs.get("error") if recorded else "its worker stopped before it recorded a result")  # killed (no heartbeat)
        trial.run_dirs = dirs or trial.run_dirs
        trial.run_dir = (trial.run_dirs or [None])[0]
        # A pruned one's own metric, not the last value the pruner heard (Optuna keeps that, and a diverged one's).
        trial.value = attrs.get("value", frozen.value) if status in ("completed", "pruned") else None
        trial.std, trial.duration_s = attrs.get("std"), attrs.get("duration_s")
        trial.attempts += frozen.state.name != "WAITING"
    state.trials = list(trials.values())
    on_disk = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir())
    for trial in state.trials:
        pattern = re.compile(rf"\d{{8}}-\d{{6}}-{re.escape(trial.name)}(-seed\d+)?(-\d+)?")
        trial.previous_run_dirs += [d for d in on_disk if re.fullmatch(pattern, d) and trial.status != "running"
                                    and d not in trial.run_dirs and d not in trial.previous_run_dirs]  # fmt: skip
    rank(state, sweep_dir)


def rank(state: SweepState, sweep_dir: Path) -> None:
    """``state.best``: the best completed trial, and the command that retrains it (as the config file reads now)."""
    done = [t for t in state.trials if t.status == "completed" and t.value is not None]
    best = (max if state.direction == "maximize" else min)(done, key=lambda t: t.value) if done else None
    state.best = None if best is None else {"trial": best.index, "value": best.value, "std": best.std, "params": best.params,
                           "retrain": retrain_command(state, best.params, best.run_dir and _shown(sweep_dir / best.run_dir, state))}  # fmt: skip


def _shown(path: Path, state: SweepState) -> Path:
    """``path`` relative to the folder the sweep started in, where it is inside it."""
    return path.relative_to(state.cwd) if state.cwd and path.is_relative_to(state.cwd) else path


def refresh(sweep_dir: Path, state: SweepState, study: Any,
            finished: tuple[str | None, datetime, float] | None = None) -> None:
    """Rewrite ``sweep.json`` from the study (under the study lock: workers take turns)."""
    with locked(sweep_dir):
        state.history = read_state(sweep_dir).history
        summarize(study, state, sweep_dir)
        state.host, state.pid = socket.gethostname(), os.getpid()
        state.status = "running"
        if len(state.trials) >= state.budget and not running_count(study):
            trained = any(t.status in ("completed", "pruned") for t in state.trials)  # not every trial invalid
            done, left = all(t.status in DONE for t in state.trials), {t.status for t in state.trials} - set(DONE)
            # A queued retry: a worker goes on with it. Ctrl-C in the budget's last trial: --resume goes on with it.
            state.status = ("completed" if trained and done else "running" if "pending" in left
                            else "interrupted" if "interrupted" in left else "failed")  # fmt: skip
        if finished is not None:
            status, at, wall_s = finished  # this worker's end; the sweep goes on while another worker trains
            spent = state.status in ("completed", "failed")  # every trial done: a late Ctrl-C or error changes nothing
            ended, state.finished = state.status if spent else status or state.status, at.isoformat(timespec="seconds")
            state.status = "running" if status == "interrupted" and running_count(study) else ended
            state.history.append({"finished": state.finished, "host": state.host, "pid": state.pid, "status": ended,
                                  "executor": state.executor, "jobs": state.jobs, "wall_s": round(wall_s, 3)})  # fmt: skip
        write_state(sweep_dir, state)


def retrain_command(state: SweepState, params: dict[str, Any], run_dir: Path | None = None) -> str:
    """``nnrun train CONFIG --set ...``: the sweep's settings with the best values, on all the training data, in a new
    run. Where CONFIG no longer reads as the config the trials varied (edited, moved or gone since the sweep started),
    ``nnrun train --rerun RUN_DIR ...``: the trial's own config, from its run directory ``run_dir``."""
    trained = space.resolve(state.base_config, params)  # the trial's own split and callbacks, where the space varies them
    split = not watches_validation(state, params) and trained["dataset"].get("validation") not in ("none", "test", None)
    tail = ["--runs-dir", str(state.base_config["run"]["runs_dir"]), *["--smoke"] * state.smoke,  # beside the sweep's
            "--name", f"{state.name}-best"]
    config = _config_file(state)
    if run_dir is not None and config is None:
        return shlex.join(["nnrun", "train", "--rerun", str(run_dir), *["--set", "dataset.validation=none"] * split, *tail])
    given = [(s, space.normalize_key(s.split("=")[0], state.base_config)) for s in state.sets if not s.startswith("sweep.")]
    # The sweep's --set values, less those the trial's values (or the validation split's end) replace.
    sets = [s for s, k in given if k not in params and not (split and k == "dataset.validation")]
    for key, value in space.in_order(params).items():  # a text YAML reads as another value ('null') as JSON
        if not (split and key == "dataset.validation"):
            sets.append(f"{key}={value if _plain(value) else json.dumps(value)}")
    if split:
        sets.append("dataset.validation=none")  # the validation part goes back into training
        if config is None or config.sweep is not None:  # ranked by a val_ metric: nnrun check would refuse the retrain
            sets.append("sweep=null")
    return shlex.join(["nnrun", "train", state.config_file or "CONFIG", *[w for s in sets for w in ("--set", s)], *tail])


def _config_file(state: SweepState) -> RunConfig | None:
    """The sweep's config file with its ``--set`` values, if it still reads as the config the trials varied."""
    run = state.base_config["run"]
    places = [f"run.{key}={json.dumps(run[key])}" for key in ("name", "runs_dir")]  # --name and --runs-dir set them
    try:
        config = load_config(Path(state.cwd or ".", state.config_file or ""), [*state.sets, *places])
    except Exception:  # noqa: BLE001 - edited meanwhile (bad YAML, another encoding) or not on this machine
        return None
    same = json.loads(json.dumps({**config.to_dict(), "sweep": None}, default=str)) == state.base_config
    return config if same else None


def _plain(value: Any) -> bool:
    """Whether ``--set KEY=value`` reads back as this very text."""
    try:
        return isinstance(value, str) and load_yaml(value) == value and " #" not in value
    except yaml.YAMLError:
        return False


def watches_validation(state: SweepState, params: dict[str, Any]) -> str | None:
    """The ``val_`` metric a callback of the trial with ``params`` monitors (EarlyStopping's default ``val_loss``,
    say), if any: the retrain keeps its validation split for it."""
    from nnrun.keras_names import monitored

    callbacks = space.resolve(state.base_config, params)["training"].get("callbacks") or []
    watched = [monitored(c) for c in callbacks]
    return next((m for m in watched if m and m.startswith("val_")), None)


def resume_state(sweep_dir: str | Path, *, retry_failed: bool) -> SweepState:
    """Read a sweep for ``--join``; for ``--resume`` (``retry_failed``), queue its failed and interrupted trials again.

    This process then works in the folder the sweep started in, where that folder exists here (as Ray's workers do):
    the config's relative paths and a relative ``--storage`` URL mean what they meant there.

    Raises:
        RunDirError: not a sweep directory.
        ConfigError: ``dataset.path`` gives other data here than the trials trained on (``plan.check_data``).
    """
    sweep_dir = Path(sweep_dir).resolve()
    state = read_state(sweep_dir)
    if state.cwd and Path(state.cwd).is_dir():
        os.chdir(state.cwd)
    if state.status != "completed":  # else nothing trains: its table is shown as it is, its retrain command anew
        check_data(state, sweep_dir)
    else:
        rank(state, sweep_dir)  # the config file may have changed since: not shown as sweep.json gives it
    if retry_failed:
        study = open_study(sweep_dir, state)
        with locked(sweep_dir):  # not while another worker asks for a trial (a stale one may be queued meanwhile)
            fail_stale(study)  # a killed worker's trial: its retry is queued, or FAIL below
            last = {t.system_attrs.get(RETRY_OF, t.number): t for t in study.get_trials()}  # by number: the last attempt
            for frozen in last.values():
                if frozen.state.name == "FAIL" and frozen.user_attrs.get("status") not in DONE:  # trained on the
                    (fresh if frozen.user_attrs.get("data_changed") else requeue)(study, frozen)  # other data: anew
    return state


def sweep_comparison(sweep_dir: Path, state: SweepState) -> Any:
    """The compare table of the trials' runs, completed ones first, each part sorted by the sweep's metric; one row
    per trial with repeats.

    Columns: name, status, the varied keys, the metric, test accuracy (R² for a regression) and duration. Invalid
    trials have no run directory; they appear in the notes.
    """
    paths = list(dict.fromkeys(sweep_dir / d for t in state.trials for d in t.run_dirs if (sweep_dir / d).is_dir()))
    if not paths:
        return None
    records = [read_record(p) for p in paths]
    keys = [column for key in state.grid for column in _columns(canonical(key), records)]
    test = "test_r2" if default_metric(validate_config(state.base_config)) == "val_loss" else "test_accuracy"
    # No run has a metric measured at the end when every run so far was pruned or failed: compare would refuse it.
    metric = [state.metric] if any(lookup(r, state.metric) not in (ABSENT, None) for r in records) else []
    columns = list(dict.fromkeys([*(["status"] if state.repeats > 1 else ["name", "status"]), *keys, *metric,
                                  test, "duration"]))  # fmt: skip
    # Repeats: a row per trial (its seeds; run.json's trial), though random and tpe may draw one point twice.
    trial = ["trial"] if any("trial" in r.info for r in records) else []  # not in older runs
    comparison = compare_runs(paths, sort=(metric or [None])[0], columns=[",".join(columns)], records=records,
                              group_by=[*trial, *keys] if state.repeats > 1 else None)
    comparison.records.sort(key=lambda row: row.status != "completed")  # a pruned trial's value is of fewer epochs
    comparison.notes.extend(f"trial {t.index} ({space.params_text(t.params)}): {t.status}: {t.error}"
                            for t in state.trials if t.status in ("invalid", "diverged"))  # fmt: skip
    if any(r.status == "pruned" and lookup(r, state.metric) in (ABSENT, None) for r in records):
        comparison.notes.append(f"pruned trials stop before {state.metric} is measured, at the end of training: the "
                                f"{state.monitor} each was pruned at is in sweep.json (the trial's error).")  # fmt: skip
    return comparison


def _columns(key: str, records: list[Any]) -> list[str]:
    """A grid key as the table's columns: the key; or, for a value the runs keep as a mapping (``training.optimizer``
    varied over adam and sgd is ``training.optimizer.type``), the keys under it whose values differ."""
    if any(lookup(r, key) is not ABSENT for r in records):
        return [key]
    under = list(dict.fromkeys(k for r in records for k in r.flat_config if k.startswith((f"{key}.", f"{key}["))))
    differ = [k for k in under if len({json.dumps(lookup(r, k), default=str) for r in records}) > 1]
    return differ or under[:1]
