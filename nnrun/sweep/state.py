"""``sweep.json``: the sweep's set-up, written when it starts, and every trial's params, status, value and runs.

The study is the truth: every worker rewrites the trials from it after each change (``orchestrate.refresh``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.atomic import write_json_atomic
from nnrun.errors import RunDirError

#: Trial statuses. ``pending``: queued again; ``invalid``: failed the pre-flight check and never trained;
#: ``diverged``: trained, to a metric of NaN (a retry at the same seed would too). Done ones are not run again.
TRIAL_STATUSES = ("pending", "running", "completed", "pruned", "failed", "interrupted", "invalid", "diverged")
DONE = ("completed", "pruned", "invalid", "diverged")


@dataclass
class Trial:
    index: int
    name: str
    params: dict[str, Any]
    status: str = "pending"
    run_dir: str | None = None  # the first seed's, relative to the sweep directory
    error: str | None = None  # why it did not complete; a pruned one: the epoch and value it was pruned at
    duration_s: float | None = None
    attempts: int = 0
    previous_run_dirs: list[str] = field(default_factory=list)  # left by earlier attempts
    run_dirs: list[str] = field(default_factory=list)  # one per seed
    value: float | None = None  # the sweep metric (the mean over the seeds)
    std: float | None = None  # its standard deviation over the seeds (n - 1)


@dataclass
class SweepState:
    """What ``sweep.json`` holds."""

    id: str  # the sweep folder's name, and the study's
    name: str
    mode: str  # the search: grid, random or tpe
    grid: dict[str, Any]  # key -> list of values, or a range's text
    metric: str
    base_config: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)
    config_file: str | None = None
    budget: int = 0  # trials to run (first attempts: a retry is the same trial)
    seed: int = 0
    prune: str = "none"
    monitor: str | None = None  # the epoch's log key the pruner hears
    direction: str = "maximize"
    repeats: int = 1
    smoke: bool = False
    storage: str | None = None  # an RDB URL; None: study.journal here
    heartbeat_s: float = 10.0
    argv: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)  # the sweep's --set values (the retrain command repeats them)
    cwd: str | None = None  # where it started: relative dataset paths and storage URLs are relative to it
    data: dict[str, Any] | None = None  # the data file or folder's datasets.fingerprint there (workers compare it)
    status: str = "running"
    started: str = ""
    finished: str | None = None
    executor: str = "local"
    jobs: int = 1
    host: str = ""
    pid: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per worker that finished
    best: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = {s: n for s in TRIAL_STATUSES if (n := sum(t.status == s for t in self.trials))}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepState:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["trials"] = [Trial(**{k: v for k, v in t.items() if k in Trial.__dataclass_fields__}) for t in data["trials"]]
        return cls(**data)


def write_state(sweep_dir: Path, state: SweepState) -> None:
    write_json_atomic(sweep_dir / rd.SWEEP, state.to_dict())


def read_state(sweep_dir: str | Path) -> SweepState:
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / rd.SWEEP
    if not sweep_dir.is_dir():
        what = "is a file, not a sweep directory" if sweep_dir.exists() else "not found"
        raise RunDirError(f"sweep directory {sweep_dir} {what}; pass the runs/sweep-... folder a sweep printed.")
    if not path.is_file():
        raise RunDirError(f"{sweep_dir} is not a sweep directory (no {rd.SWEEP}); pass the runs/sweep-... folder a "
                          "sweep printed.")
    try:
        return SweepState.from_dict(rd.read_json(path))
    except (KeyError, TypeError) as exc:
        raise RunDirError(f"{path}: not a sweep file this nnrun can read ({exc}).") from None
