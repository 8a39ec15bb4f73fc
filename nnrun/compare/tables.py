"""How a comparison leaves the program: the text table, csv, json and markdown, and the overlay plot.

Every format takes a ``Comparison`` and returns a value (a rich ``Text`` or a
string); writing it is the CLI's job. Only ``plot_comparison`` writes a file,
through ``nnrun.plots``, and only it imports matplotlib.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.compare.query import Comparison, MeanStd, higher_is_better, number, text_of
from nnrun.errors import ConfigError

STATUS_STYLES = {"completed": "green", "failed": "red", "interrupted": "yellow", "running": "cyan", "pruned": "magenta",
                 "diverged": "yellow", "crashed": "bold red", "unreadable": "dim red"}  # fmt: skip
_SHRINKABLE = ("id", "name", "layers", "error", "path", "dataset")
_MIN_WIDTH = 8


def metrics_rows(metrics: dict[str, Any], splits: tuple[str, ...] = ("train", "validation", "best_validation", "test"),
                 ) -> tuple[list[str], list[list[str]]]:
    """``metrics.json`` as a table: the metric names, then one row per split present (its name, then each value)."""
    present = [s for s in splits if isinstance(metrics.get(s), dict) and metrics[s]]
    keys = list(dict.fromkeys(k for s in present for k in metrics[s]))
    return keys, [[s.replace("_", " "), *(display(k, metrics[s].get(k)) for k in keys)] for s in present]


def metrics_table(metrics: dict[str, Any], *, title: str = "metrics", splits: tuple[str, ...] | None = None,
                  caption: str | None = None) -> Any:
    """``metrics_rows`` as a rich table: what ``nnrun train`` prints at the end and ``nnrun show`` shows."""
    from rich.table import Table

    keys, rows = metrics_rows(metrics, *([splits] if splits else []))
    table = Table(title=title, header_style="bold", title_justify="left", caption=caption, caption_justify="left",
                  min_width=len(caption or ""))  # the caption on one line
    table.add_column("split")
    for key in keys:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


def display(column: str, value: Any) -> str:
    """A value as the table shows it (``-`` for none)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, MeanStd):
        if value.std is None:
            return display(column, float(value))
        plain = column not in ("duration", "params") and not _metric_like(column)  # units, rates: 2.2 ± 1.1

        def shown(x: float) -> str:
            return f"{x:{'.3g' if abs(x) < 1000 else '.0f'}}" if plain else display(column, x)

        return f"{shown(float(value))} ± {shown(value.std)}"
    if isinstance(value, bool):
        return str(value).lower()
    if column == "duration" and isinstance(value, (int, float)):
        return format_duration(value)
    if column == "started" and isinstance(value, str):
        return value.replace("T", " ")
    if column == "params" and isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if _metric_like(column) else f"{value:g}"
    return text_of(value)


def _metric_like(column: str) -> bool:
    return higher_is_better(column) is not None


def format_duration(seconds: float) -> str:
    """``75.0`` -> ``1m15s``: seconds for short runs, then minutes, then hours."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _is_numeric(column: str, values: list[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and column != "started" and all(number(v) is not None for v in present)


def render_text(comparison: Comparison, *, width: int | None = None, styled: bool = True) -> Any:
    """The table as one rich ``Text``: aligned columns, coloured status, long text cut to fit ``width``.

    Built by hand rather than with ``rich.table.Table``, which takes about a second to lay out 1,000 rows.
    """
    from rich.text import Text

    columns = comparison.columns
    raw = [[comparison.value(r, c) for c in columns] for r in comparison.records]
    cells = [[display(c, v) for c, v in zip(columns, row)] for row in raw]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    right = [_is_numeric(c, [row[i] for row in raw]) for i, c in enumerate(columns)]
    if width:
        _shrink(columns, widths, width)
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("  ".join(_fit(c, w, False) for c, w in zip(columns, widths)).rstrip() + "\n", style="bold" if styled else None)
    text.append("  ".join("─" * w for w in widths) + "\n", style="dim" if styled else None)
    status_at = columns.index("status") if "status" in columns else -1
    for record, row in zip(comparison.records, cells):
        for i, (cell, w) in enumerate(zip(row, widths)):
            style = STATUS_STYLES.get(record.status) if styled and i == status_at else None
            text.append(_fit(cell, w, right[i]) + ("  " if i < len(row) - 1 else ""), style=style)
        text.append("\n")
    return text


def _shrink(columns: list[str], widths: list[int], limit: int) -> None:
    """Narrow the longest text columns until the table fits ``limit`` characters, if it can."""
    excess = sum(widths) + 2 * (len(widths) - 1) - limit
    shrinkable = [i for i, c in enumerate(columns) if c in _SHRINKABLE or "." in c or "[" in c]
    while excess > 0:
        candidates = [i for i in shrinkable if widths[i] > _MIN_WIDTH]
        if not candidates:
            return
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1


def _fit(cell: str, width: int, right: bool) -> str:
    if len(cell) > width:
        return cell[: width - 1] + "…"
    return cell.rjust(width) if right else cell.ljust(width)


def to_csv(comparison: Comparison) -> str:
    """Raw values, full precision, one row per run (or group: its mean, and the std in a ``_std`` column beside it)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    rows = [[comparison.value(record, c) for c in comparison.columns] for record in comparison.records]
    spread = [any(isinstance(row[i], MeanStd) for row in rows) for i in range(len(comparison.columns))]
    writer.writerow([n for c, s in zip(comparison.columns, spread) for n in ([c, f"{c}_std"] if s else [c])])
    for row in rows:
        cells = [(float(v), v.std) if isinstance(v, MeanStd) else (v, None) if s else (v,) for v, s in zip(row, spread)]
        writer.writerow(["" if v is None else text_of(v) for cell in cells for v in cell])
    return buffer.getvalue()


def to_json(comparison: Comparison) -> str:
    """A JSON list of objects: the chosen columns plus ``path``, ``status`` and ``error`` for every run."""
    rows = []
    for record in comparison.records:
        row = {c: _json_value(comparison.value(record, c)) for c in comparison.columns}
        for key in ("status", "error", "path"):
            row.setdefault(key, _json_value(comparison.value(record, key)))
        if record.problems:
            row["problems"] = record.problems
        rows.append(row)
    return json.dumps(rows, indent=2) + "\n"


def _json_value(value: Any) -> Any:
    """A value as JSON has it: NaN and infinity, which JSON lacks (Python would write NaN, Infinity), are null."""
    if isinstance(value, MeanStd):
        return {"mean": _json_value(float(value)), "std": _json_value(value.std), "n": value.n}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return list(value) if isinstance(value, tuple) else value


def to_markdown(comparison: Comparison) -> str:
    columns = comparison.columns
    raw = [[comparison.value(r, c) for c in columns] for r in comparison.records]
    right = [_is_numeric(c, [row[i] for row in raw]) for i, c in enumerate(columns)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" ---: " if r else " --- " for r in right) + "|"]
    for row in raw:
        lines.append("| " + " | ".join(display(c, v).replace("|", "\\|") for c, v in zip(columns, row)) + " |")
    return "\n".join(lines) + "\n"


def format_comparison(comparison: Comparison, fmt: str, *, width: int | None = None, styled: bool = True) -> Any:
    """The comparison as ``fmt``: a rich Text for 'table', a string for csv, markdown and json.

    Raises:
        ConfigError: an unknown format.
    """
    formats = {"csv": to_csv, "markdown": to_markdown, "json": to_json}
    if fmt == "table":
        return render_text(comparison, width=width, styled=styled)
    if fmt not in formats:
        raise ConfigError(f"--format must be one of table, csv, markdown, json; got {fmt!r}.")
    return formats[fmt](comparison)


def plot_comparison(comparison: Comparison, path: str | Path, metric: str | None = None) -> list[str]:
    """Overlay ``metric`` per epoch (default: val_accuracy, else val_loss) of every listed run; grouped
    (``--group-by``), each group's mean per epoch, with a band of ± one standard deviation over its runs.

    Returns notes about runs left out. Raises ConfigError when no run logged the metric.
    """
    from nnrun.plots import plot_runs

    logged = [m for r in comparison.records for m in r.members or [r] if m.history]
    if metric is None:
        metric = "val_accuracy" if any("val_accuracy" in r.history for r in logged) else "val_loss"
    series, notes = [], []
    keys = comparison.columns[: comparison.columns.index("runs")] if "runs" in comparison.columns else []
    for record in comparison.records:
        if record.members:
            by_epoch: dict[float, list[float]] = {}
            for member in record.members:
                values = member.history.get(metric) or []
                for epoch, value in zip(member.history.get("epoch") or range(1, len(values) + 1), values):
                    if math.isfinite(value):  # an empty cell (NaN), or a diverged run's loss
                        by_epoch.setdefault(float(epoch), []).append(value)
            if by_epoch:
                epochs = sorted(by_epoch)
                label = ", ".join(f"{k}={display(k, comparison.value(record, k))}" for k in keys)
                runs = f"{len(record.members)} run{'s' * (len(record.members) != 1)}"
                if fewer := next((e for e in epochs if len(by_epoch[e]) < len(record.members)), None):  # pruned, say
                    runs += f"; fewer from epoch {fewer:g}"
                series.append((f"{label} ({runs})", epochs,
                               [statistics.fmean(by_epoch[e]) for e in epochs],
                               [statistics.stdev(by_epoch[e]) if len(by_epoch[e]) > 1 else 0.0 for e in epochs]))
                continue
            values = None
        else:
            values = record.history.get(metric)
        if not values and record.readable:  # unreadable folders are noted already
            notes.append(f"{record.path.name}: no {metric} in {rd.HISTORY}; not plotted.")
        if not values:
            continue
        epochs = record.history.get("epoch") or [float(i + 1) for i in range(len(values))]
        series.append((record.path.name, epochs, values))
    if not series:
        available = sorted({k for r in logged for k in r.history if k not in ("epoch", "time_s")})
        raise ConfigError(
            f"--metric {metric}: no listed run logged it in {rd.HISTORY}. "
            f"Logged: {', '.join(available) or f'nothing (no {rd.HISTORY})'}."
        )
    plot_runs(series, path, metric=metric)
    return notes
