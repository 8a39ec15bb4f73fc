"""The one place that imports TensorFlow and Keras, quietly.

Import this module's functions inside the functions that need Keras, never at
module level, so that ``nnrun --help``, ``compare`` and config checks stay fast.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path


def keras_home() -> Path:
    """Where Keras keeps its ``datasets/`` and ``models/`` caches, by Keras's own rules: ``$KERAS_HOME``, else
    ``~/.keras`` (``/tmp/.keras`` if the home folder is read-only); and ``get_file`` uses ``/tmp/.keras`` where that
    folder cannot be written (an empty ``KERAS_HOME`` too). Keras makes a missing one when it loads."""
    if "KERAS_HOME" in os.environ:
        home = os.path.expanduser(os.environ["KERAS_HOME"])
    else:
        home = os.path.join(os.path.expanduser("~") if os.access(os.path.expanduser("~"), os.W_OK) else "/tmp", ".keras")
    return Path(home if home and (not os.path.exists(home) or os.access(home, os.W_OK)) else "/tmp/.keras")


def import_keras():
    """Import Keras (TensorFlow backend) with TensorFlow's C++ log noise turned off."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # absl prints "All log messages before absl::InitializeLog()..." straight to
    # file descriptor 2 during the import; hide fd 2 for that moment only.
    with quiet_stderr():
        import keras
        import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    return keras


#: Held while file descriptor 2 is hidden: another thread that shows lines there (``sweep --jobs``, its helpers'
#: trial lines) takes it first, so that a line waits rather than vanishes.
STDERR_SHOWN = threading.RLock()


@contextmanager
def quiet_stderr():
    """Hide file descriptor 2 for a moment: libjpeg prints "Input file read error" there for each bad file, absl a
    line as TensorFlow is imported."""
    with STDERR_SHOWN:
        saved = _silence_fd(2)
        try:
            yield
        finally:
            _restore_fd(2, saved)


def _silence_fd(fd: int):
    try:
        sys.stderr.flush()
        saved = os.dup(fd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        return saved
    except OSError:
        return None


def _restore_fd(fd: int, saved) -> None:
    if saved is None:
        return
    os.dup2(saved, fd)
    os.close(saved)


#: Commands whose process may end without TensorFlow's interpreter teardown (see ``exit_fast``).
FAST_EXIT_COMMANDS = frozenset({"train", "evaluate", "predict", "check", "show"})


def exit_fast(code: object, command: str | None) -> None:
    """End a finished ``train`` / ``evaluate`` / ``predict`` process without TensorFlow's teardown.

    After the last line, a process that imported TensorFlow spends about a second (measured: 4.0 s for
    ``python -c "import keras"``, 3.0 s with ``os._exit``, AMD EPYC) destroying TensorFlow's thread pools and
    objects. Every file nnrun writes is closed and renamed into place before this, so the process can
    simply stop: standard output and logging are flushed, then ``os._exit``. Only for the commands in
    FAST_EXIT_COMMANDS (no MLflow, Ray or export atexit hooks there), only where TensorFlow was imported,
    and never with ``NNRUN_FULL_EXIT=1`` (for tools that rely on atexit, such as coverage).
    Returns (and the normal exit follows) in every other case.
    """
    if (command not in FAST_EXIT_COMMANDS or "tensorflow" not in sys.modules or os.environ.get("NNRUN_FULL_EXIT")
            or not (code is None or isinstance(code, int))):
        return
    import logging

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(code or 0)
