"""``nnrun check``: everything ``train`` checks first, shown, with nothing trained and nothing written.

``check_config`` validates the config's schema, then prepares the run as training would
(data, preprocessing, model, loss, metrics, callbacks) and returns what ``nnrun check``
prints: the resolved config, the typed CSV's columns, the data shapes after each step,
the model summary. A schema error is raised by the config loader before this runs, so
it costs no TensorFlow import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_config(config: Any, path: Path) -> list[Any]:
    """Rich renderables for a resolved ``RunConfig``; raises the first problem found, as ``train`` would."""
    from rich.syntax import Syntax
    from rich.text import Text

    from nnrun.training import model_summary, prepare

    out: list[Any] = [f"[green]✓[/] {path}: schema valid",
                      Syntax(config.to_yaml(), "yaml", theme="ansi_dark", background_color="default")]

    prepared = prepare(config, probe=False)  # the XLA probe trains: check shows its cached timings only
    data = prepared.dataset
    if data.columns:
        out.append(columns_table(data))
    out.extend(f"[yellow]note:[/] {note}" for note in data.notes)
    out.append(_table("data shapes after each preprocessing step", ("step", "x (train)", "y (train)"),
                      [(step, str(x), str(y)) for step, x, y in prepared.shapes]))
    out.append(Text(model_summary(prepared.model)))
    out.append(precision_line(config, prepared.model))
    out.append(prepared.jit.describe())
    out.append(f"[green]✓[/] {path}: data, model, loss, metrics and callbacks fit together "
               f"(steps_per_execution {prepared.steps_per_execution})")
    return out


def precision_line(config: Any, model: Any) -> str:
    """The precision in use, whether this CPU computes bfloat16 natively, and a suggestion where it pays."""
    from nnrun.distribution import cpu_bfloat16, gpu_count

    found = cpu_bfloat16()
    line = (f"precision: {config.training.precision} (Keras policy {model.dtype_policy.name}); this CPU "
            + (f"has {found}" if found else "has no bfloat16 instructions (no AMX or AVX512-BF16)"))
    if config.training.precision == "float32" and (found or gpu_count()):
        line += "; training.precision: bfloat16 may train faster here (check accuracy: it rounds more)"
    return line


def columns_table(data: Any) -> Any:
    """A typed CSV's columns: type, distinct and missing counts, so that nothing is guessed silently."""
    from nnrun.datasets.table import column_summary

    table = _table(f"columns (label '{data.label.get('label')}': {data.task})", ("column", "type", "distinct", "missing"),
                   column_summary(data.columns), right=("distinct", "missing"))
    table.title_justify = "left"
    return table


def _table(title: str, headings: tuple[str, ...], rows: list[tuple[str, ...]], right: tuple[str, ...] = ()) -> Any:
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for heading in headings:
        table.add_column(heading, justify="right" if heading in right else "left")
    for row in rows:
        table.add_row(*row)
    return table
