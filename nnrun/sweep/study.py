"""The sweep's Optuna study: storage, sampler and pruner; trials asked for under a lock; heartbeats and retries.

Workers ask for trials under ``study.lock`` in the sweep folder, so that two never take the same trial or one
beyond the budget. Heartbeats run on Optuna's machinery: ``study.optimize`` beats for a running trial (here, a system
attribute of it, in either storage), and before each trial is asked for, the trials whose beat stopped (their worker
was killed) are failed and queued again with ``RetryHeartbeatStaleTrialCallback``, under the same lock (Optuna's own
call, outside it, is left idle: between failing a trial and queueing it another worker would find the budget spent).
The retry resumes its run from the checkpoint.
"""

from __future__ import annotations

import copy
import fcntl
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from nnrun import rundir as rd
from nnrun.errors import ConfigError, DataChanged, RunDirError, first_line
from nnrun.sweep import space
from nnrun.sweep.plan import check_data, sqlite_file
from nnrun.sweep.state import SweepState
from nnrun.sweep.trial import CTRL_C

HEARTBEAT = "nnrun:heartbeat"  # system attribute: the time of a running trial's last beat (journal storage)
RETRY_OF = "failed_trial"  # set by Optuna's retry callback: the number of the first attempt
MAX_RETRIES = 3


warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats and retries, since 2.8
warnings.filterwarnings("ignore", message="The reported value is ignored")  # a resumed epoch its first attempt reported
#: Queues a stale trial again with its values, user attributes (its run directories) and the values it reported each
#: epoch (the pruner compares the trials by them), at most MAX_RETRIES times.
retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES, inherit_intermediate_values=True)
requeue = RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)  # --resume: as often as the user asks
_anew = RetryHeartbeatStaleTrialCallback()


def fresh(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """``--resume`` of a trial that trained on changed data: queued again with neither the values it reported each
    epoch nor the Hyperband rungs it passed on them (a system attribute each), so that the pruner judges it anew."""
    trial = copy.deepcopy(trial)
    trial.system_attrs = {k: v for k, v in trial.system_attrs.items() if not k.startswith("completed_rung_")}
    _anew(study, trial)


class BudgetSpent(Exception):
    """From ``ask``: every trial of the budget has been asked for, and no retry is queued."""


class Heartbeats(BaseHeartbeat):
    """A running trial's last beat as its system attribute, with its start for a trial asked for but never beaten
    (Optuna's RDB storage would never fail that one); stale ones are found only while ``judging`` (``fail_stale``)."""

    judging = False

    def __init__(self, storage: Any, interval: float) -> None:  # the journal's backend, or the database's URL
        super().__init__(storage)
        self.interval = interval

    def record_heartbeat(self, trial_id: int) -> None:
        # Failed as stale meanwhile (its tell says so), or the file hiccupped: Optuna's beat thread has no guard, and
        # an error would end it, so that the live trial would go stale.
        with suppress(Exception):
            self.set_trial_system_attr(trial_id, HEARTBEAT, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if not self.judging:
            return []
        trials = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        # A retry carries its first attempt's last beat: its own start counts too.
        return [t._trial_id for t in trials if time.time() - max(t.system_attrs.get(HEARTBEAT, 0),
                t.datetime_start.timestamp()) > 2 * self.interval]  # fmt: skip

    def get_heartbeat_interval(self) -> float:
        return self.interval

    def get_heartbeat_stale_trial_callback(self) -> Any:
        return retry


class Journal(Heartbeats, JournalStorage):
    """The journal file in the sweep folder, locked with ``fcntl``: the lock of a worker killed while it writes goes
    at once (Optuna's default lock file stays 30 s, and meanwhile no worker could beat: their trials went stale)."""

    def __init__(self, path: Path, interval: float) -> None:
        super().__init__(JournalFileBackend(str(path), lock_obj=JournalLock(path.with_name(rd.JOURNAL_LOCK))), interval)


class Database(Heartbeats, optuna.storages.RDBStorage):
    """``--storage URL``: Optuna's RDB storage, with the journal's heartbeats."""


class JournalLock:
    """One process at a time writes the journal (JournalStorage's own lock keeps this process's threads apart); the
    ``acquire`` and ``release`` of Optuna's journal file locks."""

    def __init__(self, path: Path) -> None:
        self.path, self.handle = path, None

    def acquire(self) -> bool:
        self.handle = open(self.path, "a")  # noqa: SIM115 - held until release
        fcntl.lockf(self.handle, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        self.handle.close()


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose worker stopped beating, and queue each again (at most MAX_RETRIES times): Optuna's
    ``fail_stale_trials``, called under ``locked``, so that no worker asks meanwhile."""
    Heartbeats.judging = True  # on the class: Optuna wraps an RDB storage in a cache of its own
    try:
        optuna.storages.fail_stale_trials(study)
    finally:
        Heartbeats.judging = False


class SweepStudy(optuna.Study):
    """The study, whose ``ask`` gives a queued retry first, else a new trial while the budget lasts."""

    def __init__(self, sweep_dir: Path, state: SweepState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sweep_dir, self.state = sweep_dir, state

    def ask(self, fixed_distributions: Any = None) -> optuna.Trial:
        CTRL_C.hold()  # until the trial starts training (run_trial), or the worker handles BudgetSpent
        with locked(self.sweep_dir):
            fail_stale(self)
            trials = self.get_trials(deepcopy=False)
            first_attempts = sum(RETRY_OF not in t.system_attrs for t in trials)  # a retry is the same trial
            if first_attempts >= self.state.budget and not any(t.state == TrialState.WAITING for t in trials):
                raise BudgetSpent
            if self.state.mode != "grid":  # trial n draws from (seed, n), whichever worker asks: not alike in all
                self.sampler = sampler(self.state, trial_seed(self.state.seed, first_attempts))  # (grid: one order)
            try:
                check_data(self.state, self.sweep_dir)  # edited since the sweep (or the last trial) started: it stops
            except DataChanged as exc:  # one failed trial says why in sweep.json, not one per worker (or machine)
                last = {t.system_attrs.get(RETRY_OF, t.number): t for t in trials}  # a retry replaces its first
                if not any(t.state == TrialState.FAIL and t.user_attrs.get("data_changed")
                           and t.user_attrs.get("number") == t.number for t in last.values()):  # not inherited
                    trial = super().ask(space.distributions(self.state.grid))  # a retry's status was its first's
                    attrs = {"params": space.decode(trial, self.state.grid), "error": str(exc), "status": "failed",
                             "data_changed": True}
                    for key, value in {**attrs, "number": trial.number}.items():
                        trial.set_user_attr(key, value)
                    self.tell(trial, state=TrialState.FAIL)
                raise
            queued = {t.number for t in trials if t.state == TrialState.WAITING}
            try:
                trial = super().ask(space.distributions(self.state.grid))
                self._storage.record_heartbeat(trial._trial_id)  # at once: a worker killed now leaves a stale trial
            except BaseException as exc:  # Ctrl-C as the sampler draws: the trial is told, not left running unbeaten
                for t in self.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    if t.number >= len(trials) or t.number in queued:  # made (or popped) by this ask
                        stop = isinstance(exc, KeyboardInterrupt)
                        attrs = {"status": "interrupted" if stop else "failed", "number": t.number, "error":
                                 "stopped (SIGINT) before its training began" if stop else first_line(exc)}  # fmt: skip
                        for key, value in attrs.items():
                            self._storage.set_trial_user_attr(t._trial_id, key, value)
                        self._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
                raise
            return trial


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial ``number`` of a sweep at ``seed``: mixed, so that seed 1 is no shifted seed 0."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid, whose shuffled order gives a new trial the first point no trial holds (trial n of a sweep takes
    point n), not point n to Optuna's trial number n, which counts retries too: a sweep resumed after Ctrl-C or
    ``kill -9`` keeps the seed's order, and no point is trained twice while another is left out."""

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        held = {t.system_attrs.get("grid_id") for t in trials if t.number != trial.number}  # a retry holds its own
        free = [i for i in range(len(self._all_grids)) if i not in held]
        trial = copy.copy(trial)  # a retry with a point keeps it: Optuna's sampler leaves such a trial alone
        trial.number = free[0] if free else trial.number
        super().before_trial(study, trial)


class Hyperband(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband, with a trial retried after its worker died as one trial: in its first attempt's bracket,
    and its values at each rung counted once (the retry inherits them), not once per attempt."""

    def _get_bracket_id(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
        first = copy.copy(trial)
        first.number = trial.system_attrs.get(RETRY_OF, trial.number)
        return super()._get_bracket_id(study, first)

    def _create_bracket_study(self, study: optuna.Study, bracket_id: int) -> optuna.Study:
        bracket = super()._create_bracket_study(study, bracket_id)
        every = bracket.get_trials

        def get_trials(deepcopy: bool = True, states: Any = None) -> list[optuna.trial.FrozenTrial]:
            trials = every(deepcopy=deepcopy, states=states)
            replaced = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
            return [t for t in trials if t.number not in replaced]

        object.__setattr__(bracket, "get_trials", get_trials)
        return bracket


def sampler(state: SweepState, seed: int) -> optuna.samplers.BaseSampler:
    """Optuna's sampler for the search: grid, random or TPE (with its constant liar, on by default, which spreads out
    the trials that workers run at once)."""
    if state.mode == "grid":
        return GridSampler(space.grid_choices(state.grid), seed=seed)
    return (optuna.samplers.TPESampler if state.mode == "tpe" else optuna.samplers.RandomSampler)(seed=seed)


def open_study(sweep_dir: str | Path, state: SweepState, *, create: bool = False) -> SweepStudy:
    """Create (``create``) or load the sweep's study, with its sampler and pruner. ConfigError if unreachable."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is nnrun's line, not Optuna's traceback
    where = Path(sweep_dir) / rd.STUDY if state.storage is None else sqlite_file(state.storage)
    if not create and where is not None and not where.is_file():  # opening it would make an empty one
        raise RunDirError(f"{where.absolute()}: not found; it holds the sweep's study (moved or deleted?). Put it back to work "
                          f"on the sweep, or start a new one.")  # fmt: skip
    storage = Journal(where, state.heartbeat_s) if state.storage is None else None
    for attempt in range(0 if storage else 3):  # two sweeps making a new database's tables at once: one fails
        try:
            storage = Database(state.storage, state.heartbeat_s)
            break
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors: a bad URL, a missing driver, no server
            if attempt == 2:
                raise ConfigError(f"--storage {state.storage}: cannot open it ({first_line(exc)}). Give an "
                                  "SQLAlchemy URL such as sqlite:////shared/sweeps.db or postgresql://user@host/db.") from None
            time.sleep(0.5)
    # Steps are epochs. Two finished trials are enough to judge a third: sweeps here are small.
    epochs = 1 if state.smoke else int(state.base_config["training"]["epochs"])
    pruner = {"none": optuna.pruners.NopPruner(), "median": optuna.pruners.MedianPruner(n_startup_trials=2),
              "hyperband": Hyperband(max_resource=epochs)}[state.prune]  # fmt: skip
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
