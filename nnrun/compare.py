"""Compare runs side by side: read run directories' small files into rows, filter, sort, format.

Speed is part of the feature: this module reads only ``run.json``,
``config.yaml``, ``metrics.json`` and ``history.csv`` with the standard
library and libyaml, and never imports TensorFlow, numpy or pandas. A
thousand runs take well under a second (``bench/compare_bench.py``).

Column values come from these places, in this order, so ``--sort``,
``--filter`` and ``--columns`` all take the same keys:

1. the row's columns (``COLUMNS``), also spelled with dots (``test.accuracy``);
2. ``metrics.json`` paths: ``train.loss``, ``validation.accuracy``, ``best_validation.loss``, ``best_epoch``;
3. config keys: ``training.batch_size``, ``model.layers[0].units`` (or ``model.layers.0.units``);
4. ``run.json`` keys: ``host``, ``smoke``, ``git_commit``...

``best_val_accuracy`` / ``best_val_loss`` are the best values over all epochs
in ``history.csv`` (max accuracy, min loss, each at its own epoch), so they
exist for running, interrupted and failed runs too.
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nnrun import rundir as rd
from nnrun.errors import ConfigError, RunDirError, did_you_mean, first_line

try:  # libyaml's parser: several times faster than the pure-Python one
    from yaml import CSafeLoader as _YamlLoader
except ImportError:  # pragma: no cover (PyYAML built without libyaml)
    from yaml import SafeLoader as _YamlLoader

COLUMNS = (
    "id", "name", "dataset", "status", "epochs", "optimizer", "learning_rate", "batch_size", "layers", "params",
    "best_val_accuracy", "best_val_loss", "test_accuracy", "test_loss", "duration", "started", "error", "path",
)  # fmt: skip
DEFAULT_COLUMNS = COLUMNS[:16]
LIST_COLUMNS = ("id", "dataset", "status", "epochs", "best_val_accuracy", "test_accuracy", "duration", "started")
CHANGED_AROUND = (("id", "status"), ("best_val_accuracy", "best_val_loss", "test_accuracy", "test_loss"))
#: Config keys that name or place a run rather than change what it learns.
NOT_HYPERPARAMETERS = ("run.name", "run.runs_dir")
ALIASES = {"val_accuracy": "best_val_accuracy", "val_loss": "best_val_loss", "lr": "learning_rate",
           "epochs_run": "epochs", "duration_s": "duration", "parameters": "params"}  # fmt: skip
METRIC_SECTIONS = ("train", "validation", "best_validation", "test")
CONFIG_SECTIONS = ("dataset", "preprocessing", "model", "training", "run")
#: Keras's default learning rates, for configs that leave ``learning_rate`` unset (no TensorFlow import).
DEFAULT_LEARNING_RATES = {
    "sgd": 0.01, "adam": 0.001, "adamw": 0.001, "rmsprop": 0.001, "adagrad": 0.001, "adadelta": 0.001,
    "adamax": 0.001, "nadam": 0.001, "ftrl": 0.001, "lion": 0.001, "lamb": 0.001, "adafactor": 0.001,
    "muon": 0.001, "schedulefreeadamw": 0.0025,
}  # fmt: skip
HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall", "f1")
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
    history: rd.History = field(default_factory=lambda: rd.History())
    error: str | None = None  # why it is unreadable, or the run's own error
    problems: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
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
        return _unreadable(path, f"not a run directory (no {rd.RUN})")
    except OSError as exc:
        return _unreadable(path, f"cannot read {rd.RUN} ({exc.strerror})")
    except ValueError as exc:  # bad JSON or bad UTF-8
        return _unreadable(path, f"corrupt {rd.RUN} ({first_line(exc)})")
    if not isinstance(info, dict):
        return _unreadable(path, f"corrupt {rd.RUN} (not a JSON object)")
    record = RunRecord(path, str(rd.effective_status(info)), info=info, error=info.get("error"))
    # run.json carries the resolved config as JSON (parsed in C, 10x faster than
    # the YAML copy); runs from before that read config.yaml.
    config = info.get("config")
    record.config = config if isinstance(config, dict) else _read_optional(path / rd.CONFIG, record, load_yaml)
    record.metrics = _read_optional(path / rd.METRICS, record, json.loads)
    record.history = _read_optional(path / rd.HISTORY, record, rd.parse_history) or rd.History()
    record.fields = _fields(record)
    return record


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
    if not isinstance(value, (dict, rd.History)):
        record.problems.append(f"{path.name} is corrupt (not a mapping)")
        return {}
    return value


def load_yaml(data: bytes) -> Any:
    """``config.yaml`` of a run written before run.json carried the config."""
    return yaml.load(data, Loader=_YamlLoader)


def _fields(record: RunRecord) -> dict[str, Any]:
    info, config, metrics, history = record.info, record.config, record.metrics, record.history
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    optimizer = training.get("optimizer")
    optimizer = optimizer if isinstance(optimizer, dict) else {"type": optimizer}
    opt_type = optimizer.get("type")
    rate = optimizer.get("learning_rate")
    if rate is None and isinstance(opt_type, str):
        rate = DEFAULT_LEARNING_RATES.get(opt_type.lower())
    model = info.get("model") if isinstance(info.get("model"), dict) else {}
    dataset = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    best = metrics.get("best_validation") if isinstance(metrics.get("best_validation"), dict) else {}
    epochs = info.get("epochs_run", metrics.get("epochs_run"))
    if epochs is None and history:
        epochs = len(history)
    return {
        "id": record.path.name,
        "name": info.get("name"),
        "dataset": info.get("dataset") or dataset.get("name"),
        "status": record.status,
        "epochs": epochs,
        "optimizer": opt_type,
        "learning_rate": rate,
        "batch_size": training.get("batch_size"),
        "layers": model.get("layers"),
        "params": model.get("params"),
        "best_val_accuracy": _best(history.get("val_accuracy"), max, best.get("accuracy")),
        "best_val_loss": _best(history.get("val_loss"), min, best.get("loss")),
        "test_accuracy": test.get("accuracy"),
        "test_loss": test.get("loss"),
        "duration": info.get("duration_s"),
        "started": info.get("started"),
        "error": record.error,
        "path": str(record.path),
    }


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
    return [read_record(path) for path in find_runs(paths)]


# ------------------------------------------------------------------ keys


_MISSING = object()


def canonical(key: str) -> str:
    """The column a key names, if it names one (``test.accuracy`` -> ``test_accuracy``), else the key."""
    key = ALIASES.get(key.strip(), key.strip())
    underscored = key.replace(".", "_")
    if key not in COLUMNS and ALIASES.get(underscored, underscored) in COLUMNS:
        key = ALIASES.get(underscored, underscored)
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)  # model.layers.0.units -> model.layers[0].units


def lookup(record: RunRecord, key: str) -> Any:
    """The value of ``key`` (already ``canonical``) for one run, or ``_MISSING``."""
    if key in record.fields:
        return record.fields[key]
    head, _, rest = key.partition(".")
    if head in METRIC_SECTIONS and isinstance(record.metrics.get(head), dict):
        return record.metrics[head].get(rest, _MISSING)
    if key in ("best_epoch", "epochs_run") and key in record.metrics:
        return record.metrics[key]
    if key in record.flat_config:
        return record.flat_config[key]
    if key in record.info and not isinstance(record.info[key], (dict, list)):
        return record.info[key]
    return _MISSING


def known_keys(records: list[RunRecord]) -> list[str]:
    keys = list(COLUMNS)
    for record in records:
        for section in METRIC_SECTIONS:
            keys.extend(f"{section}.{k}" for k in (record.metrics.get(section) or {}))
        keys.extend(record.flat_config)
        keys.extend(k for k, v in record.info.items() if not isinstance(v, (dict, list)))
    return list(dict.fromkeys(keys))


def check_key(key: str, records: list[RunRecord], option: str, given: str | None = None) -> str:
    """Canonical form of ``key``; ConfigError if no run has it (``given``: the option's whole value)."""
    name = canonical(key)
    if name in COLUMNS or any(lookup(r, name) is not _MISSING for r in records):
        return name
    keys = known_keys(records)
    raise ConfigError(
        f"{option} {(given or key)!r}: no run has the key {key!r}{did_you_mean(name, keys)} "
        f"Columns: {', '.join(COLUMNS)}; also metrics.json paths (test.loss), config keys "
        "(training.batch_size) and run.json keys (host)."
    )


# --------------------------------------------------------- filter and sort


_FILTER = re.compile(r"^\s*([^=!<>~\s]+)\s*(==|!=|>=|<=|=|>|<|~)\s*(.*?)\s*$")


_OPERATORS = {"=": operator.eq, "==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
              "<": operator.lt, "<=": operator.le}  # fmt: skip


@dataclass(frozen=True)
class Filter:
    """``KEY OP VALUE``: numbers compare as numbers, anything else as text (ISO times sort as text too).

    A run without the key matches only ``!=``; ``~`` is a case-insensitive "contains".
    """

    key: str
    op: str
    value: str

    def matches(self, record: RunRecord) -> bool:
        actual = lookup(record, self.key)
        if actual is _MISSING or (actual is None and self.op not in ("=", "==", "!=")):
            return self.op == "!="
        if self.op == "~":
            return self.value.lower() in text_of(actual).lower()
        left, right = number(actual), number(self.value)
        if left is not None and right is not None:
            return _OPERATORS[self.op](left, right)
        return _OPERATORS[self.op](text_of(actual), self.value)  # None reads as 'null'


def parse_filter(text: str, records: list[RunRecord]) -> Filter:
    """``test.accuracy>0.9`` -> Filter; ConfigError for bad syntax or a key no run has."""
    match = _FILTER.match(text)
    if not match or not match.group(3):
        raise ConfigError(
            f"--filter {text!r}: expected KEY OP VALUE with OP one of = != > >= < <= ~ (contains), "
            "e.g. --filter test.accuracy>0.9 or --filter dataset=mnist."
        )
    key, op, value = match.groups()
    return Filter(check_key(key, records, "--filter", text), op, value.strip("'\""))


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "null" if value is None else str(value)


def default_descending(key: str) -> bool:
    """Accuracy-like columns sort best first (descending); loss and everything else ascending."""
    return any(word in key.lower() for word in HIGHER_IS_BETTER)


def sort_records(records: list[RunRecord], key: str, descending: bool | None = None) -> list[RunRecord]:
    """Sort by ``key``; runs without a value go last whichever the direction."""
    descending = default_descending(key) if descending is None else descending
    present = [(lookup(r, key), r) for r in records]
    missing = [r for v, r in present if v is _MISSING or v is None or (isinstance(v, float) and math.isnan(v))]
    present = [(v, r) for v, r in present if not (v is _MISSING or v is None or (isinstance(v, float) and math.isnan(v)))]
    numeric = all(number(v) is not None for v, _ in present)
    present.sort(key=lambda item: number(item[0]) if numeric else text_of(item[0]), reverse=descending)
    return [r for _, r in present] + missing


def changed_keys(records: list[RunRecord]) -> list[str]:
    """Config keys whose values differ between the runs (a key missing in some runs differs)."""
    readable = [r for r in records if r.readable and r.config]
    keys = list(dict.fromkeys(k for r in readable for k in r.flat_config))
    # A key set to null and a key left out (another dataset type's field) read the same.
    changed = [
        k for k in keys
        if k not in NOT_HYPERPARAMETERS and len({repr(r.flat_config.get(k)) for r in readable}) > 1
    ]  # fmt: skip
    # Group by config section, then by the item a key belongs to (model.layers[0]), in order of appearance.
    sections = {name: i for i, name in enumerate(CONFIG_SECTIONS)}
    parents = list(dict.fromkeys(k.rpartition(".")[0] for k in keys))
    return sorted(changed, key=lambda k: (sections.get(k.split(".")[0].split("[")[0], len(sections)),
                                          parents.index(k.rpartition(".")[0])))  # fmt: skip


# ------------------------------------------------------------------ compare


@dataclass
class Comparison:
    """The rows and columns to show, and notes for below the table."""

    columns: list[str]
    records: list[RunRecord]
    total: int
    notes: list[str] = field(default_factory=list)

    def value(self, record: RunRecord, column: str) -> Any:
        value = lookup(record, column)
        if record.status == "unreadable" and column == "id":
            return record.path.name
        return None if value is _MISSING else value


def compare_runs(paths: list[str | Path], *, sort: str | None = None, descending: bool | None = None,
                 filters: list[str] = (), only_changed: bool = False, columns: list[str] = (),
                 default_columns: tuple[str, ...] = DEFAULT_COLUMNS) -> Comparison:
    """Read, filter and sort the runs under ``paths`` and choose the columns.

    Args:
        columns: keys to show (comma-separated items allowed); items all starting
            with ``+`` are added to the defaults.

    Raises:
        RunDirError: a path does not exist.
        ConfigError: a bad filter, or a sort or column key that no run has.
    """
    records = load_records(paths)
    chosen_filters = [parse_filter(f, records) for f in filters]
    shown = [r for r in records if all(f.matches(r) for f in chosen_filters)]
    if sort:
        shown = sort_records(shown, check_key(sort, records, "--sort"), descending)
    else:  # run ids start with their start time: chronological, unreadable folders last
        shown.sort(key=lambda r: (not r.readable, r.path.name))
    requested = [c for item in columns for c in item.split(",") if c.strip()]
    extra = [c.lstrip("+") for c in requested] if requested and all(c.strip().startswith("+") for c in requested) else []
    base = list(default_columns) if (extra or not requested) else requested
    chosen = [check_key(c, records, "--columns") for c in base + extra]
    notes = []
    if only_changed:
        changed = changed_keys(shown)
        head, tail = CHANGED_AROUND
        chosen = list(dict.fromkeys((chosen if requested else list(head)) + changed + ([] if requested else list(tail))))
        if not changed:
            notes.append(f"all {len([r for r in shown if r.readable])} readable runs share the same config.")
    for record in shown:
        if not record.readable:
            notes.append(f"{record.path}: unreadable: {record.error}.")
        notes.extend(f"{record.path.name}: {problem}." for problem in record.problems)
    return Comparison(chosen, shown, len(records), notes)
