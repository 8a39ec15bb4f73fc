"""Datasets: numpy arrays for train / validation / test, the class names, and the input signature.

A loader per dataset name (``LOADERS``) reads the raw samples; ``make_splits`` then applies
``limit`` and the validation source. The rooms:

- ``idx.py``: MNIST and Fashion-MNIST from their IDX files (search path, checksums, decoded cache);
- ``csv.py``: the one CSV reader, for training tables and for rows to predict;
- ``table.py``: typed CSV tables (column types, missing cells, string labels, regression);
- ``splits.py``: train/test as scikit-learn draws it, validation as Keras takes it;
- ``images.py``: your own images, a folder of class folders, decoded once by ``tf.data``.

``Dataset.signature()`` describes one raw sample (shape, dtype, feature and class names, the
label column); training stores it in ``run.json`` so that a run predicts without its data.

Nothing here imports TensorFlow unless it has to download.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nnrun.datasets.idx import CHECKSUMS, FASHION_CLASSES, IDX_FILES, idx_bytes, load_idx_dataset, read_idx
from nnrun.datasets.images import IMAGE_EXTENSIONS, decode_dataset, image_settings, load_image_files
from nnrun.datasets.splits import train_test_split, validation_split
from nnrun.datasets.table import read_csv_table, read_table, resolve_task
from nnrun.errors import ConfigError, DataError

__all__ = [
    "CHECKSUMS", "FASHION_CLASSES", "IDX_FILES", "IMAGE_DATASETS", "LOADERS", "Dataset", "idx_bytes",
    "image_class_names", "load_dataset", "load_idx_dataset", "make_splits", "read_csv_table", "read_idx",
    "read_table", "resolve_task", "train_test_split",
]  # fmt: skip

BUILTIN_DIABETES = Path(__file__).parent / "data" / "diabetes.csv"
IMAGE_DATASETS = ("mnist", "fashion_mnist")
SMOKE_TRAIN, SMOKE_TEST = 512, 256  # --smoke: the first samples of each split


@dataclass(frozen=True)
class Dataset:
    """Arrays for each split. ``y`` holds integer class indices into ``class_names``."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    kind: str = "tabular"  # "tabular" or "image"
    feature_names: tuple[str, ...] = ()
    source: str = ""
    notes: list[str] = field(default_factory=list)
    #: tabular only: how the label sits in the file, so that predict can drop it from new rows
    label: dict[str, Any] = field(default_factory=dict)
    task: str = "classification"  # or "regression": y holds float32 targets and class_names is empty
    #: a typed CSV: each feature's name, type, distinct and missing counts; x holds raw cells
    columns: list[dict[str, Any]] = field(default_factory=list)
    typed: bool = False
    impute: bool = False
    ignored: tuple[str, ...] = ()  # tabular: columns of the file the run does not use
    #: an image folder: image_size, color_mode, crop_to_aspect_ratio, interpolation (predict resizes alike)
    image: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, y)`` of 'train', 'validation' or 'test'."""
        if name == "train":
            return self.x_train, self.y_train
        if name == "test":
            return self.x_test, self.y_test
        if name == "validation":
            if self.x_val is None:
                raise DataError("this run has no validation split (dataset.validation is 'none').")
            return self.x_val, self.y_val
        raise DataError(f"unknown split {name!r}; expected train, validation or test.")

    def signature(self) -> dict[str, Any]:
        """What one raw sample is: the run's input signature (``run.json`` keeps it)."""
        return {
            "dataset": self.name,
            "kind": self.kind,
            "sample_shape": list(self.x_train.shape[1:]),
            "sample_dtype": str(self.x_train.dtype),
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "task": self.task,
            **({"columns": [{k: c[k] for k in ("name", "type", "values") if k in c} for c in self.columns]}
               if self.typed else {}),
            **({"ignored_columns": list(self.ignored)} if self.kind == "tabular" else {}),
            **self.label,
            **self.image,
        }


def image_class_names(name: str) -> tuple[str, ...]:
    """Class names of an image dataset, without loading it."""
    return FASHION_CLASSES if name == "fashion_mnist" else tuple(str(i) for i in range(10))


def _load_images(config: Any, loss: str) -> Dataset:
    x_train, y_train, x_test, y_test, source = load_idx_dataset(config.name, config.path)
    return Dataset(
        name=config.name, x_train=x_train, y_train=y_train.astype(np.int64), x_test=x_test,
        y_test=y_test.astype(np.int64), class_names=image_class_names(config.name), kind="image", source=source,
    )  # fmt: skip


def _load_image_folder(config: Any, loss: str) -> Dataset:
    """The file paths of an image folder, split by seed; ``load_dataset`` decodes them after ``make_splits``."""
    files, x_train, y_train, x_test, y_test, skipped = load_image_files(config)
    notes = [f"skipped {len(skipped)} link(s) or folder(s) that cannot be read: {'; '.join(skipped[:10])}"] if skipped else []
    if files.ignored:
        notes.append(f"ignored {files.ignored} file(s) without an image extension ({', '.join(IMAGE_EXTENSIONS)})")
    return Dataset(
        name=config.name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        class_names=files.class_names, kind="image", source=str(files.root), notes=notes, image=image_settings(config),
    )  # fmt: skip


def _load_table(config: Any, loss: str) -> Dataset:
    path = BUILTIN_DIABETES if config.name == "diabetes" else Path(config.path)
    table = read_table(path, config, loss=loss)
    if config.stratify and table.task == "regression":
        raise ConfigError("dataset.stratify keeps each class's share in both splits, but a regression has no classes; "
                          "set dataset.stratify: false.")
    train_idx, test_idx = train_test_split(len(table.x), config.test_split, config.split_seed, table.y, config.stratify)
    label = {"label": table.label_name, "label_position": table.label_position,
             "header": config.header, "delimiter": config.delimiter}  # fmt: skip
    return Dataset(
        name=config.name, x_train=table.x[train_idx], y_train=table.y[train_idx], x_test=table.x[test_idx],
        y_test=table.y[test_idx], class_names=table.class_names, feature_names=table.feature_names,
        source=str(path), label=label, task=table.task, columns=table.columns, typed=table.typed,
        impute=config.missing == "impute", notes=table.notes, ignored=table.ignored,
    )  # fmt: skip


#: One loader per ``dataset.name``; each returns the raw train and test arrays (the loss decides ``task: auto``).
LOADERS: dict[str, Callable[[Any, str], Dataset]] = {
    "diabetes": _load_table,
    "csv": _load_table,
    "mnist": _load_images,
    "fashion_mnist": _load_images,
    "images": _load_image_folder,
}


def load_dataset(config: Any, *, smoke: bool = False, loss: str = "categorical_crossentropy",
                 only: str | None = None) -> Dataset:
    """Load the dataset a ``RunConfig.dataset`` section names and make its splits.

    Args:
        config: the ``dataset`` section of a RunConfig.
        smoke: keep a tiny subset (``SMOKE_TRAIN`` train, ``SMOKE_TEST`` test samples) for a seconds-long check.
        loss: ``training.loss``; with ``dataset.task: auto`` a regression loss makes a regression.
        only: for an image folder, decode just this split ('train', 'validation' or 'test'); the others are empty.
    """
    data = make_splits(LOADERS[config.name](config, loss), config, smoke=smoke)
    return decode_dataset(data, data.image, only) if data.image else data


def make_splits(data: Dataset, config: Any, *, smoke: bool = False) -> Dataset:
    """Apply ``limit`` and the validation source to a dataset's train/test arrays."""
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    limit = config.limit
    if smoke:
        limit = min(limit or SMOKE_TRAIN, SMOKE_TRAIN)
        x_test, y_test = x_test[:SMOKE_TEST], y_test[:SMOKE_TEST]
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    x_val = y_val = None
    validation = config.validation
    if validation == "test":
        x_val, y_val = x_test, y_test
    elif isinstance(validation, float):
        at = validation_split(len(x_train), validation)
        x_train, x_val, y_train, y_val = x_train[:at], x_train[at:], y_train[:at], y_train[at:]
    return replace(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, x_val=x_val, y_val=y_val)


def fingerprint(dataset: dict[str, Any]) -> dict[str, Any] | None:
    """What the data a ``dataset`` section names here is, to tell it from other data under the same path: a CSV's
    size and SHA-256, or the SHA-256 of the image files' paths (relative to their folder) and sizes, as the loader
    lists them (``test_path``'s too). None for the built-in datasets (``idx`` checks their files) and for data that is
    not here or cannot be read."""
    from nnrun.datasets.csv import existing_file
    from nnrun.datasets.images import list_image_folder

    if dataset.get("name") not in ("csv", "images"):
        return None
    digest = hashlib.sha256()
    try:
        if dataset["name"] == "csv":
            path = existing_file(dataset["path"])
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            return {"path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
        listed = [list_image_folder(p) for p in (dataset["path"], dataset.get("test_path")) if p]
        files = [[os.path.relpath(f, one.root), os.stat(f).st_size] for one in listed for f in one.paths]
    except (DataError, OSError):  # not here, or not readable here: a trial fails on it, for a retry elsewhere
        return None
    digest.update(json.dumps(files).encode())
    return {"path": str(listed[0].root.resolve()), "files": len(files), "sha256": digest.hexdigest()}
