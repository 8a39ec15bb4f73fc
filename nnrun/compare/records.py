"""Finding run directories and reading each one's small files into a RunRecord, one row of the table.

Speed is part of the feature: a record reads only ``run.json``, ``config.yaml``,
``metrics.json`` and ``history.csv``, with the standard library and libyaml, and
never imports TensorFlow, numpy or pandas. A thousand runs take well under a
second (``bench/compare_bench.py``).

``best_val_accuracy`` / ``best_val_loss`` are the best values over all epochs
in ``history.csv`` (max accuracy, min loss, each at its own epoch), so they
exist for running, interrupted and failed runs too. ``learning_rate`` is the
rate training recorded in ``run.json`` (``signature.learning_rate``), else the
config's explicit one, else empty.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nnrun import rundir as rd
from nnrun.errors import RunDirError, first_line
from nnrun.history import History, parse_history

try:  # libyaml's parser: several times faster than the pure-Python one
    from yaml import CSafeLoader as _YamlLoader
except ImportError:  # pragma: no cover (PyYAML built without libyaml)
    from yaml import SafeLoader as _YamlLoader

#: The row's own columns, in the order the table shows them.
COLUMNS = (
    "id", "name", "dataset", "status", "epochs", "optimizer", "learning_rate", "batch_size", "layers", "params",
    "best_val_accuracy", "best_val_loss", "test_accuracy", "test_loss", "duration", "started", "error", "path",
)  # fmt: skip
MAX_DEPTH = 3


# ------------------------------------------------------------ finding runs


def find_runs(paths: list[str | Path]) -> list[Path]:
    """Run directories under each path (a runs folder, searched a few levels deep, or one run directory).

    Folders below a runs folder that hold no ``run.json`` and no runs are returned too,
    so that they are listed as unreadable rather than silently skipped.

    Raises:
        RunDirError: a path does not exist.
    """
    found: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw).expanduser()
        if path.name == rd.RUN and path.is_file():
            path = path.parent
        if not path.is_dir():
            what = "is a file, not a folder" if path.exists() else "not found"
            raise RunDirError(f"{path}: {what}. Pass a runs folder or a run directory (default: runs/).")
        runs = [path] if (path / rd.RUN).exists() else list(_scan(path, 0))
        if not runs and any(not name.startswith(".") for name in os.listdir(path)):
            runs = [path]  # a folder with files but no run.json: say so instead of "no runs"
        for run in runs:
            found.setdefault(os.path.realpath(run), run)
    return list(found.values())


def _scan(folder: Path, depth: int) -> Iterator[Path]:
    for entry in sorted(_subfolders(folder), key=lambda e: e.name):
        child = Path(entry.path)
        if os.path.exists(os.path.join(entry.path, rd.RUN)):
            yield child
        elif depth < MAX_DEPTH and _holds_runs(child, depth + 1):
            yield from _scan(child, depth + 1)
        else:
            yield child


def _subfolders(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return [e for e in entries if e.is_dir() and not e.name.startswith((".", "__"))]


def _holds_runs(folder: Path, depth: int) -> bool:
    for entry in _subfolders(folder):
        if os.path.exists(os.path.join(entry.path, rd.RUN)):
            return True
        if depth < MAX_DEPTH and _holds_runs(Path(entry.path), depth + 1):
            return True
    return False


# ------------------------------------------------------------ reading runs


@dataclass
class RunRecord:
    """One row: a run directory's small files, read once."""

    path: Path
    status: str
    info: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: History = field(default_factory=History)
    error: str | None = None  # why it is unreadable, or the run's own error
    problems: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    members: list[RunRecord] = field(default_factory=list)  # a group's runs (compare --group-by)
    _flat: dict[str, Any] | None = None

    @property
    def readable(self) -> bool:
        return self.status != "unreadable"

    @property
    def flat_config(self) -> dict[str, Any]:
        if self._flat is None:
            self._flat = dict(flatten(self.config))
        return self._flat


def read_record(path: Path) -> RunRecord:
    """Read one run directory; never raises: problems become the row's status and notes."""
    try:
        info = json.loads((path / rd.RUN).read_bytes())
    except FileNotFoundError:
        if (path / rd.SWEEP).is_file():  # its trials' runs are listed once they have started
            return _unreadable(path, f"a sweep folder with no trial runs{_sweep_counts(path)}")
        return _unreadable(path, f"not a run directory (no {rd.RUN})")
    except OSError as exc:
        return _unreadable(path, f"cannot read {rd.RUN} ({exc.strerror})")
    except ValueError as exc:  # bad JSON or bad UTF-8
        return _unreadable(path, f"corrupt {rd.RUN} ({first_line(exc)})")
    if not isinstance(info, dict):
        return _unreadable(path, f"corrupt {rd.RUN} (not a JSON object)")
    record = RunRecord(path, str(rd.effective_status(info, path)), info=info, error=info.get("error"))
    # run.json carries the resolved config as JSON (parsed in C, 10x faster than
    # the YAML copy); runs from before that read config.yaml.
    config = info.get("config")
    record.config = config if isinstance(config, dict) else _read_optional(path / rd.CONFIG, record, load_yaml)
    record.metrics = _read_optional(path / rd.METRICS, record, json.loads)
    record.history = _read_optional(path / rd.HISTORY, record, parse_history) or History()
    record.fields = _fields(record)
    return record


def _sweep_counts(path: Path) -> str:
    """`` yet``, or what ``sweep.json`` says of trials that left no run: `` (its trials: 4 invalid, in sweep.json)``."""
    try:
        counts = json.loads((path / rd.SWEEP).read_bytes()).get("counts") or {}
        told = ", ".join(f"{int(n)} {s}" for s, n in counts.items())
    except (OSError, ValueError, AttributeError, TypeError):
        told = ""
    return f" (its trials: {told}, in {rd.SWEEP})" if told else " yet"


def _unreadable(path: Path, reason: str) -> RunRecord:
    fields = {"id": path.name, "status": "unreadable", "error": reason, "path": str(path)}
    return RunRecord(path, "unreadable", error=reason, fields=fields)


def _read_optional(path: Path, record: RunRecord, parse: Any) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # a running or failed run may not have it yet
        return {}
    except OSError as exc:
        record.problems.append(f"{path.name}: cannot read ({exc.strerror})")
        return {}
    try:
        value = parse(data)
    except Exception as exc:  # noqa: BLE001 (JSON, YAML or CSV: a parse error spoils this file, not the run)
        record.problems.append(f"{path.name} is corrupt ({first_line(exc)})")
        return {}
    if not isinstance(value, (dict, History)):
        record.problems.append(f"{path.name} is corrupt (not a mapping)")
        return {}
    return value


def load_yaml(data: bytes) -> Any:
    """``config.yaml`` of a run written before run.json carried the config."""
    return yaml.load(data, Loader=_YamlLoader)


def _fields(record: RunRecord) -> dict[str, Any]:
    info, config, metrics, history = record.info, record.config, record.metrics, record.history
    training = _mapping(config, "training")
    optimizer = training.get("optimizer")
    optimizer = optimizer if isinstance(optimizer, dict) else {"type": optimizer}
    # Only training knows the rate Keras used when the config leaves it unset; a copy of
    # Keras's defaults here would go stale. Older runs did not record it: the config's, if any.
    rate = _mapping(info, "signature").get("learning_rate")
    if rate is None:
        rate = optimizer.get("learning_rate")
    model = _mapping(info, "model")
    dataset = _mapping(config, "dataset")
    test = _mapping(metrics, "test")
    best = _mapping(metrics, "best_validation")
    epochs = info.get("epochs_run", metrics.get("epochs_run"))
    if epochs is None and history:
        epochs = len(history)
    return {
        "id": record.path.name,
        "name": info.get("name"),
        "dataset": info.get("dataset") or dataset.get("name"),
        "status": record.status,
        "epochs": epochs,
        "optimizer": optimizer.get("type"),
        "learning_rate": rate,
        "batch_size": training.get("batch_size"),
        "layers": model.get("layers"),
        "params": model.get("params"),
        "best_val_accuracy": _best(history.get("val_accuracy"), max, best.get("accuracy")),
        "best_val_loss": _best(history.get("val_loss"), min, best.get("loss")),
        "test_accuracy": test.get("accuracy"),
        "test_loss": test.get("loss"),
        "task": _mapping(info, "signature").get("task") or "classification",
        "test_r2": test.get("r2"),
        "test_mae": test.get("mae"),
        "test_rmse": test.get("rmse"),
        "duration": info.get("duration_s"),
        "started": info.get("started"),
        "error": record.error,
        "path": str(record.path),
    }


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    """``data[key]`` when it is a mapping; damaged or older files may hold anything there."""
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _best(values: list[float] | None, pick: Any, fallback: Any) -> Any:
    values = [v for v in values or () if not math.isnan(v)]
    return pick(values) if values else fallback


def flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{'a': {'b': [{'c': 1}]}}`` -> ``('a.b[0].c', 1)``; a list of plain values stays one value."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        for i, value in enumerate(data):
            yield from flatten(value, f"{prefix}[{i}]")
    elif isinstance(data, list):
        if data:  # an empty list adds nothing: [] and a missing list read the same
            yield prefix, tuple(data)
    else:
        yield prefix, data


def load_records(paths: list[str | Path]) -> list[RunRecord]:
    """One record per run directory under ``paths`` (see ``find_runs``)."""
    return [read_record(path) for path in find_runs(paths)]
