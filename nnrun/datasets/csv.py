"""CSV files: the one reader, for training tables and for new rows to predict.

``read_rows`` splits a file into rows of cells with their line numbers (``datasets.table``
types them); ``numeric_cells`` turns chosen columns into numbers, naming the row and column
of the first bad cell (``predict`` uses it for a numeric run's rows).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from nnrun.errors import DataError, DataUnavailable, did_you_mean

Rows = list[tuple[int, list[str]]]  # (line number, cells), blank lines left out


def existing_file(path: str | Path, key: str = "dataset.path") -> Path:
    """``path`` (``~`` expanded); DataUnavailable if no such file."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DataError(f"{key} {path}: a folder, not a CSV file; give the file's path (images in class folders "
                        "are dataset.name: images).")
    if not path.is_file():
        raise DataUnavailable(f"{key} {path}: file not found. Check the path.")
    return path


def read_rows(path: str | Path, *, delimiter: str = ",", key: str = "dataset.path") -> tuple[Path, Rows]:
    """Every non-blank row of a CSV file, with its line number.

    Raises:
        DataError: the file is missing, not UTF-8 text, not a readable CSV, or empty.
    """
    path = existing_file(path, key)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        guess = "UTF-16, by its first bytes" if exc.object[:2] in (b"\xff\xfe", b"\xfe\xff") else \
            "another encoding such as Latin-1?"  # Excel's "Unicode text" is UTF-16 with a byte-order mark
        raise DataError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start} is not "
                        f"UTF-8; {guess}). Save the file as UTF-8.") from None
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    try:
        rows = [(reader.line_num, row) for row in reader if row and any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({exc}).") from None
    if not rows:
        raise DataError(f"{path}: the file is empty. A CSV needs at least one row of data.")
    return path, rows


def is_number(cell: object) -> bool:
    """Whether ``float(cell)`` works (``"3"``, ``"1e-3"``, ``"inf"``; not ``"x"``, ``""`` or None)."""
    try:
        float(cell)
    except (TypeError, ValueError):
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


def format_number(value: float) -> str:
    """A class name from a number: ``1`` for 1.0, ``0.5`` for 0.5."""
    return str(int(value)) if float(value).is_integer() else str(value)
