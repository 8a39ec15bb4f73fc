"""Console output: rich on the terminal, the same text without colour in ``train.log``.

Human-readable output goes to stderr; stdout carries only what scripts read
(the run directory, ``--json`` results), so ``RUN=$(nnrun train ...)`` works.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from rich.console import Console


def make_console(*, quiet: bool = False, file: Any = None) -> Console:
    """The terminal console (stderr). Quiet consoles print nothing."""
    if quiet:
        return Console(file=io.StringIO(), quiet=True)
    return Console(file=file or sys.stderr, highlight=False)


class Reporter:
    """Prints to the console and, once a run directory exists, appends plain text to its log."""

    def __init__(self, console: Console):
        self.console = console
        self._log: Console | None = None
        self._buffer: list[Any] = []

    def attach_log(self, path: Path) -> None:
        """Start writing ``train.log``; what was printed before is written first."""
        self._log_file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._log = Console(file=self._log_file, width=100, color_system=None, highlight=False, soft_wrap=True)
        for item in self._buffer:
            self._log.print(item)
        self._buffer.clear()

    def print(self, *items: Any, log: bool = True, **kwargs: Any) -> None:
        self.console.print(*items, **kwargs)
        if not log:
            return
        if self._log is not None:
            self._log.print(*items, **kwargs)
            self._log_file.flush()
        else:
            self._buffer.extend(items)

    def log_only(self, text: str) -> None:
        if self._log is not None:
            self._log.print(text)
            self._log_file.flush()
        else:
            self._buffer.append(text)

    def close(self) -> None:
        if self._log is not None:
            self._log_file.close()
            self._log = None
