"""One trial, in whichever process runs it (a worker, a ``--join`` worker or a Ray node).

``run_trial`` trains each seed's run directory, reports the sweep metric to the pruner after every epoch, and
returns a small result dict instead of raising: one bad trial never ends the sweep. A retried trial finds its
earlier run directories by name: a finished seed is kept, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.errors import ConfigError, DataError, NnrunError, RunDirError, RunInterrupted, first_line
from nnrun.sweep import space
from nnrun.sweep.state import SweepState
from nnrun.sweep.study import open_study


@dataclass
class TrialSpec:
    """Everything a process (local or on a Ray node) needs to run one trial; picklable."""

    index: int  # the trial's number + 1 (a retry keeps its first attempt's)
    number: int  # Optuna's number for this attempt
    trial_id: int
    name: str  # the run name; with repeats, each seed's run adds -seed<N>
    params: dict[str, Any]
    sweep_dir: str  # absolute
    state: SweepState
    cwd: str = ""  # the sweep's working folder, for relative dataset paths


_STUDIES: dict[str, Any] = {}  # opened once per process


def result_of(spec: TrialSpec, status: str, error: str | None = None) -> dict[str, Any]:
    """A trial's result before it trains, or of one whose process returned none (it died, or the sweep stopped it)."""
    return {"index": spec.index, "number": spec.number, "status": status, "error": error, "run_dirs": [],
            "values": [], "duration_s": None}  # fmt: skip


def thread_env(threads: int) -> dict[str, str]:
    """The environment that caps TensorFlow's thread pools at ``threads``, read when it starts."""
    return {"TF_NUM_INTRAOP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": "1" if threads == 1 else "2"}  # fmt: skip


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Train (or resume) each seed of one trial; never raises for the trial's own errors.

    Returns:
        status (completed, pruned, failed, interrupted or invalid), run_dirs and values (the metric per run).
    """
    import optuna

    if spec.cwd and Path(spec.cwd).is_dir():
        os.chdir(spec.cwd)
    if spec.sweep_dir not in _STUDIES:
        _STUDIES[spec.sweep_dir] = open_study(spec.sweep_dir, spec.state)
    trial = optuna.Trial(_STUDIES[spec.sweep_dir], spec.trial_id)
    started, reported = time.perf_counter(), []
    result = {**result_of(spec, "completed"), "host": socket.gethostname(), "pid": os.getpid()}

    def judge(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        reported.append(value)
        return trial.should_prune()

    state = spec.state
    for repeat in range(state.repeats):
        seed = int(state.base_config["run"]["seed"]) + repeat
        name = spec.name if state.repeats == 1 else f"{spec.name}-seed{seed}"
        try:
            params = {**spec.params, "run.seed": seed} if state.repeats > 1 else spec.params
            config = space.trial_config(state.base_config, params, name=name, runs_dir=spec.sweep_dir)
            run, status = _train_one(spec, config, judge if repeat == 0 and state.monitor else None)
        except BaseException as exc:  # noqa: BLE001 - one trial's error must not end the sweep
            left = _runs_named(Path(spec.sweep_dir), name)[-1:]
            result["run_dirs"] += [p.name for p in left if p.name not in result["run_dirs"]]
            if isinstance(exc, (RunInterrupted, KeyboardInterrupt)):
                result["status"] = "interrupted"
            elif not isinstance(exc, Exception):
                raise
            else:  # a config or data error before any run directory: the trial never trained
                invalid = isinstance(exc, (ConfigError, DataError)) and not result["run_dirs"]
                result["status"] = "invalid" if invalid else "failed"
            detail = f": {first_line(exc)}" if str(exc).strip() else ""
            result["error"] = str(exc) if isinstance(exc, NnrunError) else type(exc).__name__ + detail
            break
        result["run_dirs"].append(run.name)
        pruned_at = reported[-1] if reported else float("nan")  # an earlier attempt's pruned run reports nothing
        result["values"].append(pruned_at if status == "pruned" else run_value(run, state.metric))
        result["status"] = status
        if status == "pruned":
            break
    return {**result, "duration_s": round(time.perf_counter() - started, 3)}


def _train_one(spec: TrialSpec, config: Any, judge: Any) -> tuple[Path, str]:
    """Train one seed of the trial, or keep or resume the run an earlier attempt left."""
    from nnrun import training
    from nnrun.callbacks import make_pruning_callback
    from nnrun.console import Reporter, make_console
    from nnrun.tf import import_keras

    import_keras().backend.clear_session()  # a fresh graph per run: memory stays flat over a long sweep
    pruning = make_pruning_callback(spec.state.monitor, judge) if judge else None
    earlier = _runs_named(Path(spec.sweep_dir), config.run.name)[-1:]
    status = _status(earlier[0]) if earlier else None
    if status in ("completed", "pruned"):
        return earlier[0], status
    if status in ("interrupted", "crashed") and (earlier[0] / rd.LAST_CHECKPOINT).is_file():
        try:
            result = training.resume(earlier[0], reporter=Reporter(make_console(quiet=True)), argv=spec.state.argv,
                                     pruning=pruning)  # fmt: skip
            return result.run_dir, result.status
        except RunDirError:
            pass  # not resumable after all: train it again, in a new run directory
    smoke = spec.state.smoke
    result = training.train(config, reporter=Reporter(make_console(quiet=True)), argv=spec.state.argv, smoke=smoke,
                            config_path=spec.state.config_file, prepared=training.prepare(config, smoke=smoke),
                            pruning=pruning)  # fmt: skip
    return result.run_dir, result.status


def run_value(run: Path, metric: str) -> float:
    """The sweep metric of a finished run, read as ``nnrun compare`` reads it."""
    from nnrun.compare import lookup
    from nnrun.compare.records import read_record

    value = lookup(read_record(run), metric)
    return float(value) if isinstance(value, (int, float)) else float("nan")


def _status(run: Path) -> str:
    try:
        return rd.effective_status(rd.read_json(run / rd.RUN))
    except RunDirError:
        return "unreadable"


def _runs_named(runs_dir: Path, name: str) -> list[Path]:
    """Run directories of this run name, oldest first."""
    pattern = re.compile(rf"^\d{{8}}-\d{{6}}-{re.escape(name)}(-\d+)?$")
    try:
        return sorted(p for p in runs_dir.iterdir() if p.is_dir() and pattern.match(p.name))
    except OSError:
        return []
