"""The one place that imports TensorFlow and Keras, quietly.

Import this module's functions inside the functions that need Keras, never at
module level, so that ``nnrun --help``, ``compare`` and config checks stay fast.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


def import_keras():
    """Import Keras (TensorFlow backend) with TensorFlow's C++ log noise turned off."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # absl prints "All log messages before absl::InitializeLog()..." straight to
    # file descriptor 2 during the import; hide fd 2 for that moment only.
    saved = _silence_fd(2)
    try:
        import keras
        import tensorflow as tf
    finally:
        _restore_fd(2, saved)
    tf.get_logger().setLevel("ERROR")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass
    return keras


@contextmanager
def quiet_stderr():
    """Hide file descriptor 2 for a moment: libjpeg prints "Input file read error" there for each bad file."""
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
