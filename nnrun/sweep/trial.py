"""One trial, in whichever process runs it (this one, a ``--join`` worker or a Ray node).

``run_trial`` trains each seed's run directory, reports the sweep metric to the pruner after every epoch,
and returns a small result dict instead of raising: one bad trial never ends the sweep. A retried trial
finds its earlier run directories by name: a completed seed is kept, an interrupted one resumes.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.config import validate_config
from nnrun.errors import ConfigError, DataError, NnrunError, RunDirError, RunInterrupted, first_line
from nnrun.sweep.study import StudyRef, open_study


@dataclass
class TrialSpec:
    """Everything a process (local or on a Ray node) needs to run one trial; picklable."""

    index: int  # the trial's number + 1 (a retry keeps its first attempt's)
    number: int  # Optuna's number for this attempt
    trial_id: int
    configs: list[dict[str, Any]]  # one resolved config per seed, named and placed in the sweep folder
    study: StudyRef
    metric: str  # the compare column that ranks the trials
    monitor: str | None  # the epoch's log key the pruner hears (None: no pruning)
    argv: list[str]
    smoke: bool = False
    config_path: str | None = None
    threads: int | None = None  # intra-op threads for TensorFlow; None: TensorFlow's default
    cwd: str | None = None  # the sweep's working folder, for relative dataset paths


_STUDIES: dict[tuple, Any] = {}


def lost_result(spec: TrialSpec, status: str, error: str) -> dict[str, Any]:
    """The result of a trial whose process returned none: it died, or the sweep stopped it."""
    return {"index": spec.index, "number": spec.number, "status": status, "error": error, "run_dirs": [],
            "values": [], "duration_s": None}


def thread_env(threads: int) -> dict[str, str]:
    """The environment that caps TensorFlow's thread pools at ``threads``, read when it starts."""
    return {"TF_NUM_INTRAOP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": "1" if threads == 1 else "2"}  # fmt: skip


def limit_threads(threads: int | None) -> None:
    """Cap TensorFlow's thread pools (before it starts; a no-op afterwards)."""
    if not threads:
        return
    os.environ.update(thread_env(threads))
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["TF_NUM_INTEROP_THREADS"]))
        except RuntimeError:
            pass  # TensorFlow already started in this process: its pools keep their size


def study_for(ref: StudyRef) -> Any:
    """The study, opened once per process."""
    key = (ref.sweep_dir, ref.storage, ref.name)
    if key not in _STUDIES:
        _STUDIES[key] = open_study(ref)
    return _STUDIES[key]


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Train (or resume) each seed of one trial; never raises for the trial's own errors.

    Returns:
        status (completed, pruned, failed, interrupted or invalid), run_dirs and values (the metric per run).
    """
    limit_threads(spec.threads)
    if spec.cwd and Path(spec.cwd).is_dir():
        os.chdir(spec.cwd)
    import optuna

    study = study_for(spec.study)
    trial = optuna.Trial(study, spec.trial_id)
    started = time.perf_counter()
    run_dirs: list[str] = []
    values: list[float] = []

    def outcome(status: str, error: str | None = None) -> dict[str, Any]:
        return {"index": spec.index, "number": spec.number, "status": status, "error": error, "run_dirs": run_dirs,
                "values": values, "duration_s": round(time.perf_counter() - started, 3), "host": socket.gethostname(),
                "pid": os.getpid()}

    def judge(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        return trial.should_prune()

    for seed_index, config in enumerate(spec.configs):
        prune = spec.monitor is not None and seed_index == 0 and spec.study.prune != "none"
        try:
            run, status = _train_one(spec, config, judge if prune else None)
        except BaseException as exc:  # noqa: BLE001 - one trial's error must not end the sweep
            left = _runs_named(Path(spec.study.sweep_dir), config["run"]["name"])
            run_dirs.extend(p.name for p in left[-1:] if p.name not in run_dirs)
            if isinstance(exc, (ConfigError, DataError)) and not left:
                return outcome("invalid" if not run_dirs else "failed", str(exc))
            if isinstance(exc, (RunInterrupted, KeyboardInterrupt)):
                return outcome("interrupted", str(exc) or type(exc).__name__)
            if isinstance(exc, NnrunError):
                return outcome("failed", str(exc))
            if not isinstance(exc, Exception):
                raise
            return outcome("failed", f"{type(exc).__name__}: {first_line(exc) if str(exc).strip() else ''}")
        run_dirs.append(run.name)
        if status == "pruned":
            last = study._storage.get_trial(spec.trial_id).intermediate_values
            values.append(last[max(last)] if last else float("nan"))
            return outcome("pruned")
        values.append(run_value(run, spec.metric))
    return outcome("completed")


def _train_one(spec: TrialSpec, config_data: dict[str, Any], judge: Any) -> tuple[Path, str]:
    """Train one seed of the trial, or keep or resume the run an earlier attempt left."""
    from nnrun import training
    from nnrun.callbacks import make_pruning_callback
    from nnrun.console import Reporter, make_console
    from nnrun.tf import import_keras

    import_keras().backend.clear_session()  # a fresh graph per run: memory stays flat over a long sweep
    runs_dir = Path(spec.study.sweep_dir)
    name = config_data["run"]["name"]
    pruning = make_pruning_callback(spec.monitor, judge) if judge else None
    reporter = Reporter(make_console(quiet=True))
    earlier = _runs_named(runs_dir, name)
    if earlier:
        status = _status(earlier[-1])
        if status in ("completed", "pruned"):
            return earlier[-1], status
        if status in ("interrupted", "crashed") and (earlier[-1] / rd.LAST_CHECKPOINT).is_file():
            try:
                result = training.resume(earlier[-1], reporter=reporter, argv=spec.argv, pruning=pruning)
                return result.run_dir, result.status
            except RunDirError:  # not resumable after all: train it again, in a new run directory
                reporter = Reporter(make_console(quiet=True))
    config = validate_config(config_data, source=f"trial {name}")
    prepared = training.prepare(config, smoke=spec.smoke)
    result = training.train(config, reporter=reporter, argv=spec.argv, smoke=spec.smoke,
                            config_path=spec.config_path, prepared=prepared, pruning=pruning)  # fmt: skip
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
