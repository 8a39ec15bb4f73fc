"""What every baseline script shares: reading the data files, and reporting.

The baselines stand for "the tutorial's own plain-Keras script". They can't
download (no network), so they read the same files nnrun reads, from
``$NNRUN_DATA_DIR`` (the penguins baselines: ``configs/data/`` in the repo).
``load_data`` is Keras's own ``fashion_mnist.load_data`` with the download
replaced by a folder: ``gzip.open`` + ``np.frombuffer`` on the four IDX
files, no checksum. (``keras.datasets.mnist.load_data`` would need Keras's
``mnist.npz``, which it checks against a SHA-256 we can't reproduce offline,
so both datasets go through this one loader.)

Nothing here changes how the model trains: ``EpochTimes`` takes one clock
reading per epoch so that the runner can report seconds per epoch, and
``report`` prints the machine-readable last line the runner parses.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import numpy as np

FOLDERS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}


def data_dir() -> Path:
    env = os.environ.get("NNRUN_DATA_DIR")
    if not env:
        raise SystemExit("set NNRUN_DATA_DIR to the folder with mnist/, fashion-mnist/ and diabetes/")
    return Path(env).expanduser()


def load_data(name: str):
    """``(x_train, y_train), (x_test, y_test)`` as Keras's loaders return them."""
    folder = data_dir() / FOLDERS[name]

    def read(stem: str, offset: int) -> np.ndarray:
        with gzip.open(folder / f"{stem}.gz", "rb") as handle:
            return np.frombuffer(handle.read(), np.uint8, offset=offset)

    y_train = read("train-labels-idx1-ubyte", 8)
    x_train = read("train-images-idx3-ubyte", 16).reshape(len(y_train), 28, 28)
    y_test = read("t10k-labels-idx1-ubyte", 8)
    x_test = read("t10k-images-idx3-ubyte", 16).reshape(len(y_test), 28, 28)
    return (x_train, y_train), (x_test, y_test)


def epochs(default: int) -> int:
    """The tutorial's epoch count; the runner's ``--quick`` lowers it through BENCH_EPOCHS."""
    return int(os.environ.get("BENCH_EPOCHS", default))


def verbose(written: int | str = "auto") -> int | str:
    """``verbose`` as the tutorial wrote it, or ``BENCH_VERBOSE`` (the runner's ``verbose=0`` side sets 0).

    The tutorials keep Keras's progress bar, which costs real time per step; the ``verbose=0`` script is the
    fastest honest plain script, and the one nnrun's speed targets are measured against.
    """
    value = os.environ.get("BENCH_VERBOSE")
    return int(value) if value not in (None, "") else written


def epoch_timer():
    """A callback that records each epoch's seconds (epoch hooks only: no per-batch work)."""
    import keras

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(round(time.perf_counter() - self.start, 4))

    return EpochTimes()


def report(test_accuracy: float | None, train_seconds: float, timer=None, model=None, **extra: float) -> None:
    """Print the last line the runner reads: ``RESULT {json}``.

    A regression baseline has no accuracy: it passes ``None`` and its test figures as
    ``extra`` (``test_r2=..., test_mae=..., test_rmse=...``), added after the usual keys.
    """
    result = {} if test_accuracy is None else {"test_accuracy": float(test_accuracy)}
    result["train_seconds"] = round(train_seconds, 4)
    if timer is not None:
        result["epoch_seconds"] = timer.seconds
    if model is not None:
        result["params"] = int(model.count_params())
    result.update({key: float(value) for key, value in extra.items()})
    print("RESULT " + json.dumps(result), flush=True)
