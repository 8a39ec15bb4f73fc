"""One trial, in the worker that asked for it (a sweep, ``--join`` or ``--jobs`` process, or a Ray task).

``run_trial`` trains each seed's run directory, reports the sweep metric to the pruner after every epoch, and
records the result in the Optuna trial: one bad trial never ends the sweep. A retried trial finds its earlier run
directories by name: a finished seed is kept, an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from rich.markup import escape

from nnrun import rundir as rd
from nnrun.errors import (
    ConfigError,
    DataChanged,
    DataError,
    DataUnavailable,
    NnrunError,
    RunDirError,
    RunInterrupted,
    first_line,
)
from nnrun.sweep import space
from nnrun.sweep.plan import check_data
from nnrun.sweep.state import SweepState


def thread_env(threads: int) -> dict[str, str]:
    """The environment that caps TensorFlow's thread pools at ``threads``, read when it starts."""
    return {"TF_NUM_INTRAOP_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": "1" if threads == 1 else "2"}  # fmt: skip


_DIVERGED = "the training diverged at these values, and would again at the same seed; narrow the space (a lower "\
            "learning rate, say)"


class TrialFailed(Exception):
    """A trial that failed (or was invalid): Optuna records it as failed, and the sweep goes on."""


class HeldCtrlC:
    """Ctrl-C held while Optuna asks for a trial, starts its heartbeat and records it (its tell), and raised once that
    is done; a second one raises at once. A KeyboardInterrupt inside Optuna's tell left the trial running with no
    worker, and made Optuna raise UnboundLocalError. ``hold`` as a trial is asked for and as it ends; ``release`` as
    it starts training (``run_trial`` then tells it interrupted) and once it is told."""

    active = holding = heard = False

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The handler, around ``study.optimize``; in the main thread only (elsewhere Ctrl-C raises as usual, and
        ``hold`` and ``release`` do nothing)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._handler)
        self.active, self.holding, self.heard = True, False, False
        try:
            yield
        finally:
            self.active = self.holding = self.heard = False
            signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)  # None: C's

    def _handler(self, signum: int, frame: Any) -> None:
        if not self.holding or self.heard:
            raise KeyboardInterrupt
        self.heard = True
        print("Ctrl-C: stopping once this trial is recorded (Ctrl-C again to stop at once).", file=sys.stderr)

    def hold(self) -> None:
        self.holding = self.active

    def release(self) -> None:
        self.holding, heard, self.heard = False, self.heard, False
        if heard:
            raise KeyboardInterrupt


CTRL_C = HeldCtrlC()


def run_trial(trial: optuna.Trial, index: int, name: str, params: dict[str, Any], state: SweepState, sweep_dir: Path,
              echo: Callable[[str], None]) -> float:
    """Train (or resume) each seed of one trial, keep the result in the trial's user attributes and print its line.

    Returns the sweep metric (the mean over the seeds). A pruned or diverged, failed or invalid, or interrupted
    trial raises ``TrialPruned``, ``TrialFailed`` or ``KeyboardInterrupt`` for Optuna to record; its own errors never
    escape.
    """
    started, reported, runs, values, status, error, stopped = time.perf_counter(), [], [], [], "completed", None, None

    def judge(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        reported.append(value)
        return trial.should_prune()

    for repeat in range(state.repeats):
        seed = int(state.base_config["run"]["seed"]) + repeat
        run_name = name if state.repeats == 1 else f"{name}-seed{seed}"
        try:
            CTRL_C.release()  # a Ctrl-C since the trial was asked for: it stops here, before its training
            seeded = {**params, "run.seed": seed} if state.repeats > 1 else params
            config = space.trial_config(state.base_config, seeded, name=run_name, runs_dir=str(sweep_dir))
            run, status, stopped = _train_one(state, config, judge if repeat == 0 and state.monitor else None, index)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - one trial's error must not end the sweep
            runs += [p.name for p in _runs_named(sweep_dir, run_name)[-1:] if p.name not in runs]
            # Never trained: a bad point of the space; but data missing where this worker runs fails, for a retry.
            invalid = isinstance(exc, (ConfigError, DataError)) and not isinstance(exc, DataUnavailable) and not runs
            interrupted = isinstance(exc, (RunInterrupted, KeyboardInterrupt))
            status = "interrupted" if interrupted else "invalid" if invalid else "failed"
            detail = f": {first_line(exc)}" if str(exc).strip() else ""
            error = str(exc) if isinstance(exc, NnrunError) else type(exc).__name__ + detail
            error = exc.what if isinstance(exc, RunInterrupted) else error  # the sweep's --resume continues it
            if type(exc) is KeyboardInterrupt:  # before the run's own handler: nothing trained yet
                error = f"stopped (SIGINT) before {f'seed {seed} began' if repeat else 'its training began'}"
            break
        runs.append(run.name)
        pruned_at = reported[-1] if reported else math.nan  # an earlier attempt's pruned run reports nothing
        value, epoch = run_values(run, state.metric, "diverged_epoch")
        values.append(pruned_at if status == "pruned" and value is None else value)  # the metric, as the table's
        if status == "pruned":
            error = rd.RunDir(run).read_run().get("error")  # why: "pruned after epoch 2: val_accuracy 0.51"
            break
        if epoch:  # the loss went NaN: an accuracy may still read as a number
            status, error = "diverged", f"the loss became NaN in epoch {epoch:.0f}{f' of seed {seed}' * (state.repeats > 1)}: {_DIVERGED}"
            break
        if stopped and repeat < state.repeats - 1:  # Ctrl-C in a seed's last epoch: the other seeds wait
            status, error = "interrupted", f"{stopped}: stopped after seed {seed}"
            break
    CTRL_C.hold()  # until Optuna has recorded the result (the data's hash may take a while); _train_one held it too
    changed = False
    if status in ("completed", "pruned", "diverged"):
        try:
            check_data(state, sweep_dir)  # edited while it trained: its runs may have read either
        except DataChanged as exc:
            status, error, values, changed = "failed", str(exc), [], True
            for run in runs:  # failed, so that a retry trains them again rather than keeping them
                try:
                    rd.RunDir(sweep_dir / run).update_run(status="failed", error=f"the data changed as it trained: {exc}")
                except (OSError, NnrunError) as why:  # a full disk, say: the trial still fails, and says what to do
                    error += f" (could not mark {run} failed: {first_line(why)}; delete it before --resume)"
    measured = [v for v in values if v is not None and math.isfinite(v)]  # inf: a loss that overflowed, say
    if status == "completed" and None in values:
        status, error = "failed", f"no {state.metric} in the trial's run directories"
    elif status == "completed" and len(measured) < len(values):
        what = "NaN" if any(math.isnan(v) for v in values) else "infinite"
        status, error = "diverged", f"{state.metric} is {what}: {_DIVERGED}"
    duration = time.perf_counter() - started
    trained = [run_values(sweep_dir / run, "duration")[0] for run in runs]  # a resumed run counts its earlier epochs
    trained_s = sum(trained) if runs and None not in trained else duration
    value = statistics.fmean(measured) if status == "completed" else measured[0] if status == "pruned" and measured else None
    attrs = {"status": status, "error": error, "run_dirs": runs, "values": values, "duration_s": round(trained_s, 3),
             "std": statistics.stdev(measured) if len(measured) > 1 else None, "host": socket.gethostname(),
             "pid": os.getpid(), "number": trial.number, "stopped": stopped, "value": value,
             "data_changed": changed}  # fmt: skip
    for key, attr in attrs.items():
        trial.set_user_attr(key, attr)
    style = {"completed": "green", "pruned": "magenta", "invalid": "yellow", "interrupted": "yellow",
             "diverged": "yellow"}.get(status, "red")  # fmt: skip
    shown = f" {state.metric} {value:.4f}" if value is not None and status == "completed" else ""
    where = escape(f" -> {', '.join(runs)}" if runs else "") + escape(f": {error}" if error else "")  # '[...]': no tag
    echo(f"trial {index}/{state.budget} [{style}]{status}[/]{shown} in {duration:.1f}s{where}")
    if status in ("pruned", "diverged"):  # diverged: pruned to Optuna, so TPE ranks it behind every completed trial
        raise optuna.TrialPruned()
    if status == "interrupted":
        raise KeyboardInterrupt
    if value is None:
        raise TrialFailed(error)
    return value


def _train_one(state: SweepState, config: Any, judge: Any, index: int) -> tuple[Path, str, str | None]:
    """Train one seed of the trial, or keep or resume the run an earlier attempt left; its run directory, status and
    the signal that came during its last epoch (the run completed; the sweep is to stop), if any.

    An earlier run resumes only when no process holds its ``run.lock`` (on any host): a worker whose heartbeat
    stopped may only be slow, and two processes must never train in one run directory. Else a new run trains.
    """
    from nnrun import training
    from nnrun.callbacks import make_pruning_callback
    from nnrun.compare.records import read_record
    from nnrun.console import Reporter, make_console
    from nnrun.tf import import_keras

    import_keras().backend.clear_session()  # a fresh graph per run: memory stays flat over a long sweep
    pruning = make_pruning_callback(state.monitor, judge) if judge else None
    quiet = Reporter(make_console(quiet=True))
    earlier = _runs_named(Path(config.run.runs_dir), config.run.name)[-1:]
    record = read_record(earlier[0]) if earlier else None

    def placed(c: Any) -> Any:  # where the sweep folder is (it may have moved since) is no part of the trial
        return {**c, "run": {**c.get("run", {}), "runs_dir": None}} if isinstance(c, dict) else c

    status = record.status if record and placed(record.config) == placed(config.to_dict()) else None  # else another's
    try:
        if status in ("completed", "pruned", "diverged"):
            return earlier[0], status, None
        if status in ("interrupted", "crashed") and (earlier[0] / rd.LAST_CHECKPOINT).is_file():
            try:
                result = training.resume(earlier[0], reporter=quiet, argv=state.argv, pruning=pruning)
                return result.run_dir, result.status, result.stopped
            except RunDirError:
                pass  # not resumable after all (resume let go of the lock): train it again, in a new run directory
        result = training.train(config, reporter=quiet, argv=state.argv, smoke=state.smoke, extra={"trial": index},
                                config_path=state.config_file, pruning=pruning)  # fmt: skip
        return result.run_dir, result.status, result.stopped
    finally:
        CTRL_C.hold()  # at once: the run's own Ctrl-C handler has just gone, and Optuna is yet to record the trial
        rd.release_all()  # a run that failed before it finished is not left locked while this worker goes on


def run_values(run: Path, *keys: str) -> list[float | None]:
    """Numbers of a finished run (the sweep metric, say), read once as ``nnrun compare`` reads them; None if absent."""
    from nnrun.compare import lookup
    from nnrun.compare.records import read_record

    record = read_record(run)
    return [float(v) if isinstance(v := lookup(record, key), (int, float)) else None for key in keys]


def _runs_named(runs_dir: Path, name: str) -> list[Path]:
    """Run directories of this run name, oldest first."""
    pattern = re.compile(rf"^\d{{8}}-\d{{6}}-{re.escape(name)}(-\d+)?$")
    try:
        return sorted(p for p in runs_dir.iterdir() if p.is_dir() and pattern.match(p.name))
    except OSError:
        return []
