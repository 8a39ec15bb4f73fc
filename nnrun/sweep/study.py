"""The sweep's Optuna study: storage, sampler, pruner, the trial budget, heartbeats and retries.

Every worker asks the study for trials under ``study.lock`` (``ask``), so that two workers never take
the same trial or one too many. A trial whose heartbeat stops (its worker was killed) is failed by the
next ``ask`` and queued again by Optuna's ``RetryHeartbeatStaleTrialCallback``; the retry resumes its
run from the checkpoint. Optuna is imported only inside these functions.
"""

from __future__ import annotations

import fcntl
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from nnrun import rundir as rd
from nnrun.errors import ConfigError, first_line
from nnrun.sweep.space import grid_space

SEARCHES = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "hyperband")
HEARTBEAT = "nnrun:heartbeat"  # system attribute: the time of a running trial's last heartbeat
RETRY_OF = "failed_trial"  # set by Optuna's retry callback: the number of the first attempt
MAX_RETRIES = 3


@dataclass(frozen=True)
class StudyRef:
    """What a process needs to open the study (picklable, for Ray workers)."""

    sweep_dir: str  # absolute
    storage: str | None  # an RDB URL, or None for the journal file in the sweep folder
    name: str
    search: str
    prune: str
    seed: int
    grid: dict[str, Any]  # the space as sweep.json stores it, for the grid sampler
    epochs: int  # the pruner's largest step
    direction: str  # maximize or minimize
    heartbeat_s: float
    parallel: bool = False


def check_choices(search: str, prune: str) -> None:
    if search not in SEARCHES:
        raise ConfigError(f"--search must be one of {', '.join(SEARCHES)}, got {search!r}.")
    if prune not in PRUNERS:
        raise ConfigError(f"--prune must be one of {', '.join(PRUNERS)}, got {prune!r}.")


def open_storage(ref: StudyRef) -> Any:
    """The journal file in the sweep folder, or the RDB at ``ref.storage``; ConfigError if unreachable."""
    import optuna

    if ref.storage is None:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(Path(ref.sweep_dir) / rd.STUDY)))
    try:
        return optuna.storages.RDBStorage(ref.storage)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors: a bad URL, a missing driver, no server
        raise ConfigError(f"--storage {ref.storage}: cannot open it ({first_line(exc)}). Give an SQLAlchemy URL "
                          "such as sqlite:////shared/sweeps.db or postgresql://user@host/db.") from None


def sampler(ref: StudyRef) -> Any:
    import optuna

    if ref.search == "grid":

        class Grid(optuna.samplers.GridSampler):
            """Without GridSampler's ``study.stop()`` after the last point (only ``optimize`` allows it): the budget stops us."""

            def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                pass

        return Grid(grid_space(ref.grid), seed=ref.seed)
    if ref.search == "random":
        return optuna.samplers.RandomSampler(seed=ref.seed)
    # constant_liar: parallel workers see each other's running trials and spread out.
    return optuna.samplers.TPESampler(seed=ref.seed, constant_liar=ref.parallel)


def pruner(ref: StudyRef) -> Any:
    import optuna

    if ref.prune == "median":
        # Steps are epochs (1, 2, ...). Two finished trials are enough to judge a third: sweeps here are small.
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if ref.prune == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, ref.epochs), reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(ref: StudyRef, *, create: bool = False) -> Any:
    """Create (``create``) or load the study, with this sweep's sampler and pruner."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(ref)
    kwargs = dict(study_name=ref.name, storage=storage, sampler=sampler(ref), pruner=pruner(ref))
    if create:
        try:
            return optuna.create_study(direction=ref.direction, **kwargs)
        except optuna.exceptions.DuplicatedStudyError:
            raise ConfigError(f"--storage {ref.storage} already holds a study named {ref.name}; "
                              "give the sweep another --name.") from None
    try:
        return optuna.load_study(**kwargs)
    except KeyError:
        raise ConfigError(f"no study {ref.name} in {ref.storage or Path(ref.sweep_dir) / rd.STUDY}; "
                          "is this the sweep folder the study was made for?") from None


@contextmanager
def locked(sweep_dir: str | Path) -> Iterator[None]:
    """``study.lock`` in the sweep folder, held across processes until the file closes (POSIX locks work on NFS)."""
    with open(Path(sweep_dir) / rd.STUDY_LOCK, "a") as handle:
        fcntl.lockf(handle, fcntl.LOCK_EX)
        yield


def ask(study: Any, ref: StudyRef, budget: int) -> Any | None:
    """The next trial for this worker (a queued retry first), or None when the budget is spent."""
    import optuna

    with locked(ref.sweep_dir):
        fail_stale(study, ref.heartbeat_s)
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        first_attempts = [t for t in study.get_trials(deepcopy=False) if RETRY_OF not in t.system_attrs]
        if not waiting and len(first_attempts) >= budget:  # a retry is the same trial again
            return None
        trial = study.ask()
        # Beat at once: a retry carries its first attempt's last (stale) beat.
        study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT, time.time())
        return trial


def running_count(study: Any) -> int:
    import optuna

    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def fail_stale(study: Any, heartbeat_s: float) -> None:
    """Fail the running trials whose heartbeat is older than two intervals, and queue each again once."""
    import optuna

    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        last = trial.system_attrs.get(HEARTBEAT, trial.datetime_start.timestamp() if trial.datetime_start else now)
        if now - last <= 2 * heartbeat_s + 1:
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "error", "its worker stopped (no heartbeat); retried")
            study._storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # it finished meanwhile
        retry_queue(study, study._storage.get_trial(trial._trial_id))


def retry_queue(study: Any, trial: Any) -> None:
    """Queue ``trial`` again with its values and user attributes (its run directories), at most MAX_RETRIES times."""
    import warnings

    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # "experimental" since Optuna 2.8: a line on the console every retry
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)(study, trial)


@contextmanager
def heartbeat(storage: Any, trial_ids: Callable[[], list[int]], interval: float) -> Iterator[None]:
    """Stamp the worker's running trials in the study every ``interval`` seconds, from a thread.

    The worker beats, not the trial: a trial waiting for a Ray worker is alive too, and ``kill -9`` of
    the worker stops the beats of all its trials at once.
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
