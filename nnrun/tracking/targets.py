"""Before MLflow: which runs and sweeps to sync, where to, and whether that server answers.

Nothing here imports MLflow (``client.py`` does, after these checks), so a path that is not a run and a
server that does not answer are each one line within seconds, with or without MLflow installed.
"""

from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.compare.records import find_runs
from nnrun.errors import ConfigError, NnrunError, RunDirError, first_line
from nnrun.sweep.state import read_state

#: MLflow's own default since 3.7, which `mlflow ui` opens too. A folder store (./mlruns) is refused by
#: MLflow 3.7+ unless MLFLOW_ALLOW_FILE_STORE=true; its artefacts still go to ./mlruns.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "nnrun"
INSTALL_HINT = "pip install 'nnrun[mlflow]' (or: pip install 'mlflow>=3.0')"
#: How long a tracking server may take to answer the first request before nnrun gives up.
PROBE_TIMEOUT_S = 5
#: MLflow retries a failing request for about 4 minutes by default (7 retries, backoff factor 2, 120 s
#: timeout); during a sync a server that goes away fails it within seconds instead. Variables the user set win.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


@dataclass
class Target:
    """Something to sync: one run directory, or a sweep folder with its trials."""

    kind: str  # "run" or "sweep"
    path: Path


def resolve_tracking_uri(tracking_uri: str | None) -> str:
    """``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` in this folder."""
    return tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def find_targets(paths: list[str | Path]) -> tuple[list[Target], list[str]]:
    """The runs and sweeps under ``paths`` (run directories, sweep folders or runs folders), and notes.

    A run inside a sweep folder is synced with its sweep. Folders below a runs folder that are not
    runs, or whose run.json is corrupt, are skipped with a note; a path given that holds no run at
    all, or is itself a corrupt run, is an error.

    Raises:
        RunDirError: a path does not exist or holds no run or sweep, or its run.json / sweep.json is corrupt.
    """
    targets: dict[str, Target] = {}
    notes: list[str] = []

    def add(kind: str, path: Path) -> None:
        targets.setdefault(os.path.realpath(path), Target(kind, path))

    for raw in paths:
        path = Path(raw).expanduser()
        if path.name in (rd.RUN, rd.SWEEP) and path.is_file():
            path = path.parent
        if not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "not found"
            raise RunDirError(f"{path}: {what}. Pass a run directory, a sweep folder (runs/sweep-...) or a runs folder.")
        if (path / rd.SWEEP).is_file():
            read_state(path)
            add("sweep", path)
        elif (path / rd.RUN).is_file():
            rd.read_json(path / rd.RUN)
            add("run", path)
        elif not _scan(path, add, notes):
            raise RunDirError(f"{path} is not an nnrun run directory or sweep (no {rd.RUN} or {rd.SWEEP} in it or "
                              "below). Pass a run directory, a sweep folder (runs/sweep-...) or a runs folder.")
    sweeps = {os.path.realpath(t.path) for t in targets.values() if t.kind == "sweep"}
    kept = [t for t in targets.values() if t.kind == "sweep" or os.path.realpath(t.path.parent) not in sweeps]
    return kept, notes


def _scan(folder: Path, add: Callable[[str, Path], None], notes: list[str]) -> int:
    found = 0
    for path in find_runs([folder]):
        if path != folder and (path.parent / rd.SWEEP).is_file():
            path, kind = path.parent, "sweep"
        elif (path / rd.SWEEP).is_file():
            kind = "sweep"
        elif (path / rd.RUN).is_file():
            kind = "run"
        else:
            notes.append(f"skipped {path}: not a run directory (no {rd.RUN})")
            continue
        try:
            read_state(path) if kind == "sweep" else rd.read_json(path / rd.RUN)
        except RunDirError as exc:
            notes.append(f"skipped {path}: {exc}")
            continue
        add(kind, path)
        found += 1
    return found


def check_reachable(tracking_uri: str, timeout: float | None = None) -> None:
    """For an http(s) tracking URI: one request that must get an answer (any HTTP status) within ``timeout`` s
    (default: ``PROBE_TIMEOUT_S``).

    Raises:
        NnrunError: nothing answers there (refused, unknown host, or silent past the timeout).
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    timeout = PROBE_TIMEOUT_S if timeout is None else timeout
    try:
        with urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # it answered: a proxy, or a server that wants a login, is still reachable
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            return  # it answered; MLflow's own TLS settings decide the rest
        reason = exc.reason
    except OSError as exc:  # a timeout while reading, a reset connection
        reason = exc
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        why = f"no answer within {timeout:g} s"
    elif isinstance(reason, OSError) and reason.strerror:
        why = reason.strerror.lower()
    else:
        why = first_line(reason) if isinstance(reason, BaseException) else str(reason)
    raise NnrunError(f"MLflow tracking server {tracking_uri} is unreachable ({why}). Start it (mlflow server "
                     "--host 127.0.0.1 --port 5000), check --tracking-uri / $MLFLOW_TRACKING_URI, or leave both unset "
                     f"to write to {DEFAULT_TRACKING_URI}.")


def import_mlflow() -> Any:
    """The ``mlflow`` module; ConfigError with the install hint when it is missing."""
    try:
        import mlflow
    except ImportError:
        raise ConfigError(f"nnrun mlflow needs MLflow, which is not installed; install it with: {INSTALL_HINT}.") from None
    return mlflow


@contextmanager
def http_limits() -> Iterator[None]:
    """MLflow's HTTP retry and timeout variables set to fail fast, unless the user set them; restored after."""
    added = {k: v for k, v in HTTP_LIMITS.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
