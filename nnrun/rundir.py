"""The run directory: the one place that knows its file names and its status.

Layout of ``runs/<YYYYMMDD-HHMMSS>-<name>/`` (a contract other commands read):

    config.yaml         the resolved config
    run.json            id, name, status, times, argv, seed, versions, host, git commit, error
    history.csv         one row per epoch, a column per metric
    metrics.json        {"train": ..., "validation": ..., "test": ..., "best_epoch": N, "epochs_run": N}
    model.keras         the saved model
    preprocessing.json  the fitted state of every preprocessing step
    summary.txt         model.summary()
    curves.png          loss and accuracy per epoch, train against validation
    train.log           what the console showed, without colour codes
    run.lock            locked by the process that trains the run: any host sharing the folder can tell it lives
    checkpoints/        the model during training (``training.checkpoint``)
    tensorboard/        TensorBoard logs (``training.tensorboard``)
    evaluation.json     ``nnrun evaluate``'s result; other splits add a suffix (evaluation-validation.json)
    confusion_matrix.csv / .png, misclassified.png   ``nnrun evaluate``'s figures (same suffixes)
    report.html         ``nnrun report``'s page

A sweep folder ``runs/sweep-<YYYYMMDD-HHMMSS>-<name>/`` holds ``sweep.json``, the Optuna study ``study.journal``
(with its ``study.lock``) and one run directory per trial (per seed, with ``--repeats``).

Every file is written atomically (temp file, then rename): a reader never sees half a JSON. No TensorFlow here.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from nnrun.atomic import write_json_atomic, write_text_atomic
from nnrun.errors import RunDirError, first_line
from nnrun.history import history_text, parse_history

try:
    import fcntl
except ImportError:  # Windows: no run.lock; the host and pid in run.json tell what they can
    fcntl = None

_HELD: dict[Path, Any] = {}  # the runs this process trains, with their locked run.lock
_TRAINING: set[Path] = set()  # those of them it has marked running (the others it claimed to resume)

CONFIG = "config.yaml"
RUN = "run.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
MODEL = "model.keras"
PREPROCESSING = "preprocessing.json"
SUMMARY = "summary.txt"
CURVES = "curves.png"
LOG = "train.log"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "checkpoints/last.keras"
LAST_CHECKPOINT_STATE = "checkpoints/last.json"
BEST_CHECKPOINT = "checkpoints/best.keras"
EVALUATION = "evaluation.json"
TENSORBOARD = "tensorboard"
REPORT = "report.html"
SWEEP = "sweep.json"
SWEEP_PREFIX = "sweep-"
STUDY = "study.journal"  # the sweep's Optuna study (journal file storage)
RUN_LOCK = "run.lock"  # an fcntl lock on it, held while a process trains the run; the kernel lets go when it dies
STUDY_LOCK = "study.lock"  # held by a sweep worker while it asks the study for a trial or rewrites sweep.json
JOURNAL_LOCK = "journal.lock"  # held by a worker while it writes to study.journal


def evaluation_files(suffix: str = "") -> dict[str, str]:
    """``nnrun evaluate``'s file names for one split: ``""`` is the test split, else ``-validation``, ``-data-x``..."""
    return {
        "json": f"evaluation{suffix}.json",
        "confusion_csv": f"confusion_matrix{suffix}.csv",
        "confusion_png": f"confusion_matrix{suffix}.png",
        "misclassified": f"misclassified{suffix}.png",
        "regression_png": f"predictions{suffix}.png",  # regression: predicted against true, and residuals
    }

#: ``pruned``: a sweep's pruner stopped the run after an epoch (history and checkpoint kept, no test metrics).
#: ``crashed`` and ``diverged`` are only shown (``effective_status``), never written.
STATUSES = ("running", "completed", "pruned", "failed", "interrupted", "crashed", "diverged")


# ----------------------------------------------------------- creating runs


def check_runs_dir(runs_dir: str | Path) -> None:
    """Pre-flight: the runs folder exists as a writable folder, or can be made; nothing is created.

    Raises:
        RunDirError: a file is in the way, or the nearest existing folder is not writable.
    """
    path = Path(runs_dir).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise RunDirError(f"runs folder {runs_dir}: cannot create it ({existing} is a file). "
                          "Pass --runs-dir to choose another.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"runs folder {runs_dir}: cannot create it ({existing} is not writable). "
                          "Pass --runs-dir to choose another.")


def create_run_dir(runs_dir: str | Path, name: str, now: datetime, *, prefix: str = "") -> Path:
    """Create ``runs_dir/<prefix><YYYYMMDD-HHMMSS>-<name>``, adding ``-2``, ``-3``... on collision.

    ``os.mkdir`` is atomic, so concurrent processes never share a directory.

    Raises:
        RunDirError: the runs folder cannot be created or written.
    """
    runs_dir = Path(runs_dir).expanduser()
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(f"runs folder {runs_dir}: cannot create it ({exc.strerror}). Pass --runs-dir to choose another.") from None
    base = f"{prefix}{now:%Y%m%d-%H%M%S}-{name}"
    for attempt in range(1, 10_000):
        path = runs_dir / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunDirError(
                f"runs folder {runs_dir}: cannot create a run directory ({exc.strerror}). "
                "Check its permissions and free space, or pass --runs-dir."
            ) from None
    raise RunDirError(f"runs folder {runs_dir}: too many runs named {base}.")


def versions() -> dict[str, str]:
    """Versions of python, nnrun and the libraries that shape results (imported ones only)."""
    from nnrun import __version__

    out = {"python": platform.python_version(), "nnrun": __version__}
    for module in ("tensorflow", "keras", "numpy"):
        mod = sys.modules.get(module)
        if mod is None and module == "numpy":
            import numpy as mod  # noqa: PLW2901 (cheap, always available)
        out[module] = getattr(mod, "__version__", "not imported") if mod else "not imported"
    return out


def git_commit(cwd: str | Path = ".") -> str | None:
    """The commit of the git checkout around ``cwd`` (with ``+dirty`` if changed), or None."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


# ------------------------------------------------------------- the handle


@dataclass
class RunDir:
    """A run directory being written or read."""

    path: Path
    # When this process started (or resumed) training it, to the microsecond: run.json's "started" is to the second,
    # and a duration from it would count the part of that second already gone.
    since: datetime | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def id(self) -> str:
        return self.path.name

    # -- run.json

    def read_run(self) -> dict[str, Any]:
        return read_json(self.file(RUN))

    def write_run(self, info: dict[str, Any]) -> None:
        write_json_atomic(self.file(RUN), info)

    def update_run(self, **changes: Any) -> dict[str, Any]:
        info = self.read_run() if self.file(RUN).exists() else {}
        info.update(changes)
        self.write_run(info)
        return info

    def start(self, *, name: str, seed: int, argv: list[str], now: datetime, config_path: str | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write ``run.json`` with status ``running``."""
        info = {
            "id": self.id,
            "name": name,
            "status": "running",
            "started": now.isoformat(timespec="seconds"),
            "finished": None,
            "duration_s": None,
            "argv": list(argv),
            "cwd": os.getcwd(),
            "config_file": config_path,
            "seed": seed,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "versions": versions(),
            "git_commit": git_commit(),
            "error": None,
        }
        info.update(extra or {})
        self.claim()
        info["locked"] = self.path.resolve() in _HELD  # else its lock tells nothing: its pid does (effective_status)
        self.write_run(info)
        self.since = now
        _TRAINING.add(self.path.resolve())
        return info

    def claim(self) -> None:
        """Lock ``run.lock`` while this process trains the run (until ``finish``, or until the process dies).

        Raises:
            RunDirError: another process holds it (the run trains there, on whichever host), or the file cannot
                be opened for writing.
        """
        if fcntl is None or self.path.resolve() in _HELD:
            return
        try:
            handle = open(self.file(RUN_LOCK), "a")
        except OSError as exc:
            raise RunDirError(f"cannot open {self.file(RUN_LOCK)} to lock the run ({exc.strerror}); resume it as "
                              "the user who trained it, or give yours write access to the file.") from None
        for _ in range(10):  # a reader's probe holds it for a moment
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _HELD[self.path.resolve()] = handle
                return
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    return handle.close()  # a filesystem without locks: run.json's host and pid are all there is
            time.sleep(0.05)
        handle.close()
        info = self.read_run() if self.file(RUN).is_file() else {}
        raise RunDirError(f"{self.path} is being trained by another process (pid {info.get('pid')} on "
                          f"{info.get('host')}); stop it first.")

    def claim_to_resume(self) -> dict[str, Any]:
        """``claim`` the run to resume it and return its ``run.json``; the lock is let go again if it cannot be.

        Raises:
            RunDirError: the run is completed, still trains elsewhere, or has no checkpoint to resume from.
        """
        final = {"completed": "is already completed", "pruned": "was pruned (its sweep stopped it and ranks it so)"}
        completed = f"{self.path} {final['completed']}; use --rerun {self.path} to train its config again."
        if said := final.get(self.read_run().get("status")):  # final: said without the lock (nor write access to it)
            raise RunDirError(completed.replace(final["completed"], said))
        self.claim()  # first: another resume reads nothing here until this one ends
        try:
            info = self.read_run()
            status = effective_status(info, self.path)
            if status in ("completed", "running"):
                raise RunDirError(completed if status == "completed" else f"{self.path} is still running (pid "
                                  f"{info.get('pid')} on {info.get('host')}); stop it first.")  # fmt: skip
            if not self.file(LAST_CHECKPOINT).is_file() or not self.file(LAST_CHECKPOINT_STATE).is_file():
                raise RunDirError(f"{self.path} has no checkpoint to resume from (training.checkpoint was 'none', "
                                  f"or no epoch completed); use --rerun {self.path} to start it again.")  # fmt: skip
            return info
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        _TRAINING.discard(self.path.resolve())
        handle = _HELD.pop(self.path.resolve(), None)
        if handle is not None:
            handle.close()

    def mark_resumed(self, info: dict[str, Any], *, from_epoch: int, argv: list[str], now: datetime) -> None:
        """``run.json`` says running again, here, with a ``resumed`` entry that keeps the time trained so far
        (``active_s``): ``duration_s`` counts training, not the pause before a resume. A killed segment counts up to
        its last checkpoint."""
        last = (info.get("resumed") or [{}])[-1]
        since = datetime.fromisoformat(last.get("at", info["started"]))
        saved = datetime.fromtimestamp(self.file(LAST_CHECKPOINT_STATE).stat().st_mtime)
        active = info.get("duration_s")  # interrupted or failed: finish counted it; killed (crashed): None
        active = active if active is not None else last.get("active_s", 0) + max(0.0, (saved - since).total_seconds())
        entry = {"at": now.isoformat(timespec="seconds"), "from_epoch": from_epoch, "active_s": round(active, 3),
                 "argv": list(argv), "pid": os.getpid(), "host": socket.gethostname()}  # fmt: skip
        self.update_run(status="running", pid=os.getpid(), host=socket.gethostname(), error=None, duration_s=None,
                        resumed=[*info.get("resumed", []), entry], locked=self.path.resolve() in _HELD)  # fmt: skip
        self.since = now
        _TRAINING.add(self.path.resolve())

    def finish(self, status: str, *, now: datetime, error: str | None = None, **extra: Any) -> dict[str, Any]:
        """``run.json`` with its final status; ``duration_s`` is the time trained, over every resume."""
        info = self.read_run()
        last = (info.get("resumed") or [{}])[-1]
        since = self.since or datetime.fromisoformat(last.get("at", info["started"]))
        info.update(
            status=status,
            finished=now.isoformat(timespec="seconds"),
            duration_s=round(last.get("active_s", 0) + (now - since).total_seconds(), 3),
            error=error,
            versions=versions(),
            **extra,
        )
        try:
            self.write_run(info)
        finally:
            self.release()  # run.json still says running if that failed: shown as crashed
        return info

    # -- the other files

    def write_config(self, config_yaml: str) -> None:
        write_text_atomic(self.file(CONFIG), config_yaml)

    def read_config(self) -> dict[str, Any]:
        try:
            return yaml.safe_load(self.file(CONFIG).read_text()) or {}
        except FileNotFoundError:
            raise RunDirError(f"{self.path}: no {CONFIG}; not a complete nnrun run directory.") from None
        except yaml.YAMLError as exc:
            raise RunDirError(f"{self.file(CONFIG)}: corrupt YAML ({first_line(exc)}).") from None

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json_atomic(self.file(METRICS), metrics)

    def read_metrics(self) -> dict[str, Any]:
        return read_json(self.file(METRICS))

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        write_text_atomic(self.file(HISTORY), history_text(rows))

    def read_history(self) -> list[dict[str, Any]]:
        try:
            return parse_history(self.file(HISTORY).read_bytes()).rows()
        except FileNotFoundError:
            return []
        except (ValueError, UnicodeDecodeError) as exc:
            raise RunDirError(f"{self.file(HISTORY)}: corrupt ({exc}).") from None


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: file not found; is {path.parent} an nnrun run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(f"{path}: corrupt JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise RunDirError(f"{path}: expected a JSON object.")
    return data


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OSError, ValueError):
        return False
    return not _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """Whether ``pid`` exited and only waits for its parent to read its exit code (a sweep's ``--jobs`` worker killed
    with ``kill -9`` while the main worker trains): signal 0 still reaches it, but it trains nothing (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def effective_status(info: dict[str, Any], path: str | Path | None = None) -> str:
    """The status to show: 'crashed' for a 'running' run that no process trains, 'diverged' for a 'completed' one
    whose loss became NaN. The ``run.lock`` (at ``path``) of a run trained under it tells, where it can be asked: its
    trainer holds it, on any host (if the shared filesystem's locks work across machines); a live pid beside a free
    lock may be a restarted container's next process (pid 1, say). Else the pid tells on this host; elsewhere, running.
    """
    status = info.get("status", "unknown")
    if status == "completed" and info.get("diverged_epoch"):
        return "diverged"  # trained to its end, or to the epoch its loss became NaN: its model is no use
    if status != "running" or (path is not None and Path(path).resolve() in _TRAINING):
        return status
    free = _lock_free(Path(path)) if path is not None and info.get("locked", True) else None
    if free is not None:
        return "crashed" if free else status
    here = info.get("host") == socket.gethostname()
    return "crashed" if here and not pid_alive(info.get("pid")) else status


def _lock_free(path: Path) -> bool | None:
    """Whether no other process holds the run's lock; None when that cannot be told."""
    if path.resolve() in _HELD:
        return True  # this process holds it (so whoever wrote 'running' is gone); probing would drop it
    if fcntl is None:
        return None
    try:
        handle = open(path / RUN_LOCK)  # read-only: anyone who may read the run may ask
    except OSError:
        return None
    with handle:
        try:
            fcntl.lockf(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            return False if exc.errno in (errno.EACCES, errno.EAGAIN) else None
    return True


def release_all() -> None:
    """Let go of every run this process still holds (a sweep worker after a trial, whatever became of it)."""
    for path in list(_HELD):
        RunDir(path).release()
    _TRAINING.clear()  # those it trained without a lock, too


def open_run(path: str | Path) -> RunDir:
    """Open an existing run directory, or raise a clear error."""
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"run directory {path} not found. `nnrun compare` lists the runs.")
    if not (path / RUN).is_file():
        hint = f"; it is a sweep: `nnrun compare {path}` shows its trials" if (path / SWEEP).is_file() else ""
        raise RunDirError(f"{path} is not an nnrun run directory (no {RUN}){hint}.")
    return RunDir(path)
