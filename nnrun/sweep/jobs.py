"""``--jobs N``: N - 1 more workers on this machine, each a ``nnrun sweep --join`` process of its own, which the
sweep's own worker starts, shows the trial lines of, stops on Ctrl-C and waits for."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from rich.markup import escape

from nnrun.errors import ExitCode
from nnrun.tf import STDERR_SHOWN


def stop(helpers: list[tuple[Any, Any]]) -> None:
    """SIGINT to each ``--jobs`` worker, once: each finishes its epoch and tells its trial interrupted."""
    for helper, _ in helpers:
        helper.send_signal(signal.SIGINT)


def reap(helpers: list[tuple[Any, Any]], echo: Callable[[str], None], said: str = "") -> None:
    """Wait for the ``--jobs`` workers, and show the last line of each that failed (not of one interrupted, nor of one
    that ended as the sweep did, or with the error ``said`` that this worker ends with: it says so, and how to resume)."""
    while helpers:
        helper, log = helpers[0]
        code = helper.wait()
        helpers.pop(0)  # after the wait: one that Ctrl-C cut short is still there for the caller to stop
        if reader := getattr(helper, "reader", None):
            reader.join()  # it reads to the log's end once the helper has ended
        log.seek(0)
        text = re.sub(r"\x1b\[[0-9;]*m", "", log.read())  # FORCE_COLOR: rich's colours
        last = (text.strip().splitlines() or [""])[-1]
        # Exit 1 without an error of its own: it ended as the sweep did (failed trials), which this worker shows.
        told = code == ExitCode.FAILURE and not re.search(r"^(Error:|Traceback)", text, re.MULTILINE)
        if code not in (0, ExitCode.INTERRUPTED) and not told and last != f"Error: {said}":
            echo(f"[red]worker {helper.pid} (--join) ended with exit code {helper.returncode}[/]: {escape(last)}")
        log.close()


def join_process(sweep_dir: Path, echo: Callable[[str], None]) -> tuple[Any, Any]:
    """One more worker for ``--jobs``: ``nnrun sweep --join`` in a process of its own, writing to a log file that
    ``reap`` reads (not a pipe: a helper goes on if this worker dies). Its trials' lines are shown here as they come,
    marked with its pid; its table is not shown twice."""
    import subprocess
    import sys
    import tempfile
    import threading

    log = tempfile.NamedTemporaryFile("w+", prefix="nnrun-join-", suffix=".log")  # noqa: SIM115 - closed by reap
    command = [sys.executable, "-m", "nnrun", "sweep", "--join", str(sweep_dir)]
    # A session of its own: a terminal's Ctrl-C reaches this worker only, which passes it on once (a second one
    # would stop the helper's epoch at once).
    helper = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True)

    def tail() -> None:
        with open(log.name, errors="replace") as lines:
            line = ""
            while (line := line + lines.readline()) or helper.poll() is None:
                if not line.endswith("\n") and helper.poll() is None:
                    time.sleep(0.2)  # nothing new yet, or half a line
                    continue
                if re.match(r"trial \d+/\d+ ", plain := re.sub(r"\x1b\[[0-9;]*m", "", line)):
                    # Not while this worker hides stderr (TensorFlow's import, images decoded): the line would vanish.
                    # A closed console: the helper goes on regardless.
                    with suppress(Exception), STDERR_SHOWN:
                        echo(f"[dim](--join pid {helper.pid})[/] {escape(plain.rstrip())}")
                line = ""

    helper.reader = threading.Thread(target=tail, daemon=True)
    helper.reader.start()
    return helper, log
