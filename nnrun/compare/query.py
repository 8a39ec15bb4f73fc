"""Which runs, which columns, in which order: keys, lookup, filters, sorting, changed keys, compare_runs.

Column values come from these places, in this order, so ``--sort``,
``--filter`` and ``--columns`` all take the same keys:

1. the row's columns (``COLUMNS``), also spelled with dots (``test.accuracy``);
2. ``metrics.json`` paths: ``train.loss``, ``validation.accuracy``, ``best_validation.loss``, ``best_epoch``;
3. config keys: ``training.batch_size``, ``model.layers[0].units`` (or ``model.layers.0.units``);
4. ``run.json`` keys: ``host``, ``smoke``, ``git_commit``...
"""

from __future__ import annotations

import math
import operator
import re
import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.compare.records import COLUMNS, RunRecord, load_records
from nnrun.errors import ConfigError, RunDirError, did_you_mean

DEFAULT_COLUMNS = COLUMNS[:16]
LIST_COLUMNS = ("id", "dataset", "status", "epochs", "best_val_accuracy", "test_accuracy", "duration", "started")
CHANGED_AROUND = (("id", "status"), ("best_val_accuracy", "best_val_loss", "test_accuracy", "test_loss"))
#: Config keys that name or place a run rather than change what it learns.
NOT_HYPERPARAMETERS = ("run.name", "run.runs_dir")
ALIASES = {"val_accuracy": "best_val_accuracy", "val_loss": "best_val_loss", "lr": "learning_rate",
           "epochs_run": "epochs", "duration_s": "duration", "parameters": "params"}  # fmt: skip
METRIC_SECTIONS = ("train", "validation", "best_validation", "test")
CONFIG_SECTIONS = ("dataset", "preprocessing", "model", "training", "run")
#: Words of metric names (lower case, without underscores) where higher is better, and where lower is.
HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall", "f1", "fbeta", "r2", "cosinesimilarity", "correlation",
                    "iou", "truepositives", "truenegatives", "sensitivity", "specificity")  # fmt: skip
LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "mape", "msle", "hinge", "crossentropy", "divergence", "poisson",
                   "logcosh", "huber", "kld", "falsepositives", "falsenegatives")  # fmt: skip
#: Regression runs show these instead of the accuracy columns (beside them in a mixed set of runs).
REGRESSION_COLUMNS = {"best_val_accuracy": (), "test_accuracy": (), "test_loss": ("test_loss", "test_r2", "test_mae")}


# ------------------------------------------------------------------ keys


ABSENT = object()


def canonical(key: str) -> str:
    """The column a key names, if it names one (``test.accuracy`` -> ``test_accuracy``), else the key."""
    key = ALIASES.get(key.strip(), key.strip())
    underscored = key.replace(".", "_")
    if key not in COLUMNS and ALIASES.get(underscored, underscored) in COLUMNS:
        key = ALIASES.get(underscored, underscored)
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", key)  # model.layers.0.units -> model.layers[0].units


def lookup(record: RunRecord, key: str) -> Any:
    """The value of ``key`` (already ``canonical``) for one run, or ``ABSENT``."""
    if key in record.fields:
        return record.fields[key]
    head, _, rest = key.partition(".")
    if head in METRIC_SECTIONS and isinstance(record.metrics.get(head), dict):
        return record.metrics[head].get(rest, ABSENT)
    if key in ("best_epoch", "epochs_run", "diverged_epoch") and key in record.metrics:
        return record.metrics[key]
    if key in record.flat_config:
        return record.flat_config[key]
    if key in record.info and not isinstance(record.info[key], (dict, list)):
        return record.info[key]
    return ABSENT


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
    if name in COLUMNS or any(lookup(r, name) is not ABSENT for r in records):
        return name
    keys = known_keys(records)
    raise ConfigError(
        f"{option} {(given or key)!r}: no run has the key {key!r}{did_you_mean(name, keys)} "
        f"Columns: {', '.join(COLUMNS)}; also {rd.METRICS} paths (test.loss), config keys "
        f"(training.batch_size) and {rd.RUN} keys (host)."
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
        if actual is ABSENT or (actual is None and self.op not in ("=", "==", "!=")):
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
    return higher_is_better(key) is True


def higher_is_better(key: str) -> bool | None:
    """True for a metric where higher is better (accuracy, AUC, R², cosine similarity...), False where lower is (loss,
    errors, crossentropy...), None for one nnrun cannot tell."""
    name = key.lower().rpartition(".")[2].removeprefix("val_")  # Keras's short names: acc, ce, bce...
    if name in ("acc", "ce", "bce", "cce", "scce"):
        return name == "acc"
    key = key.lower().replace("_", "")
    return True if any(w in key for w in HIGHER_IS_BETTER) else False if any(w in key for w in LOWER_IS_BETTER) else None


def sort_records(records: list[RunRecord], key: str, descending: bool | None = None) -> list[RunRecord]:
    """Sort by ``key``; runs without a value go last whichever the direction."""
    descending = default_descending(key) if descending is None else descending
    values = [(lookup(r, key), r) for r in records]
    missing = [r for v, r in values if _absent(v)]
    present = [(v, r) for v, r in values if not _absent(v)]
    numeric = all(number(v) is not None for v, _ in present)
    present.sort(key=lambda item: number(item[0]) if numeric else text_of(item[0]), reverse=descending)
    return [r for _, r in present] + missing


def _absent(value: Any) -> bool:
    return value is ABSENT or value is None or (isinstance(value, float) and math.isnan(value))


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
        return None if value is ABSENT else value


def _for_tasks(columns: list[str], records: list[Any]) -> list[str]:
    """Default columns for the runs' tasks: regression metrics where any run is a regression, no accuracy where all are."""
    tasks = {r.fields.get("task") for r in records if r.readable}
    if "regression" not in tasks:
        return columns
    out: list[str] = []
    for column in columns:
        if column not in REGRESSION_COLUMNS:
            out.append(column)
        elif tasks == {"regression"}:
            out.extend(REGRESSION_COLUMNS[column])
        else:
            out.extend([column] + [c for c in REGRESSION_COLUMNS[column] if c != column])
    return list(dict.fromkeys(out))


class MeanStd(float):
    """A group's mean (the float itself, so it sorts and compares as one), with ``std`` (n - 1) and ``n``."""

    def __new__(cls, values: list[float]) -> MeanStd:
        mean = super().__new__(cls, statistics.fmean(values))
        finite = all(map(math.isfinite, values))  # inf: a loss that overflowed (statistics.stdev raises on it)
        mean.std = None if len(values) < 2 else statistics.stdev(values) if finite else math.nan
        mean.n = len(values)
        return mean

    def __str__(self) -> str:
        return f"{float(self)!r}" + (f" ± {self.std!r}" if self.std is not None else "")


GROUPED_COLUMNS = ("status", "epochs", "best_val_accuracy", "best_val_loss", "test_accuracy", "test_loss", "duration")


def group_records(records: list[RunRecord], keys: list[str], columns: list[str]) -> list[RunRecord]:
    """One row per distinct value of ``keys``: ``runs``, the statuses, and each column's mean ± std.

    A column whose values are all numbers becomes a ``MeanStd``; one with a single distinct value keeps
    it; any other is left empty. Unreadable runs stay out of the groups.
    """
    groups: dict[tuple[Any, ...], list[RunRecord]] = {}
    for record in records:
        if record.readable:
            groups.setdefault(tuple(_group_key(_value(record, k)) for k in keys), []).append(record)
    rows = []
    for members in groups.values():
        label = [text_of(_value(members[0], k)) for k in keys]
        counts: dict[str, int] = {}
        for member in members:
            counts[member.status] = counts.get(member.status, 0) + 1
        status = next(iter(counts)) if len(counts) == 1 else ", ".join(f"{n} {s}" for s, n in counts.items())
        fields: dict[str, Any] = {k: _value(members[0], k) for k in keys} | {"runs": len(members), "status": status}
        for column in columns:
            if column in fields:
                continue
            present = [v for v in (_value(m, column) for m in members) if not _absent(v)]
            numbers = [number(v) for v in present]
            if present and None not in numbers and column not in ("started", "id"):
                fields[column] = MeanStd(numbers)
            elif len({text_of(v) for v in present}) == 1:
                fields[column] = present[0]
        rows.append(RunRecord(Path(" ".join(label)), status, fields=fields, members=members))
    return rows


def _value(record: RunRecord, key: str) -> Any:
    value = lookup(record, key)
    return None if value is ABSENT else value


def _group_key(value: Any) -> tuple[str, Any]:
    """What puts runs in one group: 0 and 0.0 are one value, as in pandas' groupby; 0.5 and "0.5" are two."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "number", float(value)
    return type(value).__name__, text_of(value)


def compare_runs(paths: list[str | Path], *, sort: str | None = None, descending: bool | None = None,
                 filters: list[str] = (), only_changed: bool = False, columns: list[str] = (),
                 default_columns: tuple[str, ...] = DEFAULT_COLUMNS, group_by: list[str] | None = None,
                 records: list[RunRecord] | None = None) -> Comparison:
    """Read, filter and sort the runs under ``paths`` and choose the columns.

    Args:
        records: the runs, already read (``paths`` is then not read again).
        columns: keys to show (comma-separated items allowed); items all starting
            with ``+`` are added to the defaults.
        group_by: keys (comma-separated items allowed) whose values make a group: one row per
            group with the number of runs and mean ± std of every numeric column.

    Raises:
        RunDirError: a path does not exist.
        ConfigError: a bad filter, or a sort or column key that no run has.
    """
    records = load_records(paths) if records is None else records
    chosen_filters = [parse_filter(f, records) for f in filters]
    shown = [r for r in records if all(f.matches(r) for f in chosen_filters)]
    if group_by and only_changed:  # it was ignored: each group's row has the keys it is grouped by
        raise ConfigError("--only-changed lists the config keys whose values differ from run to run; with --group-by, "
                          "name the keys to see with --columns instead, or drop --group-by.")
    if group_by:
        return _grouped(records, shown, group_by, sort, descending, columns)
    if sort:
        shown = sort_records(shown, check_key(sort, records, "--sort"), descending)
    else:  # run ids start with their start time: chronological, unreadable folders last
        shown.sort(key=lambda r: (not r.readable, r.path.name))
    requested = [c for item in columns for c in item.split(",") if c.strip()]
    extra = [c.lstrip("+") for c in requested] if requested and all(c.strip().startswith("+") for c in requested) else []
    base = list(default_columns) if (extra or not requested) else requested
    head, tail = CHANGED_AROUND
    if not requested or extra:
        base, tail = _for_tasks(base, shown), _for_tasks(list(tail), shown)
    chosen = [check_key(c, records, "--columns") for c in base + extra]
    notes = []
    if only_changed:
        changed = changed_keys(shown)
        chosen = list(dict.fromkeys((chosen if requested else list(head)) + changed + ([] if requested else list(tail))))
        if not changed:
            notes.append(f"all {len([r for r in shown if r.readable])} readable runs share the same config.")
    for record in shown:
        if not record.readable:
            notes.append(f"{record.path}: unreadable: {record.error}.")
        notes.extend(f"{record.path.name}: {problem}." for problem in record.problems)
    return Comparison(chosen, shown, len(records), notes)


def without_replaced_attempts(records: list[RunRecord], sweep_dir: Path, notes: list[str]) -> list[RunRecord]:
    """``records`` less the runs in ``sweep_dir`` of trial attempts that a retry replaced (``sweep.json`` names them),
    as the sweep's own table leaves them out; a note for each thing done."""
    if not (sweep_dir / rd.SWEEP).is_file():
        return records
    from nnrun.sweep.state import read_state  # no Optuna

    try:
        replaced = {d for t in read_state(sweep_dir).trials for d in t.previous_run_dirs}
    except RunDirError as exc:
        notes.append(f"{exc} Every run of each trial is counted.")
        return records
    if left := [r for r in records if r.path.parent == sweep_dir and r.path.name in replaced]:
        notes.append(f"left out {len(left)} run(s) of earlier attempts that a retry replaced "
                     f"({', '.join(r.path.name for r in left)}), as the sweep does.")  # fmt: skip
    return [r for r in records if r not in left]


def _grouped(records: list[RunRecord], shown: list[RunRecord], group_by: list[str], sort: str | None,
             descending: bool | None, columns: list[str]) -> Comparison:
    keys = [check_key(k, records, "--group-by") for item in group_by for k in item.split(",") if k.strip()]
    sweeps = sorted({r.path.parent for r in shown if "trial" in keys and not _absent(_value(r, "trial"))})
    if len(sweeps) > 1:  # trial 1 of one sweep is not trial 1 of another
        raise ConfigError(f"--group-by trial: these runs come from {len(sweeps)} sweeps ({', '.join(s.name for s in sweeps[:3])}"
                          f"{', ...' * (len(sweeps) > 3)}), whose trial numbers repeat; compare one sweep folder at "
                          f"a time, e.g. nnrun compare {shlex.quote(str(sweeps[0]))} --group-by trial.")  # fmt: skip
    notes = [f"{r.path}: unreadable: {r.error}." for r in shown if not r.readable]
    # A trial's mean is over its last attempt's seeds, as sweep.json's; a key's over the trials' last attempts.
    for folder in sorted({r.path.parent for r in shown if (r.path.parent / rd.SWEEP).is_file()}):
        shown = without_replaced_attempts(shown, folder, notes)
    if only := [c.strip() for item in columns for c in item.split(",") if c.strip()]:
        chosen = [check_key(c.lstrip("+"), records, "--columns") for c in only]
        chosen = list(GROUPED_COLUMNS) + chosen if all(c.startswith("+") for c in only) else chosen
    else:
        chosen = _for_tasks(list(GROUPED_COLUMNS), shown)
    chosen = list(dict.fromkeys(keys + ["runs"] + [c for c in chosen if c not in keys]))
    by = None if not sort else "runs" if sort.strip() == "runs" else check_key(sort, records, "--sort")
    rows = group_records(shown, keys, [*chosen, *([by] if by and by not in chosen else [])])  # sorted by, not shown
    if by:
        rows = sort_records(rows, by, descending)
    else:  # by the groups' values, as pandas' groupby: trial 1, 2, ...; numbers by size
        rows.sort(key=lambda row: [(number(v) is None, number(v) or 0, text_of(v)) for v in map(row.fields.get, keys)])
    notes.append("grouped: numbers are the mean ± standard deviation (n - 1) of each group's runs.")
    return Comparison(chosen, rows, len(records), notes)
