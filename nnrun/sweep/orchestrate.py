"""Start a sweep, work on its study (first worker, ``--join``, ``--resume``), and rank the trials.

``work`` is one worker: it asks the study for trials until the budget is spent, hands them to an
executor, tells the study each result and rewrites ``sweep.json``.
"""

from __future__ import annotations

import math
import os
import shlex
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.config import RunConfig, load_config, validate_config
from nnrun.config.schema import SweepConfig
from nnrun.errors import ConfigError, RunInterrupted
from nnrun.sweep import space
from nnrun.sweep.executors import check_executor, create_executor, default_threads
from nnrun.sweep.state import DONE, SweepState, Trial, read_state, write_state
from nnrun.sweep.study import (
    RETRY_OF,
    StudyRef,
    ask,
    check_choices,
    heartbeat,
    locked,
    open_study,
    retry_queue,
    running_count,
)
from nnrun.sweep.trial import TrialSpec, thread_env

#: Compare columns and metrics.json sections that hold validation results.
_VALIDATION_METRICS = ("best_val_", "validation.", "best_validation.")
_STATES = {"RUNNING": "running", "WAITING": "pending", "COMPLETE": "completed", "PRUNED": "pruned"}


@dataclass
class SweepResult:
    path: Path
    state: SweepState
    comparison: Any  # nnrun.compare.Comparison, or None when no trial produced a run directory


def start_sweep(
    config_path: str | Path,
    *,
    sets: list[str] = (),
    grid_options: list[str] = (),
    search: str | None = None,
    trials: int | None = None,
    prune: str | None = None,
    repeats: int | None = None,
    seed: int | None = None,
    metric: str | None = None,
    storage: str | None = None,
    heartbeat_s: float = 10.0,
    runs_dir: str | Path | None = None,
    name: str | None = None,
    smoke: bool = False,
    argv: list[str] = (),
    now: Callable[[], datetime] = datetime.now,
) -> tuple[Path, SweepState]:
    """Check the space, metric and pruner, then create the sweep folder, its study and ``sweep.json``.

    Raises:
        ConfigError: a bad config, grid key, value, range, search, pruner or metric (nothing is created).
    """
    overrides = list(sets or []) + ([f"run.name={name}"] if name is not None else [])
    overrides += [f"run.runs_dir={runs_dir}"] if runs_dir is not None else []
    config = load_config(config_path, overrides)
    grid = space.collect_grid(config, list(grid_options or []))
    section = config.sweep or SweepConfig()
    search = search or section.search or ("random" if section.random else "grid")
    prune = prune or section.prune or "none"
    repeats = repeats if repeats is not None else section.repeats
    seed = seed if seed is not None else section.seed
    check_choices(search, prune)
    if repeats < 1:
        raise ConfigError(f"--repeats must be >= 1, got {repeats}.")
    if heartbeat_s <= 0:
        raise ConfigError(f"--heartbeat must be > 0 seconds, got {heartbeat_s:g}.")
    budget = trials if trials is not None else section.trials or section.random
    if search == "grid":
        size = math.prod(len(values) for values in space.grid_space(grid).values())  # grid_space refuses ranges
        budget = min(budget or size, size)
    elif budget is None:
        raise ConfigError(f"--search {search} needs --trials N (how many trials to run), e.g. --trials 20.")
    if budget < 1:
        raise ConfigError(f"--trials must be >= 1, got {budget}.")
    metric = metric or section.metric or default_metric(config)
    base = config.to_dict()
    base["sweep"] = None
    space.check_grid(grid, base)
    metric = check_metric(metric, config)
    monitor = check_monitor(metric, prune, config)
    from nnrun.compare.query import default_descending

    started = now()
    sweep_dir = rd.create_run_dir(config.run.runs_dir, config.run.name, started, prefix=rd.SWEEP_PREFIX).resolve()
    state = SweepState(
        id=sweep_dir.name, name=config.run.name, mode=search, grid=space.grid_to_json(grid), metric=metric, base_config=base,
        trials=[], config_file=str(config_path), random=budget if search == "random" else None, seed=seed, smoke=smoke,
        started=started.isoformat(timespec="seconds"), argv=list(argv), budget=budget, prune=prune, monitor=monitor,
        direction="maximize" if default_descending(metric) else "minimize", repeats=repeats, storage=storage,
        study_name=sweep_dir.name, heartbeat_s=heartbeat_s,
    )  # fmt: skip
    try:
        study = open_study(study_ref(sweep_dir, state), create=True)
    except BaseException:
        import shutil

        shutil.rmtree(sweep_dir, ignore_errors=True)  # a sweep folder without its study is no sweep
        raise
    for key in ("metric", "mode", "prune", "budget", "repeats"):
        study.set_user_attr(f"nnrun.{key}", getattr(state, key))
    write_state(sweep_dir, state)
    return sweep_dir, state


def regression(config: RunConfig) -> bool:
    from nnrun.datasets.table import resolve_task

    return resolve_task(getattr(config.dataset, "task", "classification"), config.training.loss) == "regression"


def default_metric(config: RunConfig) -> str:
    """What ranks the trials when neither --metric nor sweep.metric says: val_accuracy, or val_loss for a regression."""
    return "val_loss" if regression(config) else "val_accuracy"


def check_metric(metric: str, config: RunConfig) -> str:
    """The compare column for ``metric``; ConfigError if it is not a metric or needs validation no trial has."""
    from nnrun.compare import COLUMNS, METRIC_SECTIONS, canonical

    key = canonical(metric)
    numeric = [c for c in COLUMNS if any(w in c for w in ("accuracy", "loss"))]
    if key not in numeric and key.partition(".")[0] not in METRIC_SECTIONS:
        raise ConfigError(
            f"--metric {metric!r}: not a metric the compare table has. Use one of {', '.join(numeric)}, "
            "or a metrics.json path such as test.accuracy, validation.loss or best_validation.auc."
        )
    if key.startswith(_VALIDATION_METRICS) and config.dataset.validation == "none":
        raise ConfigError(
            f"--metric {metric}: the trials have no validation data (dataset.validation is 'none'); "
            "add --set dataset.validation=0.2 (or 'test'), or rank by another metric, e.g. --metric test_accuracy."
        )
    return key


def check_monitor(metric: str, prune: str, config: RunConfig) -> str | None:
    """The epoch's log key that the pruner hears for ``metric``; ConfigError if training never logs it."""
    from nnrun.keras_names import metric_names

    head, _, rest = metric.partition(".")
    key = {"best_val_accuracy": "val_accuracy", "best_val_loss": "val_loss"}.get(metric) or (
        f"val_{rest}" if head in ("validation", "best_validation") else rest if head == "train" else None)
    if prune == "none":
        return None
    if key is None:
        raise ConfigError(f"--prune {prune} needs a metric logged after every epoch, such as val_accuracy or "
                          f"val_loss; --metric {metric} is measured once, at the end. Pass --metric val_accuracy.")
    logged = metric_names(config, config.dataset.validation != "none")
    if key not in logged:
        raise ConfigError(f"--metric {metric}: --prune {prune} watches {key} after every epoch, but the trials log "
                          f"only {', '.join(logged)}. Add it to training.metrics, or rank by one of those.")
    return key


def study_ref(sweep_dir: Path, state: SweepState, *, parallel: bool = False) -> StudyRef:
    epochs = 1 if state.smoke else int(state.base_config["training"]["epochs"])
    return StudyRef(str(sweep_dir), state.storage, state.study_name or state.id, state.mode, state.prune,
                    state.seed or 0, state.grid, epochs, state.direction, state.heartbeat_s, parallel)


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
    now: Callable[[], datetime] = datetime.now,
) -> SweepResult:
    """One worker: ask the study for trials until the budget is spent, train them, tell their results.

    When the budget is spent but other workers still run trials, it waits for them, and takes
    over any trial whose worker stopped beating.

    Raises:
        ConfigError: an unknown executor, or Ray missing.
        RunInterrupted: Ctrl-C; finished trials are kept, ``--resume`` runs the rest.
    """
    check_executor(executor, jobs=jobs, address=address, gpus_per_trial=gpus_per_trial)
    sweep_dir = Path(sweep_dir).resolve()
    ref = study_ref(sweep_dir, state, parallel=jobs > 1 or executor == "ray")
    study = open_study(ref)
    grid = space.grid_from_json(state.grid)
    threads = default_threads(jobs) if jobs > 1 else None
    runner = create_executor(executor, address=address, gpus_per_trial=gpus_per_trial, ray_cpus=ray_cpus,
                             threads=threads)  # fmt: skip
    state.executor, state.jobs = executor, jobs
    helpers = [_join_process(sweep_dir, threads) for _ in range(jobs - 1)]
    running: dict[int, TrialSpec] = {}
    waited = False
    started = time.perf_counter()
    with heartbeat(study._storage, lambda: [spec.trial_id for spec in list(running.values())], ref.heartbeat_s):
        try:
            while True:
                while len(running) < runner.slots and (trial := ask(study, ref, state.budget)) is not None:
                    spec = _spec(study, trial, state, ref, grid, echo)
                    if spec is not None:
                        runner.submit(spec)
                        running[spec.number] = spec
                    refresh(sweep_dir, state, study)
                if not running:
                    if not running_count(study):
                        break
                    if not waited:
                        echo(f"waiting for {running_count(study)} trial(s) of other workers (or their heartbeat to stop)")
                        waited = True
                    time.sleep(min(state.heartbeat_s, 5))
                    continue
                for result in runner.wait():
                    running.pop(result["number"], None)
                    _tell(study, result, state, echo)
                    if result["status"] == "interrupted":
                        raise KeyboardInterrupt
                refresh(sweep_dir, state, study)
        except KeyboardInterrupt:
            for result in runner.cancel():
                _tell(study, result, state, echo)
            refresh(sweep_dir, state, study, finished=("interrupted", now(), time.perf_counter() - started))
            raise RunInterrupted(
                f"sweep stopped; finished trials are kept in {sweep_dir}. Continue with: nnrun sweep --resume {sweep_dir}"
            ) from None
        finally:
            runner.close()
            for helper, log in helpers:
                if helper.wait():
                    log.seek(0)
                    echo(f"[red]worker {helper.pid} (--join) ended with exit code {helper.returncode}[/]: "
                         f"{(log.read().strip().splitlines() or [''])[-1]}")
                log.close()
    refresh(sweep_dir, state, study, finished=(None, now(), time.perf_counter() - started))
    return SweepResult(sweep_dir, state, sweep_comparison(sweep_dir, state))


def _join_process(sweep_dir: Path, threads: int) -> tuple[Any, Any]:
    """One more worker for ``--jobs``: ``nnrun sweep --join`` in a process of its own, with its share of threads."""
    import subprocess
    import sys
    import tempfile

    log = tempfile.TemporaryFile("w+")  # its own table and lines: kept for an error, not shown twice
    return subprocess.Popen([sys.executable, "-m", "nnrun", "sweep", "--join", str(sweep_dir)],
                            env={**os.environ, **thread_env(threads)}, stdout=subprocess.DEVNULL, stderr=log,
                            text=True), log  # fmt: skip


def _spec(study: Any, trial: Any, state: SweepState, ref: StudyRef, grid: dict[str, Any],
          echo: Callable[[str], None]) -> TrialSpec | None:
    """The trial's configs (one per seed); None, with the trial told failed, when they are invalid."""
    import optuna

    system = study._storage.get_trial_system_attrs(trial._trial_id)
    index = system.get(RETRY_OF, trial.number) + 1
    name = trial_name(state, index)
    params = space.suggest(trial, grid)
    trial.set_user_attr("params", params)
    seeds = [int(state.base_config["run"]["seed"]) + r for r in range(state.repeats)]
    try:
        configs = [
            space.trial_config(state.base_config, {**params, "run.seed": seed} if state.repeats > 1 else params,
                               name=name if state.repeats == 1 else f"{name}-seed{seed}", runs_dir=ref.sweep_dir).to_dict()
            for seed in seeds
        ]  # fmt: skip
    except ConfigError as exc:
        trial.set_user_attr("status", "invalid")
        trial.set_user_attr("error", str(exc))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        echo(f"trial {index} {space.params_text(params)}: [yellow]invalid[/], skipped: {exc}")
        return None
    retry = f" (attempt {len(system.get('retry_history', [])) + 1})" if RETRY_OF in system else ""
    echo(f"trial {index}/{state.budget} training {space.params_text(params)}{retry}")
    return TrialSpec(index=index, number=trial.number, trial_id=trial._trial_id, configs=configs, study=ref,
                     metric=state.metric, monitor=state.monitor, argv=state.argv, smoke=state.smoke,
                     config_path=state.config_file, cwd=os.getcwd())  # fmt: skip


def _tell(study: Any, result: dict[str, Any], state: SweepState, echo: Callable[[str], None]) -> None:
    import optuna

    values = [v for v in result.get("values") or [] if not math.isnan(v)]
    status = result["status"]
    if status == "completed" and len(values) < len(result.get("values") or [None]):
        status, result["error"] = "failed", f"no {state.metric} in the trial's run directories"
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, result["number"])
    for key in ("status", "error", "run_dirs", "values", "duration_s", "host", "pid"):
        study._storage.set_trial_user_attr(trial_id, key, result.get(key))
    if len(values) > 1:
        study._storage.set_trial_user_attr(trial_id, "std", statistics.stdev(values))
    kind = {"completed": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED}
    state_ = kind.get(status, optuna.trial.TrialState.FAIL)
    value = statistics.fmean(values) if status == "completed" else None
    study.tell(result["number"], value, state=state_, skip_if_finished=True)
    style = {"completed": "green", "pruned": "magenta", "invalid": "yellow", "interrupted": "yellow"}.get(status, "red")
    where = f" -> {', '.join(result['run_dirs'])}" if result.get("run_dirs") else ""
    shown = f" {state.metric} {value:.4f}" if value is not None else ""
    detail = f": {result['error']}" if result.get("error") and status != "completed" else ""
    echo(f"trial {result['index']}/{state.budget} [{style}]{status}[/]{shown} in {result.get('duration_s') or 0:.1f}s"
         f"{where}{detail}")


def trial_name(state: SweepState, index: int) -> str:
    """``<name>-t07``: the trial's run name, numbered with as many digits as the budget needs (two at least)."""
    return f"{state.name}-t{index:0{max(2, len(str(state.budget)))}d}"


def summarize(study: Any, state: SweepState) -> None:
    """``state.trials`` and ``state.best`` from the study: one entry per trial, its retries folded in."""
    trials: dict[int, Trial] = {}
    for frozen in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        first = frozen.system_attrs.get(RETRY_OF, frozen.number)
        attrs = frozen.user_attrs
        trial = trials.setdefault(first, Trial(first + 1, trial_name(state, first + 1),
                                               attrs.get("params") or dict(frozen.params)))
        status = _STATES.get(frozen.state.name) or attrs.get("status") or "failed"
        dirs = list(attrs.get("run_dirs") or [])
        trial.previous_run_dirs += [d for d in trial.run_dirs if d not in dirs and d not in trial.previous_run_dirs]
        trial.status, trial.error = status, attrs.get("error") if status != "completed" else None
        trial.run_dirs, trial.run_dir = dirs or trial.run_dirs, (dirs or trial.run_dirs or [None])[0]
        trial.value, trial.std, trial.duration_s = frozen.value, attrs.get("std"), attrs.get("duration_s")
        trial.attempts += frozen.state.name != "WAITING"
    state.trials = list(trials.values())
    done = [t for t in state.trials if t.status == "completed" and t.value is not None]
    best = (max if state.direction == "maximize" else min)(done, key=lambda t: t.value) if done else None
    state.best = None if best is None else {"trial": best.index, "value": best.value, "std": best.std,
                                            "params": best.params, "retrain": retrain_command(state, best.params)}


def refresh(sweep_dir: Path, state: SweepState, study: Any,
            finished: tuple[str | None, datetime, float] | None = None) -> None:
    """Rewrite ``sweep.json`` from the study (under the study lock: workers take turns)."""
    with locked(sweep_dir):
        history = read_state(sweep_dir).history
        summarize(study, state)
        state.host, state.pid = socket.gethostname(), os.getpid()
        if len(state.trials) >= state.budget and not running_count(study):
            state.status = "completed" if all(t.status in DONE for t in state.trials) else "failed"
        else:
            state.status = "running"
        state.history = history
        if finished is not None:
            status, at, wall_s = finished
            state.status = status or state.status
            state.finished = at.isoformat(timespec="seconds")
            state.history.append({"finished": state.finished, "host": state.host, "pid": state.pid,
                                  "executor": state.executor, "jobs": state.jobs, "wall_s": round(wall_s, 3),
                                  "status": state.status})  # fmt: skip
        write_state(sweep_dir, state)


def retrain_command(state: SweepState, params: dict[str, Any]) -> str:
    """``nnrun train CONFIG --set ...``: the best values, trained on all the training data in a new run."""
    import json

    sets = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in params.items()]
    if state.base_config["dataset"].get("validation") not in ("none", "test", None):
        sets.append("dataset.validation=none")  # the validation part goes back into training
    words = ["nnrun", "train", state.config_file or "CONFIG"] + [w for s in sets for w in ("--set", s)]
    return " ".join(shlex.quote(w) for w in words + ["--name", f"{state.name}-best"])


def resume_state(sweep_dir: str | Path, *, retry: bool) -> SweepState:
    """Read a sweep for ``--join``, or for ``--resume`` (``retry``): its failed and interrupted trials queued again.

    Raises:
        RunDirError: not a sweep directory.
    """
    import optuna

    state = read_state(sweep_dir)
    if retry:
        study = open_study(study_ref(Path(sweep_dir).resolve(), state))
        last = {t.system_attrs.get(RETRY_OF, t.number): t for t in sorted(study.get_trials(), key=lambda t: t.number)}
        for frozen in last.values():
            if frozen.state == optuna.trial.TrialState.FAIL and frozen.user_attrs.get("status") != "invalid":
                retry_queue(study, frozen)
    return state


def sweep_comparison(sweep_dir: Path, state: SweepState) -> Any:
    """The compare table of the trials' runs, sorted by the sweep's metric; grouped by the varied keys with repeats.

    Columns: name, status, the varied keys, the metric, test accuracy (R² for a regression) and duration. Invalid
    trials have no run directory; they appear in the notes.
    """
    from nnrun.compare import canonical, compare_runs

    paths = [sweep_dir / d for t in state.trials for d in t.run_dirs if (sweep_dir / d).is_dir()]
    if not paths:
        return None
    keys = [canonical(k) for k in state.grid]
    test = "test_r2" if state.base_config and regression(validate_config(state.base_config)) else "test_accuracy"
    head = ["status", *keys] if state.repeats > 1 else ["name", "status", *keys]
    columns = list(dict.fromkeys([*head, state.metric, test, "duration"]))
    comparison = compare_runs(paths, sort=state.metric, columns=[",".join(columns)],
                              group_by=keys if state.repeats > 1 else None)  # fmt: skip
    comparison.notes.extend(
        f"trial {t.index} ({space.params_text(t.params)}): invalid, skipped: {t.error}" for t in state.trials if t.status == "invalid"
    )
    return comparison
