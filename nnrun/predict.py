"""Prediction: a trained run's model on new inputs, with the run's saved preprocessing.

Everything comes from the run directory (``nnrun.trained``): the input signature says
what a raw sample is (28x28 pixels 0-255 for the image datasets, one row of named
feature values for a CSV dataset) and gives the class names; the fitted
``preprocessing.json`` then does the rest, exactly as for training. The training data
is never read. Accepted inputs:

- a CSV: rows of features, with or without the label column (a header row
  picks the feature columns by name);
- a ``.npy`` array of one sample or many;
- PNG / JPEG images (image runs): grayscale, resized to the run's image size, pixels 0-255;
- for a run trained on an image folder: image files of any size and format, and folders of them (searched
  recursively), decoded and resized exactly as training did (``nnrun.datasets.images.decode_images``);
- an IDX file of samples (``*-idx3-ubyte``, gzipped or raw).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnrun.errors import ConfigError, DataError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Rows shown in the terminal table; ``--output`` writes every row.
SHOWN_ROWS = 50


@dataclass
class Inputs:
    """Raw samples in the dataset's space, one name per sample, and warnings about them."""

    x: np.ndarray
    names: list[str]
    notes: list[str] = field(default_factory=list)


@dataclass
class Predictions:
    names: list[str]
    probabilities: np.ndarray  # (n, classes); a regression: (n, 1) predicted values
    class_names: tuple[str, ...]  # () for a regression
    top_k: int
    notes: list[str] = field(default_factory=list)
    target: str | None = None  # a regression: the label's name

    @property
    def regression(self) -> bool:
        return not self.class_names

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def top(self, i: int) -> list[tuple[str, float]]:
        order = np.argsort(-self.probabilities[i], kind="stable")[: self.top_k]
        return [(self.class_names[j], float(self.probabilities[i, j])) for j in order]


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class SampleSpec:
    """What one raw sample of the run's dataset looks like."""

    shape: tuple[int, ...]
    image: bool
    feature_names: tuple[str, ...] = ()
    label: str | int | None = None  # the label column of the training CSV
    label_position: int | None = None
    delimiter: str = ","
    signature: dict | None = None  # a typed CSV run: rows are read by header name, strings kept
    image_settings: dict | None = None  # an image-folder run: image_size, color_mode, crop_to_aspect_ratio, ...


def read_inputs(paths: list[str | Path], spec: SampleSpec, *, invert: bool = False) -> Inputs:
    """Read every input into one array of raw samples of ``spec.shape``.

    Raises:
        DataError: a file is missing, unreadable, or cannot be converted to the run's samples.
    """
    if not paths:
        raise ConfigError("no INPUT given; pass CSV, .npy, image or IDX files.")
    if spec.image_settings is not None:
        return read_image_inputs(paths, spec.image_settings)
    arrays, names, notes = [], [], []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise DataError(f"input {path}: file not found.")
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            x, labels = _read_image(path, spec, invert), [path.name]
        elif spec.signature is not None:
            if suffix not in (".csv", ".tsv", ".txt"):
                raise DataError(f"input {path}: this run trained on a CSV with named, typed columns; pass a CSV "
                                "with a header row.")
            from nnrun.datasets.table import read_new_rows

            x, _, lines = read_new_rows(path, spec.signature)
            arrays.append(x)
            names.extend(f"{path.name}:{line}" for line in lines)
            continue
        elif suffix in (".csv", ".tsv", ".txt"):
            x, labels = _read_csv(path, spec)
        elif suffix == ".npy":
            x = _to_samples(_load_npy(path), spec, path)
            labels = [f"{path.name}[{i}]" for i in range(len(x))]
        else:
            x = _to_samples(_read_idx(path), spec, path)
            labels = [f"{path.name}[{i}]" for i in range(len(x))]
        if spec.image and suffix not in IMAGE_SUFFIXES and len(x) and float(np.max(x)) <= 1.0:
            notes.append(f"{path.name}: values lie in [0, 1], but the run's images are 0-255 before preprocessing; "
                         "pass raw pixel values.")  # fmt: skip
        if invert and spec.image and suffix not in IMAGE_SUFFIXES:
            x = 255 - x
        arrays.append(np.asarray(x, dtype=np.float32))
        names.extend(labels)
    return Inputs(np.concatenate(arrays) if len(arrays) > 1 else arrays[0], names, notes)


def read_image_inputs(paths: list[str | Path], settings: dict) -> Inputs:
    """Image files and folders of them, decoded and resized as the run's training images were."""
    from nnrun.datasets.images import IMAGE_EXTENSIONS, decode_images, walk_images

    files: list[str] = []
    skipped: list[str] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(walk_images(path, skipped)[0])  # the files training would have read, no others
            if not found:
                raise DataError(f"input {path}: a folder with no images ({', '.join(IMAGE_EXTENSIONS)}).")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_EXTENSIONS:  # what the run's decoder reads (no .webp, .tif)
                raise DataError(f"input {path}: this run trained on images; pass image files "
                                f"({', '.join(IMAGE_EXTENSIONS)}) or folders of them.")
            files.append(str(path))
        else:
            raise DataError(f"input {path}: file not found.")
    decoded = decode_images(files, settings)
    if not len(decoded.kept):
        raise DataError(f"no input could be decoded as an image: {decoded.skipped[0]}")
    names = [files[i] for i in decoded.kept]
    return Inputs(decoded.images, names, [f"skipped {s}" for s in skipped] + decoded.notes)


def _read_image(path: Path, spec: SampleSpec, invert: bool) -> np.ndarray:
    if not spec.image:
        raise DataError(f"input {path} is an image, but this run trained on rows of {spec.shape[0]} features; pass a CSV or .npy.")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            gray = image.convert("L")
            size = (spec.shape[1], spec.shape[0])  # PIL counts width first
            if gray.size != size:
                gray = gray.resize(size, Image.Resampling.LANCZOS)
            pixels = np.asarray(gray, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"input {path}: cannot read it as an image ({first_line(exc)}). Use a PNG or JPEG file.") from None
    if invert:  # dark strokes on a light background -> the datasets' light on dark
        pixels = 255 - pixels
    return pixels[np.newaxis]


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"input {path}: not a readable .npy array ({first_line(exc)}).") from None
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"input {path}: array of dtype {array.dtype}; expected numbers.")
    return array


def _read_idx(path: Path) -> np.ndarray:
    from nnrun.datasets import read_idx

    try:
        return read_idx(path)
    except DataError as exc:
        raise DataError(f"input {exc} Inputs are CSV, .npy, PNG/JPEG images or IDX files.") from None


def _to_samples(array: np.ndarray, spec: SampleSpec, path: Path) -> np.ndarray:
    """One sample or a batch, in any layout with the right number of values per sample."""
    size = int(np.prod(spec.shape))
    if array.shape == spec.shape:
        return array[np.newaxis]
    if array.ndim >= 1 and array.shape[1:] == spec.shape:
        return array
    if array.ndim >= 2 and int(np.prod(array.shape[1:])) == size:  # (n, 784), (n, 28, 28, 1)
        return array.reshape(len(array), *spec.shape)
    if array.ndim == 1 and array.size == size:
        return array.reshape(1, *spec.shape)
    what = f"{spec.shape[0]}x{spec.shape[1]} images" if spec.image else f"rows of {spec.shape[0]} features"
    raise DataError(
        f"input {path}: array of shape {array.shape} cannot be converted to samples of shape {spec.shape} "
        f"({size} values each); the run trained on {what}."
    )


def _read_csv(path: Path, spec: SampleSpec) -> tuple[np.ndarray, list[str]]:
    from nnrun.datasets.csv import is_number, numeric_cells, read_rows

    delimiter = "\t" if path.suffix.lower() == ".tsv" else spec.delimiter
    path, rows = read_rows(path, delimiter=delimiter, key="input")
    # A header names its columns: no cell of it is a number (a row with one bad cell is data).
    header = None if any(is_number(c) for c in rows[0][1]) else [c.strip() for c in rows[0][1]]
    body = rows[1:] if header else rows
    if not body:
        raise DataError(f"input {path}: a header but no rows of data.")
    width = len(body[0][1])
    for line, row in body:
        if len(row) != width:
            raise DataError(f"input {path}: row {line} has {len(row)} cells, the first has {width}.")
    columns = _csv_columns(path, spec, header, width)
    names = [f"'{n}'" for n in header] if header else [str(i + 1) for i in range(width)]
    values = numeric_cells(body, columns, names, f"input {path}", "Every feature must be a number.")
    x = _to_samples(values, spec, path) if spec.image else values
    return x, [f"{path.name}:{line}" for line, _ in body]


def _csv_columns(path: Path, spec: SampleSpec, header: list[str] | None, width: int) -> list[int]:
    """Indices of the feature columns: by name with a header, else by count (label column dropped)."""
    count = int(np.prod(spec.shape))
    if header and spec.feature_names:
        missing = [n for n in spec.feature_names if n not in header]
        if missing:
            raise DataError(
                f"input {path}: wrong features: no column {missing[0]!r}; the run trained on "
                f"{count} features ({', '.join(spec.feature_names)})."
            )
        return [header.index(n) for n in spec.feature_names]
    if header and spec.image:
        columns = [i for i, n in enumerate(header) if n.lower() != "label"]
        return columns if len(columns) == count else _bad_width(path, spec, width)
    if width == count:
        return list(range(width))
    if width == count + 1:
        skip = spec.label_position if spec.label_position is not None else (0 if spec.image else width - 1)
        return [i for i in range(width) if i != skip % width]
    return _bad_width(path, spec, width)


def _bad_width(path: Path, spec: SampleSpec, width: int) -> list[int]:
    count = int(np.prod(spec.shape))
    named = f" ({', '.join(spec.feature_names)})" if spec.feature_names else ""
    raise DataError(
        f"input {path}: wrong number of features: {width} columns, but the run trained on {count} features{named}; "
        f"give {count} columns, or {count + 1} with the label."
    )


# ------------------------------------------------------------------ predict


def sample_spec(trained: Any) -> SampleSpec:
    """What one raw sample of the run is, from its input signature."""
    signature = trained.signature
    return SampleSpec(
        shape=tuple(signature["sample_shape"]), image=trained.image, feature_names=tuple(signature["feature_names"]),
        label=signature.get("label"), label_position=signature.get("label_position"),
        delimiter=signature.get("delimiter", ","), signature=signature if trained.typed else None,
        image_settings={k: signature[k] for k in ("image_size", "color_mode", "crop_to_aspect_ratio", "interpolation")}
        if "image_size" in signature else None,
    )  # fmt: skip


def predict_run(path: str | Path, inputs: list[str | Path], *, top_k: int = 3, invert: bool = False) -> Predictions:
    """Predict the class of every input sample with the run's model and saved preprocessing.

    Raises:
        ConfigError: a bad ``top_k``.
        RunDirError: the run has no usable model or preprocessing.
        DataError: an input cannot be read or converted.
    """
    from nnrun.trained import load_trained

    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}.")
    trained = load_trained(path)
    class_names = trained.class_names
    read = read_inputs(inputs, sample_spec(trained), invert=invert)
    try:
        outputs = trained.predict(read.x)
    except DataError as exc:
        at = getattr(exc, "sample", None)
        where = f"{read.names[at]}: " if at is not None and at < len(read.names) else "the inputs do not fit the run's preprocessing: "
        raise DataError(f"{where}{exc}") from None
    notes = read.notes + trained.pipeline.notes()
    if trained.regression:
        return Predictions(read.names, outputs, (), 1, notes, target=trained.signature.get("label"))
    return Predictions(read.names, outputs, tuple(class_names), min(top_k, len(class_names)), notes)


# ------------------------------------------------------------------ output


def predictions_csv(pred: Predictions) -> str:
    """Every prediction: input, predicted class and its probability, the top-k, and each class's probability."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if pred.regression:
        writer.writerow(["input", f"predicted {pred.target}"])
        writer.writerows([name, f"{value:.6g}"] for name, value in zip(pred.names, pred.probabilities[:, 0]))
        return buffer.getvalue()
    writer.writerow(["input", "predicted", "probability", "top_k", *pred.class_names])
    for i, name in enumerate(pred.names):
        k = int(pred.predicted[i])
        top = "; ".join(f"{c}:{p:.6f}" for c, p in pred.top(i))
        writer.writerow([name, pred.class_names[k], f"{pred.probabilities[i, k]:.6f}", top,
                         *(f"{p:.6f}" for p in pred.probabilities[i])])  # fmt: skip
    return buffer.getvalue()


def render_predictions(pred: Predictions, *, limit: int = SHOWN_ROWS) -> list[Any]:
    """A rich table of the first ``limit`` predictions (top-k only for more than two classes)."""
    from rich.markup import escape
    from rich.table import Table

    if pred.regression:
        table = Table(header_style="bold")
        table.add_column("input")
        table.add_column(f"predicted {pred.target}", justify="right")
        for name, value in zip(pred.names[:limit], pred.probabilities[:limit, 0]):
            table.add_row(escape(name), f"[bold]{value:.6g}[/]")
        out: list[Any] = [f"[yellow]note:[/] {escape(n)}" for n in pred.notes] + [table]
        if len(pred.names) > limit:
            out.append(f"[dim]... {len(pred.names) - limit:,} more rows; --output FILE.csv writes all {len(pred.names):,}.[/]")
        return out
    multi = len(pred.class_names) > 2
    table = Table(header_style="bold")
    table.add_column("input")
    table.add_column("predicted")
    table.add_column("probability", justify="right")
    if multi:
        table.add_column(f"top {pred.top_k}")
    for i, name in enumerate(pred.names[:limit]):
        k = int(pred.predicted[i])
        row = [escape(name), f"[bold]{escape(pred.class_names[k])}[/]", f"{pred.probabilities[i, k]:.4f}"]
        if multi:
            row.append("\n".join(f"{p:.3f} {escape(c)}" for c, p in pred.top(i)))  # one per line: never cut mid-name
        table.add_row(*row)
    out: list[Any] = [f"[yellow]note:[/] {escape(n)}" for n in pred.notes] + [table]
    if len(pred.names) > limit:
        out.append(f"[dim]... {len(pred.names) - limit:,} more rows; --output FILE.csv writes all {len(pred.names):,}.[/]")
    return out
