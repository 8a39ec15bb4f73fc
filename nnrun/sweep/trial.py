"""One trial, in whichever process runs it: this one, a pool worker or a Ray worker.

``TrialSpec`` is everything that process needs (picklable). ``run_trial``
checks the trial with ``training.prepare`` (data, model, loss), trains it, and
returns a small result dict instead of raising, so one bad trial never ends the
sweep. Every executor runs the same ``run_trial``; it lives apart from them so
that the executors (``executors``, ``ray``) import it and nothing imports back.

TensorFlow is imported only inside ``run_trial``, in the process that trains.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrun.config import validate_config
from nnrun.errors import ConfigError, DataError, NnrunError, RunDirError, RunInterrupted, first_line


@dataclass
class TrialSpec:
    """Everything a process (local or on a Ray node) needs to run one trial; picklable."""

    index: int
    name: str
    config: dict[str, Any]
    runs_dir: str  # absolute: the sweep directory
    argv: list[str]
    smoke: bool = False
    config_path: str | None = None
    resume_dir: str | None = None  # continue this interrupted run instead of starting a new one
    threads: int | None = None  # intra-op threads for TensorFlow; None: TensorFlow's default
    cwd: str | None = None  # the sweep's working folder, for relative dataset paths


#: What every executor calls: before a trial starts, and with the dict ``run_trial`` returned.
OnStart = Callable[[TrialSpec], None]
OnResult = Callable[[dict[str, Any]], None]


def lost_result(spec: TrialSpec, status: str, error: str) -> dict[str, Any]:
    """The result of a trial whose process returned none: it died, or the sweep stopped it."""
    return {"index": spec.index, "status": status, "error": error, "run_dir": None, "duration_s": None}


def limit_threads(threads: int | None) -> None:
    """Cap TensorFlow's thread pools (before it starts; a no-op afterwards)."""
    if not threads:
        return
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1" if threads == 1 else "2"
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["TF_NUM_INTEROP_THREADS"]))
        except RuntimeError:
            pass  # TensorFlow already started in this process: its pools keep their size


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Pre-flight and train one trial; never raises for the trial's own errors.

    Returns:
        ``{"index", "status", "run_dir", "error", "duration_s", "host"}`` with status
        completed, failed, interrupted or invalid.
    """
    limit_threads(spec.threads)
    if spec.cwd and Path(spec.cwd).is_dir():
        os.chdir(spec.cwd)
    from nnrun import training
    from nnrun.console import Reporter, make_console
    from nnrun.tf import import_keras

    import_keras().backend.clear_session()  # a fresh graph per trial: memory stays flat over a long sweep
    started = time.perf_counter()
    runs_dir = Path(spec.runs_dir)
    before = _trial_dirs(runs_dir, spec.name)

    def outcome(status: str, error: str | None = None, run_dir: Path | None = None) -> dict[str, Any]:
        if run_dir is None:
            new = sorted(_trial_dirs(runs_dir, spec.name) - before)
            run_dir = Path(new[-1]) if new else None
        return {
            "index": spec.index, "status": status, "error": error,
            "run_dir": run_dir.name if run_dir is not None else None,
            "duration_s": round(time.perf_counter() - started, 3), "host": socket.gethostname(),
        }  # fmt: skip

    reporter = Reporter(make_console(quiet=True))
    try:
        if spec.resume_dir:
            try:
                result = training.resume(runs_dir / spec.resume_dir, reporter=reporter, argv=spec.argv)
                return outcome("completed", run_dir=result.run_dir)
            except RunDirError:
                # Not resumable after all (e.g. stopped after its last epoch, before the final files):
                # train the trial again from the start, in a new run directory.
                reporter = Reporter(make_console(quiet=True))
        try:
            config = validate_config(spec.config, source=f"trial {spec.name}")
            prepared = training.prepare(config, smoke=spec.smoke)
        except (ConfigError, DataError) as exc:
            return outcome("invalid", str(exc))
        result = training.train(config, reporter=reporter, argv=spec.argv, smoke=spec.smoke,
                                config_path=spec.config_path, prepared=prepared)  # fmt: skip
        return outcome("completed", run_dir=result.run_dir)
    except RunInterrupted as exc:
        return outcome("interrupted", str(exc))
    except KeyboardInterrupt:
        return outcome("interrupted", "KeyboardInterrupt")
    except NnrunError as exc:
        return outcome("failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - a bug or library error in one trial must not end the sweep
        detail = first_line(exc) if str(exc).strip() else ""
        return outcome("failed", f"{type(exc).__name__}: {detail}")


def _trial_dirs(runs_dir: Path, name: str) -> set[str]:
    pattern = re.compile(rf"^\d{{8}}-\d{{6}}-{re.escape(name)}(-\d+)?$")
    try:
        return {str(p) for p in runs_dir.iterdir() if p.is_dir() and pattern.match(p.name)}
    except OSError:
        return set()
