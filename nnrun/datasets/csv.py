"""CSV files: the one reader, for training data and for new rows to predict.

``read_rows`` splits a file into rows of cells with their line numbers; ``numeric_cells``
turns the chosen columns into numbers, naming the row and column of the first bad cell;
``read_csv_table`` puts both together for a training CSV (features, label, class names).
Plain ``csv`` and numpy, not pandas: these files are small, and pandas would add ~40 MB
to every training process.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nnrun.errors import DataError, did_you_mean

Rows = list[tuple[int, list[str]]]  # (line number, cells), blank lines left out


class CsvTable(NamedTuple):
    """A training CSV read: features, class indices, and the names that describe them."""

    x: np.ndarray  # float32 (rows, features)
    y: np.ndarray  # int64 indices into class_names
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    label_name: str  # the label column's header (its index as text without a header)
    label_position: int  # the label column's position in the file


def read_rows(path: str | Path, *, delimiter: str = ",", key: str = "dataset.path") -> tuple[Path, Rows]:
    """Every non-blank row of a CSV file, with its line number.

    Raises:
        DataError: the file is missing, not UTF-8 text, not a readable CSV, or empty.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{key} {path}: file not found. Check the path.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start} is not "
                        "UTF-8; another encoding such as Latin-1?). Save the file as UTF-8.") from None
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    try:
        rows = [(reader.line_num, row) for row in reader if row and any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({exc}).") from None
    if not rows:
        raise DataError(f"{path}: the file is empty. A CSV needs at least one row of data.")
    return path, rows


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def numeric_cells(rows: Rows, columns: list[int], names: list[str], source: str, fix: str) -> np.ndarray:
    """The cells of ``columns`` as a float64 array; the first missing or non-number cell is an error.

    Args:
        names: how to name each column of the file in an error (``'Glucose'`` or ``3``).
        source: the error's prefix (the file, or ``input <file>``).
        fix: the error's last sentence: how to fix it.
    """
    cells = [[row[i].strip() for i in columns] for _, row in rows]
    try:
        x = np.array(cells, dtype=np.float64).reshape(len(rows), len(columns))
        if np.isfinite(x).all():
            return x
    except ValueError:
        pass
    for (line, _), values in zip(rows, cells):
        for col, cell in zip(columns, values):
            if is_number(cell) and np.isfinite(float(cell)):
                continue
            what = "missing value" if cell == "" or cell.lower() in ("nan", "na") else f"non-numeric cell {cell!r}"
            raise DataError(f"{source}: {what} at row {line}, column {names[col]}. {fix}")
    raise AssertionError("unreachable: some cell failed the conversion")


def column_index(columns: list[str], ref: str | int, what: str, path: Path) -> int:
    """The position of a column given by name or (negative) index."""
    if isinstance(ref, int):
        if not -len(columns) <= ref < len(columns):
            raise DataError(f"{path}: {what} column index {ref} is out of range; the file has {len(columns)} columns.")
        return ref % len(columns)
    if ref not in columns:
        raise DataError(
            f"{path}: {what} column '{ref}' is not in the file{did_you_mean(ref, columns)} Columns: {', '.join(columns)}."
        )
    return columns.index(ref)


def read_csv_table(
    path: str | Path,
    *,
    label: str | int,
    features: list[str | int] | None = None,
    header: bool = True,
    delimiter: str = ",",
    key: str = "dataset.path",
) -> CsvTable:
    """Read a numeric CSV into features, class indices and their names.

    ``y`` holds indices into ``class_names`` (the sorted distinct label values).

    Raises:
        DataError: naming the file, row and column of the first bad cell.
    """
    path, rows = read_rows(path, delimiter=delimiter, key=key)
    if header:
        columns = [c.strip() for c in rows[0][1]]
        rows = rows[1:]
    else:
        columns = [str(i) for i in range(len(rows[0][1]))]
    if not rows:
        raise DataError(f"{path}: the file has a header but no rows of data.")
    for line, row in rows:
        if len(row) != len(columns):
            raise DataError(
                f"{path}: wrong column count: row {line} has {len(row)} cells, expected {len(columns)}. "
                "Every row needs the same number of cells."
            )
    label_col = column_index(columns, label, "label", path)
    feature_cols = (
        [column_index(columns, f, "feature", path) for f in features]
        if features else [i for i in range(len(columns)) if i != label_col]
    )  # fmt: skip
    if label_col in feature_cols:
        raise DataError(
            f"{path}: column '{columns[label_col]}' is both the label and a feature; remove it from dataset.features."
        )
    x = numeric_cells(rows, feature_cols, [f"'{c}'" for c in columns], str(path),
                      "Every feature cell must be a number; fix or drop that row.")
    labels = [row[label_col].strip() for _, row in rows]
    for (line, _), value in zip(rows, labels):
        if value == "":
            raise DataError(f"{path}: missing value at row {line}, column '{columns[label_col]}' (the label).")
    try:
        numeric = np.array(labels, dtype=np.float64)
    except ValueError:
        numeric = None
    if numeric is not None:
        distinct = np.unique(numeric)
        class_names = tuple(_format_number(v) for v in distinct)
        y = np.searchsorted(distinct, numeric)
    else:
        distinct = np.unique(np.array(labels))
        class_names = tuple(str(v) for v in distinct)
        y = np.searchsorted(distinct, np.array(labels))
    if len(class_names) < 2:
        raise DataError(
            f"{path}: the label column '{columns[label_col]}' has a single class ({class_names[0]}); "
            "classification needs at least two. Check dataset.label."
        )
    return CsvTable(x.astype(np.float32), y.astype(np.int64), class_names, tuple(columns[i] for i in feature_cols),
                    columns[label_col], label_col)


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
