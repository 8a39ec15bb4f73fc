"""Start, execute and resume a sweep, keeping ``sweep.json`` current; then rank the trials.

``start_sweep`` builds the trials from the search space and checks every
trial's schema at once: a trial that fails is ``invalid`` (its one-line error
goes into ``sweep.json``) and the sweep goes on without it. ``execute`` hands
the other trials to an executor and records each start and result;
``resume_state`` reads a stopped sweep back for ``--resume``. The result is a
compare table of the trials, sorted by the sweep's metric.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.config import RunConfig, load_config, validate_config
from nnrun.errors import ConfigError, RunDirError, RunInterrupted
from nnrun.sweep.executors import check_executor, default_threads, run_trials
from nnrun.sweep.space import (
    check_grid,
    collect_grid,
    expand_grid,
    grid_to_json,
    params_text,
    sample_grid,
    trial_config,
)
from nnrun.sweep.state import DONE, SweepState, Trial, create_sweep_dir, read_state, write_state
from nnrun.sweep.trial import TrialSpec

#: Compare columns and metrics.json sections that hold validation results.
_VALIDATION_METRICS = ("best_val_", "validation.", "best_validation.")


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
    random_trials: int | None = None,
    seed: int | None = None,
    metric: str | None = None,
    runs_dir: str | Path | None = None,
    name: str | None = None,
    smoke: bool = False,
    argv: list[str] = (),
    now: Callable[[], datetime] = datetime.now,
) -> tuple[Path, SweepState]:
    """Expand the grid, check every trial's schema, and create the sweep directory with ``sweep.json``.

    Raises:
        ConfigError: a bad config, grid key, value, range or metric (nothing is created).
    """
    overrides = list(sets)
    if name is not None:
        overrides.append(f"run.name={name}")
    if runs_dir is not None:
        overrides.append(f"run.runs_dir={runs_dir}")
    config = load_config(config_path, overrides)
    grid = collect_grid(config, list(grid_options))
    section = config.sweep
    random_trials = random_trials if random_trials is not None else (section.random if section else None)
    seed = seed if seed is not None else (section.seed if section else 0)
    metric = metric or (section.metric if section else None) or default_metric(config)
    base = config.to_dict()
    base["sweep"] = None
    check_grid(grid, base)
    if random_trials is not None:
        if random_trials < 1:
            raise ConfigError(f"--random must be >= 1, got {random_trials}.")
        combos, mode = sample_grid(grid, random_trials, seed), "random"
    else:
        combos, mode = expand_grid(grid), "grid"
    width = max(2, len(str(len(combos))))
    trials = [Trial(i + 1, f"{config.run.name}-t{i + 1:0{width}d}", params) for i, params in enumerate(combos)]
    configs = {}
    for trial in trials:
        try:
            configs[trial.index] = trial_config(base, trial.params, name=trial.name, runs_dir=".")
        except ConfigError as exc:
            trial.status, trial.error = "invalid", str(exc)
    metric = check_metric(metric, list(configs.values()))
    started = now()
    sweep_dir = create_sweep_dir(config.run.runs_dir, config.run.name, started)
    state = SweepState(
        id=sweep_dir.name, name=config.run.name, mode=mode, grid=grid_to_json(grid), metric=metric, base_config=base,
        trials=trials, config_file=str(config_path), random=random_trials, seed=seed if mode == "random" else None,
        smoke=smoke, started=started.isoformat(timespec="seconds"), argv=list(argv),
    )  # fmt: skip
    write_state(sweep_dir, state)
    return sweep_dir, state


def regression(config: RunConfig) -> bool:
    from nnrun.datasets.table import resolve_task

    return resolve_task(getattr(config.dataset, "task", "classification"), config.training.loss) == "regression"


def default_metric(config: RunConfig) -> str:
    """What ranks the trials when neither --metric nor sweep.metric says: val_accuracy, or val_loss for a regression."""
    return "val_loss" if regression(config) else "val_accuracy"


def check_metric(metric: str, configs: list[RunConfig]) -> str:
    """The compare column for ``metric``; ConfigError if it is not a metric or needs validation no trial has."""
    from nnrun.compare import COLUMNS, METRIC_SECTIONS, canonical

    key = canonical(metric)
    numeric = [c for c in COLUMNS if any(w in c for w in ("accuracy", "loss"))]
    if key not in numeric and key.partition(".")[0] not in METRIC_SECTIONS:
        raise ConfigError(
            f"--metric {metric!r}: not a metric the compare table has. Use one of {', '.join(numeric)}, "
            "or a metrics.json path such as test.accuracy, validation.loss or best_validation.auc."
        )
    if key.startswith(_VALIDATION_METRICS) and configs and all(c.dataset.validation == "none" for c in configs):
        raise ConfigError(
            f"--metric {metric}: the trials have no validation data (dataset.validation is 'none'); "
            "add --set dataset.validation=0.2 (or 'test'), or rank by another metric, e.g. --metric test_accuracy."
        )
    return key


def execute(
    sweep_dir: Path,
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
    """Train every trial that is not done yet, keeping ``sweep.json`` current after each one.

    Raises:
        ConfigError: an unknown executor, or Ray missing.
        RunInterrupted: Ctrl-C; finished trials are kept, ``--resume`` runs the rest.
    """
    check_executor(executor, jobs=jobs, address=address, gpus_per_trial=gpus_per_trial)
    sweep_dir = Path(sweep_dir).resolve()
    state.status, state.executor, state.jobs = "running", executor, jobs
    state.host, state.pid, state.finished = socket.gethostname(), os.getpid(), None
    threads = default_threads(jobs) if executor == "local" and jobs > 1 else None
    specs = [_spec(sweep_dir, state, trial, threads) for trial in state.trials if trial.status not in DONE]
    for trial in state.trials:
        if trial.status == "invalid" and trial.attempts == 0:
            echo(f"trial {trial.index} {params_text(trial.params)}: [yellow]invalid[/], skipped: {trial.error}")
    write_state(sweep_dir, state)
    total = len(state.trials)
    by_index = {t.index: t for t in state.trials}

    def on_start(spec: TrialSpec) -> None:
        trial = by_index[spec.index]
        if spec.resume_dir is None and trial.run_dir:
            trial.previous_run_dirs.append(trial.run_dir)
            trial.run_dir = None
        trial.status, trial.error = "running", None
        trial.attempts += 1
        write_state(sweep_dir, state)
        verb = "resuming" if spec.resume_dir else "training"
        echo(f"trial {spec.index}/{total} {verb} {params_text(trial.params)}")

    def on_result(result: dict[str, Any]) -> None:
        trial = by_index[result["index"]]
        trial.status, trial.error = result["status"], result.get("error")
        if result.get("run_dir") and trial.run_dir and result["run_dir"] != trial.run_dir:
            trial.previous_run_dirs.append(trial.run_dir)
        trial.run_dir = result.get("run_dir") or trial.run_dir
        trial.duration_s = result.get("duration_s")
        write_state(sweep_dir, state)
        style = {"completed": "green", "invalid": "yellow", "interrupted": "yellow"}.get(trial.status, "red")
        where = f" -> {trial.run_dir}" if trial.run_dir else ""
        detail = f": {trial.error}" if trial.error and trial.status != "completed" else ""
        echo(f"trial {trial.index}/{total} [{style}]{trial.status}[/] in {trial.duration_s or 0:.1f}s{where}{detail}")

    started = time.perf_counter()
    try:
        if not specs:
            echo("every trial is already completed or invalid; nothing to train.")
        else:
            run_trials(specs, executor=executor, jobs=jobs, address=address, gpus_per_trial=gpus_per_trial,
                       ray_cpus=ray_cpus, on_start=on_start, on_result=on_result)  # fmt: skip
    except KeyboardInterrupt:
        for trial in state.trials:
            if trial.status == "running":
                trial.status, trial.error = "interrupted", "the sweep was stopped"
        _finish(sweep_dir, state, "interrupted", now, time.perf_counter() - started)
        raise RunInterrupted(
            f"sweep stopped; finished trials are kept in {sweep_dir}. Continue with: nnrun sweep --resume {sweep_dir}"
        ) from None
    failed = [t for t in state.trials if t.status not in DONE]
    _finish(sweep_dir, state, "completed" if not failed else "failed", now, time.perf_counter() - started)
    return SweepResult(sweep_dir, state, sweep_comparison(sweep_dir, state))


def _finish(sweep_dir: Path, state: SweepState, status: str, now: Callable[[], datetime], wall_s: float) -> None:
    state.status, state.finished = status, now().isoformat(timespec="seconds")
    state.history.append({"finished": state.finished, "executor": state.executor, "jobs": state.jobs,
                          "wall_s": round(wall_s, 3), "status": status})  # fmt: skip
    write_state(sweep_dir, state)


def _spec(sweep_dir: Path, state: SweepState, trial: Trial, threads: int | None) -> TrialSpec:
    resume_dir = None
    if trial.run_dir and trial.status in ("interrupted", "running", "failed"):
        run = sweep_dir / trial.run_dir
        if _resumable(run):
            resume_dir = trial.run_dir
    config = trial_config(state.base_config, trial.params, name=trial.name, runs_dir=str(sweep_dir))
    return TrialSpec(
        index=trial.index, name=trial.name, config=config.to_dict(), runs_dir=str(sweep_dir), argv=state.argv,
        smoke=state.smoke, config_path=state.config_file, resume_dir=resume_dir, threads=threads, cwd=os.getcwd(),
    )  # fmt: skip


def _resumable(run: Path) -> bool:
    """An interrupted or crashed run with a checkpoint continues where it stopped; anything else trains afresh."""
    try:
        info = rd.read_json(run / rd.RUN)
    except RunDirError:
        return False
    return rd.effective_status(info) in ("interrupted", "crashed") and (run / rd.LAST_CHECKPOINT).is_file()


def resume_state(sweep_dir: str | Path) -> SweepState:
    """Read a sweep for ``--resume``: completed trials whose run is really completed stay done.

    Raises:
        RunDirError: not a sweep directory, or the sweep is still running.
    """
    sweep_dir = Path(sweep_dir)
    state = read_state(sweep_dir)
    if state.status == "running" and state.host == socket.gethostname() and rd.pid_alive(state.pid) \
            and state.pid != os.getpid():
        raise RunDirError(f"{sweep_dir} is still running (pid {state.pid}); stop it first.")
    for trial in state.trials:
        if trial.status == "completed":
            run = sweep_dir / (trial.run_dir or "")
            try:
                ok = trial.run_dir is not None and rd.effective_status(rd.read_json(run / rd.RUN)) == "completed"
            except RunDirError:
                ok = False
            if not ok:
                trial.status, trial.error = "failed", f"its run directory {run} is missing or not completed"
        elif trial.status == "running":
            trial.status = "interrupted"
    return state


def sweep_comparison(sweep_dir: Path, state: SweepState) -> Any:
    """The compare table of the trials that have a run directory, sorted by the sweep's metric.

    Columns: name, status, the varied keys, the metric, test accuracy (R² for a regression) and duration. Invalid
    trials have no run directory; they appear in the notes.
    """
    from nnrun.compare import canonical, compare_runs

    paths = [sweep_dir / t.run_dir for t in state.trials if t.run_dir and (sweep_dir / t.run_dir).is_dir()]
    if not paths:
        return None
    keys = [canonical(k) for k in state.grid]
    test = "test_r2" if state.base_config and regression(validate_config(state.base_config)) else "test_accuracy"
    columns = list(dict.fromkeys(["name", "status", *keys, state.metric, test, "duration"]))
    comparison = compare_runs(paths, sort=state.metric, columns=[",".join(columns)])
    comparison.notes.extend(
        f"trial {t.index} ({params_text(t.params)}): invalid, skipped: {t.error}" for t in state.trials if t.status == "invalid"
    )
    return comparison
