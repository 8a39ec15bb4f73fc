"""The sweep's Optuna study: storage, sampler and pruner; trials asked for under a lock; heartbeats and retries.

Workers ask for trials under ``study.lock`` in the sweep folder, so that two never take the same trial or one
beyond the budget. Heartbeats are Optuna's: ``study.optimize`` beats for a running trial and, before it asks for the
next, fails the trials whose beat stopped (their worker was killed) and queues each again with
``RetryHeartbeatStaleTrialCallback``; the retry resumes its run from the checkpoint. Optuna's RDB storage has
heartbeats of its own; the journal file gets them here, as a system attribute of each trial.
"""

from __future__ import annotations

import fcntl
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from nnrun import rundir as rd
from nnrun.errors import ConfigError, first_line
from nnrun.sweep import space
from nnrun.sweep.state import SweepState

HEARTBEAT = "nnrun:heartbeat"  # system attribute: the time of a running trial's last beat (journal storage)
RETRY_OF = "failed_trial"  # set by Optuna's retry callback: the number of the first attempt
MAX_RETRIES = 3


warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats and retries, since 2.8
#: Queues a stale trial again with its values and user attributes (its run directories), at most MAX_RETRIES times.
retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
requeue = RetryHeartbeatStaleTrialCallback()  # --resume: a failed trial again, however often the user asks


class BudgetSpent(Exception):
    """From ``ask``: every trial of the budget has been asked for, and no retry is queued."""


class Journal(JournalStorage, BaseHeartbeat):
    """The journal file in the sweep folder, with the heartbeats Optuna's RDB storage has."""

    def __init__(self, path: Path, interval: float) -> None:
        super().__init__(JournalFileBackend(str(path)))
        self.interval = interval

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
        except Exception:  # noqa: BLE001 - failed as stale meanwhile (its tell says so), or the file hiccupped
            pass  # Optuna's beat thread has no guard: an error would end it, and the live trial would go stale

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        trials = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        # A retry carries its first attempt's last beat: its own start counts too.
        return [t._trial_id for t in trials if time.time() - max(t.system_attrs.get(HEARTBEAT, 0),
                t.datetime_start.timestamp()) > 2 * self.interval]  # fmt: skip

    def get_heartbeat_interval(self) -> float:
        return self.interval

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return retry


class SweepStudy(optuna.Study):
    """The study, whose ``ask`` gives a queued retry first, else a new trial while the budget lasts."""

    def __init__(self, sweep_dir: Path, state: SweepState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sweep_dir, self.state = sweep_dir, state

    def ask(self, fixed_distributions: Any = None) -> optuna.Trial:
        with locked(self.sweep_dir):
            trials = self.get_trials(deepcopy=False)
            first_attempts = sum(RETRY_OF not in t.system_attrs for t in trials)  # a retry is the same trial
            if first_attempts >= self.state.budget and not any(t.state == TrialState.WAITING for t in trials):
                raise BudgetSpent
            if self.state.mode != "grid":  # trial n draws from (seed, n), whichever worker asks: not alike in all
                self.sampler = sampler(self.state, trial_seed(self.state.seed, len(trials)))  # (grid: one order)
            trial = super().ask(space.distributions(self.state.grid))
            self._storage.record_heartbeat(trial._trial_id)  # at once: a worker killed now leaves a stale trial
            return trial


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial ``number`` of a sweep at ``seed``: mixed, so that seed 1 is no shifted seed 0."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def sampler(state: SweepState, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's sampler for the search: grid, random or TPE (with its constant liar, on by default, which spreads out
    the trials that workers run at once)."""
    if state.mode == "grid":
        return optuna.samplers.GridSampler(space.grid_choices(state.grid), seed=seed)
    return (optuna.samplers.TPESampler if state.mode == "tpe" else optuna.samplers.RandomSampler)(seed=seed)


def open_study(sweep_dir: str | Path, state: SweepState, *, create: bool = False) -> SweepStudy:
    """Create (``create``) or load the sweep's study, with its sampler and pruner. ConfigError if unreachable."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is nnrun's line, not Optuna's traceback
    if state.storage is None:
        storage = Journal(Path(sweep_dir) / rd.STUDY, state.heartbeat_s)
    else:
        try:
            storage = optuna.storages.RDBStorage(state.storage, heartbeat_interval=state.heartbeat_s,
                                                 heartbeat_stale_trial_callback=retry)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors: a bad URL, a missing driver, no server
            raise ConfigError(f"--storage {state.storage}: cannot open it ({first_line(exc)}). Give an SQLAlchemy "
                              "URL such as sqlite:////shared/sweeps.db or postgresql://user@host/db.") from None
    # Steps are epochs. Two finished trials are enough to judge a third: sweeps here are small.
    epochs = 1 if state.smoke else int(state.base_config["training"]["epochs"])
    pruner = {"none": optuna.pruners.NopPruner(), "median": optuna.pruners.MedianPruner(n_startup_trials=2),
              "hyperband": optuna.pruners.HyperbandPruner(max_resource=epochs)}[state.prune]  # fmt: skip
    kwargs = {"study_name": state.id, "storage": storage, "sampler": sampler(state, state.seed), "pruner": pruner}
    try:
        if create:
            optuna.create_study(direction=state.direction, **kwargs)
        return SweepStudy(Path(sweep_dir), state, **kwargs)
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


def trial_indices(trials: list[Any]) -> dict[int, int]:
    """The number of each trial's first attempt -> its index in the sweep, 1, 2, ... (a retry has a number too)."""
    return {t.number: i for i, t in enumerate((t for t in trials if RETRY_OF not in t.system_attrs), 1)}


def running_count(study: Any) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
