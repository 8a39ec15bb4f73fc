"""``history.csv``, a run's log of every epoch: written as training goes (and on resume), read by compare and sync.

One column per logged value, one row per completed epoch; ``epoch`` counts from 1, and an empty cell is a value
not logged that epoch. ``rundir`` reads and writes the file; this module only knows its text.
"""

from __future__ import annotations

from typing import Any


def history_text(rows: list[dict[str, Any]]) -> str:
    """``history.csv``: one row per completed epoch (epoch counts from 1), a column per logged value."""
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    lines = [",".join(columns)]
    for row in rows:
        lines.append(",".join("" if row.get(c) is None else repr(row[c]) for c in columns))
    return "\n".join(lines) + "\n"


class History:
    """``history.csv`` split into cells; a column becomes floats only when asked for (most never are)."""

    def __init__(self, rows: list[list[str]] = ()):
        self.header: list[str] = list(rows[0]) if rows else []
        self._rows = rows[1:]
        self._columns: dict[str, list[float]] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.header

    def __iter__(self):
        return iter(self.header)

    def __len__(self) -> int:
        """The number of epochs."""
        return len(self._rows)

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self.header:
            return default
        if name not in self._columns:
            i = self.header.index(name)
            self._columns[name] = [_float(row[i]) for row in self._rows]
        return self._columns[name]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per epoch, as training logged it (``epoch`` an int, empty cells left out)."""
        return [
            {k: (int(float(v)) if k == "epoch" else float(v)) for k, v in zip(self.header, row) if v != ""}
            for row in self._rows
        ]


def _float(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:  # an empty cell (a metric missing that epoch) or damage
        return float("nan")


def parse_history(data: bytes) -> History:
    """Parse ``history.csv``'s bytes. Raises ValueError for rows of different lengths."""
    import csv

    rows = list(csv.reader(data.decode("utf-8").splitlines()))
    if rows and any(len(row) != len(rows[0]) for row in rows):
        raise ValueError(f"rows of different lengths; the header has {len(rows[0])} cells")
    return History(rows)
