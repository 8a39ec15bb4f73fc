"""One trial, in the worker that asked for it (a sweep, ``--join`` or ``--jobs`` process, or a Ray task).

``run_trial`` trains each seed's run directory, reports the sweep metric to the pruner after every epoch, and
returns a small result dict instead of raising: one bad trial never ends the sweep. A retried trial finds its
earlier run directories by name: a finished seed is kept, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.errors import ConfigError, DataError, NnrunError, RunDirError, RunInterrupted, first_line
from nnrun.sweep import space
from nnrun.sweep.state import SweepState


def thread_env(threads: int) -> dict[str, str]:
    """The environment that caps TensorFlow's thread pools at ``threads``, read when it starts."""
    return {"TF_NUM_INTRAOP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": "1" if threads == 1 else "2"}  # fmt: skip


def run_trial(trial: Any, name: str, params: dict[str, Any], state: SweepState, sweep_dir: Path) -> dict[str, Any]:
    """Train (or resume) each seed of one Optuna trial; never raises for the trial's own errors.

    Returns:
        status (completed, pruned, failed, interrupted or invalid), run_dirs and values (the metric per run).
    """
    started, reported = time.perf_counter(), []
    result = {"status": "completed", "error": None, "run_dirs": [], "values": [], "host": socket.gethostname(),
              "pid": os.getpid()}  # fmt: skip

    def judge(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        reported.append(value)
        return trial.should_prune()

    for repeat in range(state.repeats):
        seed = int(state.base_config["run"]["seed"]) + repeat
        run_name = name if state.repeats == 1 else f"{name}-seed{seed}"
        try:
            seeded = {**params, "run.seed": seed} if state.repeats > 1 else params
            config = space.trial_config(state.base_config, seeded, name=run_name, runs_dir=str(sweep_dir))
            run, status = _train_one(state, config, judge if repeat == 0 and state.monitor else None)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - one trial's error must not end the sweep
            left = [p.name for p in _runs_named(sweep_dir, run_name)[-1:] if p.name not in result["run_dirs"]]
            result["run_dirs"] += left
            invalid = isinstance(exc, (ConfigError, DataError)) and not result["run_dirs"]  # it never trained
            interrupted = isinstance(exc, (RunInterrupted, KeyboardInterrupt))
            result["status"] = "interrupted" if interrupted else "invalid" if invalid else "failed"
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


def _train_one(state: SweepState, config: Any, judge: Any) -> tuple[Path, str]:
    """Train one seed of the trial, or keep or resume the run an earlier attempt left."""
    from nnrun import training
    from nnrun.callbacks import make_pruning_callback
    from nnrun.console import Reporter, make_console
    from nnrun.tf import import_keras

    import_keras().backend.clear_session()  # a fresh graph per run: memory stays flat over a long sweep
    pruning = make_pruning_callback(state.monitor, judge) if judge else None
    quiet = Reporter(make_console(quiet=True))
    earlier = _runs_named(Path(config.run.runs_dir), config.run.name)[-1:]
    status = _status(earlier[0]) if earlier else None
    if status in ("completed", "pruned"):
        return earlier[0], status
    if status in ("interrupted", "crashed") and (earlier[0] / rd.LAST_CHECKPOINT).is_file():
        try:
            result = training.resume(earlier[0], reporter=quiet, argv=state.argv, pruning=pruning)
            return result.run_dir, result.status
        except RunDirError:
            pass  # not resumable after all: train it again, in a new run directory
    prepared = training.prepare(config, smoke=state.smoke)
    result = training.train(config, reporter=quiet, argv=state.argv, smoke=state.smoke, config_path=state.config_file,
                            prepared=prepared, pruning=pruning)  # fmt: skip
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
