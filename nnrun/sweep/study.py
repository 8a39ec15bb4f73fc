"""The sweep's Optuna study: storage, sampler and pruner; trials asked for under a lock; heartbeats and retries.

Workers ask for trials under ``study.lock`` in the sweep folder (``ask``), so that two never take the same trial or
one beyond the budget. A worker beats for its running trials; a trial whose beat stopped (its worker was killed) is
failed by the next ``ask`` and queued again by Optuna's ``RetryHeartbeatStaleTrialCallback``, and the retry resumes
its run from the checkpoint. Optuna's own heartbeats exist only for RDB storages. Optuna is imported on first use.
"""

from __future__ import annotations

import fcntl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.errors import ConfigError, first_line
from nnrun.sweep import space
from nnrun.sweep.state import SweepState

HEARTBEAT = "nnrun:heartbeat"  # system attribute: the time of a running trial's last beat
RETRY_OF = "failed_trial"  # set by Optuna's retry callback: the number of the first attempt
MAX_RETRIES = 3


def open_study(sweep_dir: str | Path, state: SweepState, *, create: bool = False) -> Any:
    """Create (``create``) or load the sweep's study, with its sampler and pruner. ConfigError if unreachable."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    class Grid(optuna.samplers.GridSampler):
        def after_trial(self, *args: Any) -> None:
            pass  # no study.stop() after the last point, which only optimize() allows: the budget stops a sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if state.storage is None:
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(Path(sweep_dir) / rd.STUDY)))
    else:
        try:
            storage = optuna.storages.RDBStorage(state.storage)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors: a bad URL, a missing driver, no server
            raise ConfigError(f"--storage {state.storage}: cannot open it ({first_line(exc)}). Give an SQLAlchemy "
                              "URL such as sqlite:////shared/sweeps.db or postgresql://user@host/db.") from None
    if state.mode == "grid":
        sampler = Grid(space.grid_choices(state.grid), seed=state.seed)
    else:  # TPE's constant liar (on by default) spreads out the trials that workers run at once
        sampler = (optuna.samplers.TPESampler if state.mode == "tpe" else optuna.samplers.RandomSampler)(seed=state.seed)
    # Steps are epochs. Two finished trials are enough to judge a third: sweeps here are small.
    pruner = optuna.pruners.NopPruner()
    if state.prune == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    elif state.prune == "hyperband":
        epochs = 1 if state.smoke else int(state.base_config["training"]["epochs"])
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)
    kwargs = dict(study_name=state.id, storage=storage, sampler=sampler, pruner=pruner)
    try:
        return optuna.create_study(direction=state.direction, **kwargs) if create else optuna.load_study(**kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        raise ConfigError(f"--storage {state.storage} already holds a study named {state.id}; "
                          "give the sweep another --name.") from None  # fmt: skip
    except KeyError:
        raise ConfigError(f"no study {state.id} in {state.storage or Path(sweep_dir) / rd.STUDY}; "
                          "is this the sweep folder the study was made for?") from None  # fmt: skip


@contextmanager
def locked(sweep_dir: str | Path) -> Iterator[None]:
    """``study.lock`` in the sweep folder, held across processes until the file closes (POSIX locks work on NFS)."""
    with open(Path(sweep_dir) / rd.STUDY_LOCK, "a") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        yield


def ask(study: Any, sweep_dir: str | Path, state: SweepState) -> Any | None:
    """The next trial for this worker (a queued retry first), or None when the budget is spent."""
    from optuna.trial import TrialState

    with locked(sweep_dir):
        fail_stale(study, state.heartbeat_s)
        trials = study.get_trials(deepcopy=False)
        first_attempts = sum(RETRY_OF not in t.system_attrs for t in trials)  # a retry is the same trial again
        if first_attempts >= state.budget and not any(t.state == TrialState.WAITING for t in trials):
            return None
        trial = study.ask(space.distributions(state.grid))
        # Beat at once: a retry carries its first attempt's last (stale) beat.
        study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT, time.time())
        return trial


def running_count(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def fail_stale(study: Any, heartbeat_s: float) -> None:
    """Fail the running trials whose last beat is older than two intervals, and queue each again."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = trial.system_attrs.get(HEARTBEAT) or trial.datetime_start.timestamp()
        if time.time() - last <= 2 * heartbeat_s + 1:
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "error", "its worker stopped (no heartbeat); retried")
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            continue  # it finished meanwhile
        retry(study, study._storage.get_trial(trial._trial_id))


def retry(study: Any, trial: Any) -> None:
    """Queue ``trial`` again with its values and user attributes (its run directories), at most MAX_RETRIES times."""
    import warnings

    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # "experimental" since Optuna 2.8: a line on the console every retry
        warnings.simplefilter("ignore", ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, trial)


@contextmanager
def heartbeat(storage: Any, trial_ids: Callable[[], list[int]], interval: float) -> Iterator[None]:
    """Stamp the worker's running trials in the study every ``interval`` seconds, from a thread.

    The worker beats, not the trial: a trial queued for a Ray worker is alive too, and ``kill -9`` of the worker
    stops the beats of all its trials at once.
    """
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            for trial_id in trial_ids():
                try:
                    storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
                except Exception:  # noqa: BLE001 - it finished meanwhile, or the storage hiccupped: beat again later
                    pass

    thread = threading.Thread(target=beat, daemon=True, name="nnrun-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
