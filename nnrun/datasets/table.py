"""Typed CSV tables: a type per column, missing cells, string labels and regression targets.

``read_table`` reads the file through ``datasets.csv.read_rows`` (the one CSV reader) into
a pandas DataFrame of strings and decides, column by column, before anything trains:

- the type: ``numeric`` (every present cell a finite number), ``binary`` (text with two
  distinct values), ``categorical`` (other text), or ``ignore``; ``dataset.columns`` overrides the guess;
- what missing cells (empty, ``NA``, ``NaN``, ``null``, ``?``) become: an error, a dropped
  row, or a value imputed later from the training split (``dataset.missing``);
- the label: sorted class names for classification, numbers for regression.

A table whose features are all numbers with no missing cell stays the plain float32
array the tutorials use. Any other table keeps its raw values (numbers and strings);
the ``encode_columns`` preprocessing step, fitted on the training split, turns them
into numbers. Every problem is one line naming the file and the column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnrun.datasets.csv import column_index, format_number, is_number, read_rows
from nnrun.errors import ConfigError, DataError, did_you_mean

NUMERIC_SHARE = 0.9  # a column at least this much numbers, but not all: text in it is asked about, not guessed
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
#: Losses that make ``task: auto`` a regression (Keras names and aliases).
REGRESSION_LOSSES = frozenset({
    "mse", "mae", "mape", "msle", "huber", "log_cosh", "logcosh", "huber_loss", "mean_squared_error",
    "mean_absolute_error", "mean_absolute_percentage_error", "mean_squared_logarithmic_error",
})  # fmt: skip
#: A categorical column with more distinct values than this gets a warning (each is a one-hot column).
MANY_CATEGORIES = 50
#: A numeric label with more distinct non-integer values than this looks continuous.
CONTINUOUS_LABEL = 20
OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe", ",": "comma"}


def category(cell: Any) -> str:
    """A cell as a category: its text, with a whole number written as a float (``12.0``) read as ``12``."""
    return re.sub(r"^(-?\d+)\.0+$", r"\1", str(cell).strip())


def resolve_task(task: str, loss: str) -> str:
    """``dataset.task``, with ``auto`` decided by the loss."""
    if task != "auto":
        return task
    return "regression" if loss in REGRESSION_LOSSES else "classification"


@dataclass
class Table:
    """A CSV read and typed: raw features, labels, and what each column is."""

    x: np.ndarray  # float32 (rows, features) for a plain numeric table, else object (numbers and strings)
    y: np.ndarray  # int64 class indices, or float32 regression targets
    task: str
    class_names: tuple[str, ...]  # () for regression
    feature_names: tuple[str, ...]
    label_name: str
    label_position: int
    columns: list[dict[str, Any]] = field(default_factory=list)  # name, type, distinct, missing
    typed: bool = False  # x holds raw values for the encode_columns step
    notes: list[str] = field(default_factory=list)
    ignored: tuple[str, ...] = ()  # columns of the file that are neither features nor the label


def read_table(path: str | Path, config: Any, *, loss: str, key: str = "dataset.path") -> Table:
    """Read a CSV as ``config`` (a tabular dataset section) describes it.

    Raises:
        DataError: the file, a column or the label cannot be used; the message names it.
        ConfigError: ``dataset.columns`` names a column the file does not have.
    """
    import pandas as pd

    task = resolve_task(config.task, loss)
    path, rows = read_rows(path, delimiter=config.delimiter, key=key)
    if config.header:
        names, body = [c.strip() for c in rows[0][1]], rows[1:]
    else:
        names, body = [str(i) for i in range(len(rows[0][1]))], rows
    _check_shape(path, names, body, config.delimiter, rows[0][1])
    label_col = column_index(names, config.label, "label", path)
    label = names[label_col]
    features = [names[column_index(names, f, "feature", path)] for f in config.features] if config.features else [
        n for n in names if n != label]  # fmt: skip
    for name, kind in config.columns.items():
        if name not in names:
            raise ConfigError(f"dataset.columns.{name}: {path} has no column '{name}'{did_you_mean(name, names)} "
                              f"Columns: {', '.join(names)}.")
        if name == label:
            raise ConfigError(f"dataset.columns.{name}: '{name}' is the label; its type comes from the task. "
                              "Remove it from dataset.columns.")
    features = [f for f in features if config.columns.get(f) != "ignore"]
    if label in features:
        raise DataError(f"{path}: column '{label}' is both the label and a feature; remove it from dataset.features.")
    if not features:
        raise DataError(f"{path}: no feature columns left; dataset.columns ignores them all.")

    frame = pd.DataFrame([[cell.strip() for cell in row] for _, row in body], columns=names)
    lines = np.array([line for line, _ in body])
    missing = frame[[label, *features]].apply(lambda column: column.str.lower().isin(MISSING))
    notes: list[str] = []
    for name in features:
        if missing[name].all() and not name.strip():  # no header cell either: a trailing delimiter on each line
            where = "the last column" if name == names[-1] else f"column {names.index(name) + 1}"
            raise DataError(f"{path}: {where} has no name and no values (each line ends with {config.delimiter!r}?). "
                            "Remove the extra delimiters, or give the column a name.")
        if missing[name].all():
            raise DataError(f"{path}: column '{name}' is empty: all {len(frame)} cells are missing. "
                            f"Set dataset.columns.{name}: ignore, or fill it.")
    missing_counts = missing.sum()  # as the file has them, before any row is dropped
    keep = _missing_rows(path, missing, lines, label, features, config.missing, notes)
    frame, missing, lines = frame[keep].reset_index(drop=True), missing[keep].reset_index(drop=True), lines[keep]

    columns = [_column(path, frame[name], missing[name], lines, name, config) for name in features]
    for column in columns:
        column["missing"] = int(missing_counts[column["name"]])
    for column in columns:
        if column["distinct"] < 2:
            notes.append(f"column '{column['name']}' holds one value only; it cannot help the model. "
                         f"Set dataset.columns.{column['name']}: ignore.")
        if column["type"] == "categorical" and column["distinct"] > MANY_CATEGORIES:
            notes.append(f"column '{column['name']}' has {column['distinct']} categories: {column['distinct'] + 1} "
                         f"one-hot inputs. If it is an identifier, set dataset.columns.{column['name']}: ignore.")
    y, class_names = _label(path, frame[label], lines, label, task, config.task, loss)
    typed = bool(missing[features].to_numpy().any()) or any(c["type"] in ("categorical", "binary") and not c["numbers"]
                                                            for c in columns) or any(
        config.columns.get(c["name"]) in ("categorical", "binary") for c in columns)  # fmt: skip
    if typed:  # raw cells, None where missing: the encode_columns step parses and encodes them
        x = np.array(frame[features].to_numpy(dtype=object), dtype=object)  # a writable copy
        x[missing[features].to_numpy()] = None
    else:
        x = frame[features].to_numpy(dtype=np.float64).astype(np.float32)
    for column in columns:
        del column["numbers"]
    ignored = tuple(n for n in names if n != label and n not in features)
    return Table(x, y, task, class_names, tuple(features), label, label_col, columns, typed, notes, ignored)


def _check_shape(path: Path, names: list[str], body: list, delimiter: str, first: list[str]) -> None:
    if len(names) == 1:
        for other, word in OTHER_DELIMITERS.items():
            if other != delimiter and other in first[0]:
                raise DataError(f"{path}: one column only ({first[0][:40]!r}), but the line holds {word}s: the file "
                                f"looks {word}-separated. Set dataset.delimiter: {other!r}.")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{path}: the header names column '{duplicates[0]}' twice; every column needs its own name.")
    if not body:
        raise DataError(f"{path}: the file has a header but no rows of data.")
    for line, row in body:
        if len(row) != len(names):
            raise DataError(f"{path}: wrong column count (a ragged row): row {line} has {len(row)} cells, expected "
                            f"{len(names)}. Every row needs the same number of cells; check for a stray delimiter.")


def _missing_rows(path: Path, missing: Any, lines: np.ndarray, label: str, features: list[str], strategy: str,
                  notes: list[str]) -> np.ndarray:
    """The rows to keep; ``error`` raises at the first missing cell, ``drop`` leaves those rows out."""
    any_missing = missing[[label, *features]].to_numpy().any(axis=1)
    if strategy == "drop":
        if any_missing.all():
            raise DataError(f"{path}: every row has a missing cell, so dataset.missing: drop leaves nothing. "
                            "Use missing: impute, or ignore the emptiest columns.")
        if any_missing.any():
            notes.append(f"dropped {int(any_missing.sum())} of {len(lines)} rows with a missing cell "
                         "(dataset.missing: drop).")
        return ~any_missing
    if missing[label].any():
        first = lines[missing[label].to_numpy()][0]
        raise DataError(f"{path}: the label column '{label}' has {int(missing[label].sum())} missing value(s), the "
                        f"first at row {first}. Fill them, or set dataset.missing: drop to leave those rows out.")
    if strategy == "error" and any_missing.any():
        row = int(np.argmax(any_missing))  # the first row with a missing cell, and its first missing column
        name = next(n for n in features if missing[n].iloc[row])
        raise DataError(f"{path}: missing value at row {lines[row]}, column '{name}' ({int(missing[name].sum())} "
                        "in that column). Set dataset.missing: drop or impute, or fix the file.")
    return np.ones(len(lines), dtype=bool)


def _column(path: Path, cells: Any, missing: Any, lines: np.ndarray, name: str, config: Any) -> dict[str, Any]:
    """Infer (or check) one feature column's type."""
    import pandas as pd

    present = cells[~missing]
    numbers = pd.to_numeric(present, errors="coerce")
    all_numbers = not numbers.isna().any()
    distinct = int(present.nunique())
    kind = config.columns.get(name)
    if all_numbers and not np.isfinite(numbers.to_numpy(dtype=np.float64)).all():
        bad = present[~np.isfinite(numbers.to_numpy(dtype=np.float64))]
        raise DataError(f"{path}: column '{name}' has an infinite value {bad.iloc[0]!r} at row "
                        f"{lines[bad.index[0]]}. Fix or drop that row.")
    if kind == "numeric" and not all_numbers:
        bad = present[numbers.isna()]
        raise DataError(f"{path}: column '{name}' is numeric (dataset.columns) but row {lines[bad.index[0]]} has "
                        f"{bad.iloc[0]!r}. Fix the cell, or declare the column categorical.")
    if kind == "binary" and distinct != 2:
        raise DataError(f"{path}: column '{name}' is binary (dataset.columns) but has {distinct} distinct values; "
                        "declare it categorical.")
    if kind is None and not all_numbers and numbers.notna().sum() >= NUMERIC_SHARE * len(present):
        bad = present[numbers.isna()]  # a typo in a column of numbers would turn them all into categories
        raise DataError(f"{path}: column '{name}' holds numbers but {bad.iloc[0]!r} at row {lines[bad.index[0]]} "
                        f"({len(bad)} of {len(present)} cells are not numbers). Fix the cells (an empty cell or NA reads "
                        f"as missing), or declare the column with dataset.columns.{name}: categorical.")
    if kind is None:  # numbers stay numbers (a 0/1 flag too); text with two values is binary
        kind = "numeric" if all_numbers else "binary" if distinct == 2 else "categorical"
    if kind == "categorical" and distinct > config.max_categories:
        raise DataError(f"{path}: column '{name}' has {distinct:,} distinct values in {len(cells):,} rows, more than "
                        f"dataset.max_categories ({config.max_categories}): an identifier? Set "
                        f"dataset.columns.{name}: ignore, or raise max_categories.")
    column = {"name": name, "type": kind, "distinct": distinct, "missing": int(missing.sum()), "numbers": all_numbers}
    if kind == "binary":  # both values are part of the schema, even where the training split sees only one
        column["values"] = sorted({category(v) for v in present.unique()})
    return column


def _label(path: Path, cells: Any, lines: np.ndarray, label: str, task: str, declared: str,
           loss: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class indices and names, or regression targets."""
    import pandas as pd

    numbers = pd.to_numeric(cells, errors="coerce")
    if task == "regression":
        if numbers.isna().any():
            bad = cells[numbers.isna()]
            why = f"training.loss {loss!r} is a regression loss" if declared == "auto" else "dataset.task is regression"
            raise DataError(f"{path}: the label column '{label}' holds text ({bad.iloc[0]!r} at row "
                            f"{lines[bad.index[0]]}) but {why}. Use a classification loss such as "
                            "categorical_crossentropy, or choose a numeric label.")
        values = numbers.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError(f"{path}: the label column '{label}' has an infinite value at row "
                            f"{lines[~np.isfinite(values)][0]}. Fix or drop that row.")
        if len(np.unique(values)) < 2:
            raise DataError(f"{path}: the label column '{label}' is the same number ({values[0]:g}) in every row; "
                            "there is nothing to learn. Check dataset.label.")
        return values.astype(np.float32), ()
    if not numbers.isna().any():
        values = numbers.to_numpy(dtype=np.float64)
        distinct = np.unique(values)
        fractional = distinct[distinct != np.round(distinct)]
        if declared == "auto" and len(fractional) > CONTINUOUS_LABEL:
            raise DataError(f"{path}: the label column '{label}' looks continuous ({len(distinct)} distinct values, "
                            f"{len(fractional)} of them not whole numbers), but training.loss {loss!r} is a "
                            "classification loss. For regression set training.loss: mse and one output unit; if "
                            "these are classes, set dataset.task: classification.")
        class_names = tuple(format_number(v) for v in distinct)
        y = np.searchsorted(distinct, values)
    else:
        distinct = np.unique(cells.to_numpy(dtype=str))
        class_names = tuple(str(v) for v in distinct)
        y = np.searchsorted(distinct, cells.to_numpy(dtype=str))
    if len(class_names) < 2:
        raise DataError(f"{path}: the label column '{label}' has a single class ({class_names[0]}); "
                        "classification needs at least two. Check dataset.label.")
    return y.astype(np.int64), class_names


def column_summary(columns: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """``(column, type, distinct, missing)`` rows for ``nnrun check``."""
    return [(c["name"], c["type"], f"{c['distinct']:,}", f"{c['missing']:,}") for c in columns]


def read_new_rows(path: str | Path, signature: dict[str, Any], *, key: str = "input") -> tuple[np.ndarray, list[str] | None, list[int]]:
    """Rows of a CSV for a trained typed-CSV run: its features by header name, in any order, the label optional.

    Returns the raw feature cells (None where missing), the label cells if the file has the label
    column, and each row's line number.

    Raises:
        DataError: a feature column is missing, a column is unknown to the run, or a row is ragged.
    """
    delimiter = "\t" if Path(path).suffix.lower() == ".tsv" else signature.get("delimiter", ",")
    path, rows = read_rows(path, delimiter=delimiter, key=key)
    features, label = list(signature["feature_names"]), signature.get("label")
    if signature.get("header", True):
        header, body = [c.strip() for c in rows[0][1]], rows[1:]
    else:  # the run's file had no header: columns by position, every column of that file in its order
        width = len(features) + 1 + len(signature.get("ignored_columns", []))
        header, body = [str(i) for i in range(width)], rows
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise DataError(f"{key} {path}: the header names column '{duplicates[0]}' twice; every column needs its own name.")
    absent = [f for f in features if f not in header]
    if absent and len(header) == 1 and len(features) > 1:
        other = next((d for d, word in OTHER_DELIMITERS.items() if d != delimiter and d in rows[0][1][0]), None)
        if other:  # as training says it
            raise DataError(f"{key} {path}: one column only, but the line holds {OTHER_DELIMITERS[other]}s: the file "
                            f"looks {OTHER_DELIMITERS[other]}-separated, and the run read {delimiter!r}-separated "
                            f"files. Save it with {delimiter!r} between the cells.")
    if absent:
        raise DataError(f"{key} {path}: no column '{absent[0]}'; the run needs the columns {', '.join(features)} "
                        f"(in any order; the label '{label}' may be left out), named in a header row.")
    known = {*features, label, *signature.get("ignored_columns", [])}
    unknown = [h for h in header if h not in known]
    if unknown:
        raise DataError(f"{key} {path}: unknown column '{unknown[0]}'{did_you_mean(unknown[0], features)} The run "
                        f"knows {', '.join(features)} and the label '{label}'. Remove it or rename it.")
    if not body:
        raise DataError(f"{key} {path}: a header but no rows of data.")
    for line, row in body:
        if len(row) != len(header):
            raise DataError(f"{key} {path}: row {line} has {len(row)} cells, the header has {len(header)}.")
    positions = [header.index(f) for f in features]
    x = np.array([[None if row[i].strip().lower() in MISSING else row[i].strip() for i in positions]
                  for _, row in body], dtype=object)
    labels = [row[header.index(label)].strip() for _, row in body] if label in header else None
    return x.reshape(len(body), len(features)), labels, [line for line, _ in body]


def read_csv_table(path: str | Path, *, label: str | int, features: list[str | int] | None = None, header: bool = True,
                   delimiter: str = ",", key: str = "dataset.path") -> Table:
    """A numeric CSV as the tutorials read it: float32 features and class labels, every feature a number.

    Raises:
        DataError: as ``read_table``, and for a feature cell that is not a number (naming its row and column).
    """
    from types import SimpleNamespace

    config = SimpleNamespace(label=label, features=features, header=header, delimiter=delimiter, task="classification",
                             columns={}, missing="error", max_categories=1_000_000)
    table = read_table(path, config, loss="categorical_crossentropy", key=key)
    for j, column in enumerate(table.columns):
        cells = table.x[:, j]
        bad = next((i for i, cell in enumerate(cells) if not is_number(cell)), None) if table.typed else None
        if bad is not None:
            raise DataError(f"{Path(path).expanduser()}: non-numeric cell {cells[bad]!r} in column '{column['name']}' "
                            f"(data row {bad + 1}). Every feature cell must be a number; fix or drop that row.")
    return table
