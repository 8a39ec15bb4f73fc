"""Error types and exit codes shared by every nnrun command.

Every error that reaches the user is one line: what was received, what was
expected and how to fix it. The CLI maps each class to an exit code and shows
a traceback only with ``--debug``.
"""

from __future__ import annotations

import difflib
from enum import IntEnum
from typing import Iterable


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    BAD_INPUT = 2
    INTERRUPTED = 130


class NnrunError(Exception):
    """Base class: a failure during a run (exit code 1)."""

    exit_code = ExitCode.FAILURE


class ConfigError(NnrunError):
    """The config, a --set override or a CLI argument is wrong (exit code 2)."""

    exit_code = ExitCode.BAD_INPUT


class DataError(NnrunError):
    """A dataset or input file is missing, corrupt or of the wrong shape (exit code 2)."""

    exit_code = ExitCode.BAD_INPUT


class DataUnavailable(DataError):
    """The data cannot be had on this machine now: not where the config says, unreadable there, or no room in memory
    to decode it. A matter of the machine, not of the data: a sweep retries such a trial."""


class DataChanged(DataError):
    """The data a sweep's trials train on is, here, other data than the sweep started with (exit code 2)."""


class RunDirError(NnrunError):
    """A run directory cannot be read or written (exit code 2)."""

    exit_code = ExitCode.BAD_INPUT


class RunInterrupted(NnrunError):
    """Training stopped on Ctrl-C or SIGTERM after saving what it had (exit code 130).

    ``what`` is what happened; ``resume``, the command that continues, is added to the message after it.
    """

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, what: str, resume: str | None = None) -> None:
        super().__init__(f"{what} Continue with: {resume}" if resume else what)
        self.what = what


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its class name when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# Names from older Keras and other libraries that people still type.
ALIASES = {"lr": "learning_rate", "decay": "weight_decay", "nb_epoch": "epochs", "epoch": "epochs", "n_epochs": "epochs",
           "input_dim": "input_shape", "output_dim": "units", "dropout": "rate", "p": "rate"}


def did_you_mean(name: str, candidates: Iterable[str], end: str = ".") -> str:
    """Return ``"; did you mean 'x'?"`` for the closest candidate, or ``end``: a sentence ends either way."""
    candidates = list(candidates)
    if ALIASES.get(name) in candidates:
        return f"; did you mean '{ALIASES[name]}'?"
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered and lowered[name.lower()] != name:
        return f"; did you mean '{lowered[name.lower()]}'?"
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if not match:
        match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        match = [lowered[m] for m in match]
    return f"; did you mean '{match[0]}'?" if match else end
