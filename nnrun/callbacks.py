"""nnrun's own Keras callbacks: run-directory files per epoch, rich progress, clean stop on signals.

Each is one small ``keras.callbacks.Callback`` subclass. They are made by
factory functions because ``keras`` is imported only when training starts.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from nnrun import rundir as rd
from nnrun.atomic import atomic_path, write_json_atomic
from nnrun.config import RunConfig
from nnrun.console import Reporter


def _callback_base():
    from nnrun.tf import import_keras

    return import_keras().callbacks.Callback


def make_run_callbacks(run: rd.RunDir, config: RunConfig, *, validation: bool, reporter: Reporter,
                       stop: "StopFlag", history: list[dict] | None = None) -> list[Any]:
    """Our own callbacks: history.csv and checkpoints after every epoch, progress, clean stop.

    ``history`` holds the rows of epochs already trained (when resuming).
    The first callback returned is the RunFiles one; its ``rows`` is the history.
    """
    Callback = _callback_base()
    checkpoint = config.training.checkpoint
    monitor = "val_loss" if validation else "loss"

    class RunFiles(Callback):
        """Writes history.csv and the checkpoints after each completed epoch."""

        def __init__(self) -> None:
            super().__init__()
            self.rows: list[dict] = list(history or [])
            self.best = min((r[monitor] for r in self.rows if monitor in r), default=math.inf)
            self.epoch_start = time.perf_counter()
            self.last_save: float | None = None
            self.diverged = False

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            row["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
            row["time_s"] = round(time.perf_counter() - self.epoch_start, 4)
            self.rows.append(row)
            if checkpoint != "none":
                self._checkpoint(epoch, row)
            run.write_history(self.rows)
            if stop.requested:
                self.model.stop_training = True  # a clean stop: this epoch is complete and saved
            if math.isnan(row.get("loss", 0.0)):  # NaN weights stay NaN: the epochs left would only burn time
                self.model.stop_training = self.diverged = True

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.diverged:  # here: after the epoch's own line
                reporter.print(f"[yellow]warning:[/] the loss is NaN in epoch {self.rows[-1]['epoch']}: the training "
                               "diverged, so it stopped there. Lower training.optimizer.learning_rate, or scale the "
                               "inputs (preprocessing: standardize) or a regression's label (dataset.label_scaling).",
                               soft_wrap=True)  # fmt: skip

        def _checkpoint(self, epoch: int, row: dict) -> None:
            # Saving a .keras file costs ~25 ms; at 150 short epochs that is 10% of
            # the run. So last.keras is written at most every CHECKPOINT_INTERVAL_S,
            # and always on the first epoch of a fit and on a requested stop. A
            # kill -9 loses at most that interval; --resume replays from the checkpoint.
            now = time.perf_counter()
            if stop.requested or self.last_save is None or now - self.last_save >= CHECKPOINT_INTERVAL_S:
                (run.path / rd.CHECKPOINTS).mkdir(exist_ok=True)
                with atomic_path(run.file(rd.LAST_CHECKPOINT)) as tmp:
                    self.model.save(tmp)
                write_json_atomic(run.file(rd.LAST_CHECKPOINT_STATE),
                                     {"epoch": epoch + 1, "seed_generators": seed_generator_states(self.model)})
                self.last_save = now
            value = row.get(monitor, math.inf)
            if checkpoint == "best" and value < self.best:
                self.best = value
                with atomic_path(run.file(rd.BEST_CHECKPOINT)) as tmp:
                    self.model.save(tmp)

    callbacks: list[Any] = [RunFiles()]
    if config.training.verbose:
        callbacks.append(_progress_callback(Callback, reporter, config, stop, config.training.verbose))
    return callbacks


#: Seconds between two writes of checkpoints/last.keras (see RunFiles._checkpoint).
CHECKPOINT_INTERVAL_S = 10.0


def make_pruning_callback(monitor: str, judge: Any) -> Any:
    """A callback that reports ``logs[monitor]`` after every epoch to ``judge(epoch, value) -> bool``.

    ``judge`` (a sweep's pruner) says whether to stop; the callback then ends ``fit`` after this
    epoch (unless it was the last), which is already saved, and records why in ``reason``. A monitor missing from the
    logs raises instead of doing nothing: a pruner that never hears a value never prunes.
    """

    class Pruning(_callback_base()):
        def __init__(self) -> None:
            super().__init__()
            self.reason: str | None = None

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            if monitor not in logs:
                from nnrun.errors import ConfigError

                raise ConfigError(f"the sweep metric {monitor} is not in the epoch's logs ({', '.join(sorted(logs))}); "
                                  "rank by one of those with --metric.")
            # The last epoch is reported too (the median pruner compares finished trials by it), but a trial that
            # trained every epoch, or that EarlyStopping (before this callback) ended here, completed: it is evaluated
            # and saved, and can be the best.
            last = epoch + 1 >= self.params.get("epochs", float("inf")) or self.model.stop_training
            if judge(epoch + 1, float(logs[monitor])) and not last:
                self.reason = f"pruned after epoch {epoch + 1}: {monitor} {float(logs[monitor]):.4f}"
                self.model.stop_training = True

    return Pruning()


# Exact resume. The data order needs nothing from us: with a global seed, Keras
# shuffles numpy inputs in an order fixed by that seed (the same order every
# epoch, as in the plain-Keras script), and resume sets the same seed. The
# random layers (Dropout, GaussianNoise, ...) draw from SeedGenerator state
# variables that advance with every step but that a .keras file does not
# restore, so the checkpoint state carries them and resume puts them back.
# (Reseeding TensorFlow every epoch does not reach them, and it costs: it
# clears TF's kernel cache, 0.08 s per epoch on the diabetes tutorial.)


def _seed_generator_variables(model: Any) -> list[Any]:
    return [v for v in model.variables if v.name == "seed_generator_state"]


def seed_generator_states(model: Any) -> list[list[int]]:
    """The state of every random layer's seed generator, in model order."""
    return [[int(x) for x in np.asarray(v)] for v in _seed_generator_variables(model)]


def restore_seed_generator_states(model: Any, states: list[list[int]] | None) -> None:
    """Put back states saved by :func:`seed_generator_states` (no-op for an old checkpoint without them)."""
    variables = _seed_generator_variables(model)
    if states is None or len(states) != len(variables):
        return
    for variable, state in zip(variables, states):
        variable.assign(np.asarray(state, dtype=variable.dtype))


def _progress_callback(Callback: type, reporter: Reporter, config: RunConfig, stop: "StopFlag", verbose: int):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    epochs = config.training.epochs

    class RichProgress(Callback):
        """One bar for epochs, one for the batches of the current epoch, live metrics.

        Batch updates run on Keras's async dispatch thread (``async_safe``)
        and only once per ``steps_per_execution`` batches, so they do not
        slow the compiled training loop down.
        """

        async_safe = True

        def __init__(self) -> None:
            super().__init__()
            self.progress: Progress | None = None

        def on_train_begin(self, logs: dict | None = None) -> None:
            if verbose != 1:
                return
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
                console=reporter.console, transient=True, refresh_per_second=4,
            )  # fmt: skip
            self.progress.start()
            self.epoch_task = self.progress.add_task("epochs", total=self.params.get("epochs") or epochs, metrics="")
            self.batch_task = self.progress.add_task("batches", total=self.params.get("steps") or None, metrics="")

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch
            self.epoch_start = time.perf_counter()
            if self.progress:
                self.progress.update(self.epoch_task, completed=epoch)
                self.progress.reset(self.batch_task, total=self.params.get("steps") or None, metrics="")

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if self.progress:
                shown = {k: v for k, v in (logs or {}).items() if k in ("loss", "accuracy")}
                self.progress.update(self.batch_task, completed=batch + 1, metrics=_format_logs(shown))

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            seconds = time.perf_counter() - self.epoch_start
            total = self.params.get("epochs") or epochs  # fit's own: 1 for a --smoke run
            line = f"epoch {epoch + 1}/{total}  {_format_logs(logs or {})}  ({seconds:.1f}s)"
            if config.dataset.name == "images" and self.params.get("steps"):  # the input pipeline's speed, as asked
                line += f"  ~{self.params['steps'] * config.training.batch_size / max(seconds, 1e-9):,.0f} images/s"
            if self.progress:
                self.progress.update(self.epoch_task, completed=epoch + 1, metrics=_format_logs(logs or {}))
                self.progress.console.print(line, highlight=False)
                reporter.log_only(line)
            else:
                reporter.print(line)

        def on_train_end(self, logs: dict | None = None) -> None:
            if self.progress:
                self.progress.stop()

    return RichProgress()


def _format_logs(logs: dict) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in logs.items() if isinstance(v, (int, float)) and k != "learning_rate")


# ------------------------------------------------------------- stopping


class StopFlag:
    """Set by SIGINT / SIGTERM: training stops at the end of the current epoch and saves it."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: str | None = None
        self.when = "at the end of this epoch and saving it"  # what a stop waits for, as the handler says


@contextmanager
def stop_on_signals(stop: StopFlag, reporter: Reporter) -> Iterator[None]:
    """First Ctrl-C or SIGTERM asks for a clean stop; a second Ctrl-C stops at once."""
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested = True
        stop.signal = signal.Signals(signum).name
        reporter.print(f"[yellow]{stop.signal}: stopping {stop.when} (Ctrl-C again to stop at once).[/]")

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no handlers, Ctrl-C raises as usual
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
