"""Comparing runs side by side (``nnrun compare``, ``nnrun list``): read, choose, show.

- ``records``: find run directories and read each one's small files into a ``RunRecord``;
- ``query``: keys, filters, sorting and the changed config keys, gathered by ``compare_runs``
  into a ``Comparison`` (the rows and columns to show);
- ``tables``: the comparison as a text table, csv, json or markdown, and the overlay plot.

Nothing here imports TensorFlow, numpy or pandas: a thousand runs take well under a second.
"""

from nnrun.compare.query import LIST_COLUMNS, METRIC_SECTIONS, Comparison, canonical, compare_runs, lookup
from nnrun.compare.records import COLUMNS, RunRecord, find_runs
from nnrun.compare.tables import (
    STATUS_STYLES,
    display,
    format_comparison,
    format_duration,
    metrics_rows,
    metrics_table,
    plot_comparison,
    render_text,
)

__all__ = [
    "COLUMNS", "LIST_COLUMNS", "METRIC_SECTIONS", "STATUS_STYLES", "Comparison", "RunRecord", "canonical",
    "compare_runs", "display", "find_runs", "format_comparison", "format_duration", "lookup", "metrics_rows", "metrics_table", "plot_comparison",
    "render_text",
]  # fmt: skip
