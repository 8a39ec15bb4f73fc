"""Datasets: numpy arrays for train / validation / test, and the class names.

Image datasets (MNIST, Fashion-MNIST) are read from the four IDX files,
gzipped or raw, found offline first and downloaded by Keras only as the last
resort. Every payload is checked against its published SHA-256. Tabular
datasets come from a CSV (the diabetes CSV ships inside nnrun).

Nothing here imports TensorFlow unless it has to download.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nnrun.errors import DataError

DATA_DIR_ENV = "NNRUN_DATA_DIR"
BUILTIN_DIABETES = Path(__file__).parent / "data" / "diabetes.csv"

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the uncompressed IDX payloads (../shared/datasets/README.md).
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

FOLDER_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}
DISPLAY_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


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

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

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


# ----------------------------------------------------------------- IDX files


def read_idx(path: str | Path, expected_sha256: str | None = None) -> np.ndarray:
    """Read one IDX file (``.gz`` or raw) into a numpy array.

    Raises:
        DataError: the file is missing, a truncated or corrupt gzip, its header
            does not match its size, or its payload fails the checksum.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}.") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(
                f"{path}: truncated or corrupt gzip ({exc}). Replace the file with a fresh copy."
            ) from None
    array = parse_idx(raw, str(path))  # header problems first: they say more than a checksum
    if expected_sha256 is not None:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != expected_sha256:
            raise DataError(
                f"{path}: checksum mismatch: SHA-256 of the payload is {digest[:16]}..., "
                f"expected {expected_sha256[:16]}.... The file is damaged or not the published one; replace it."
            )
    return array


def parse_idx(raw: bytes, source: str = "IDX data") -> np.ndarray:
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{source}: not an IDX file (magic number {raw[:4].hex() or 'missing'}, expected 0000 + type + rank)."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{source}: IDX header says rank {ndim} but the file is only {len(raw)} bytes.")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{source}: IDX header says shape {tuple(shape)} ({expected} bytes of data) "
            f"but the file holds {len(raw) - header}. The file is truncated or corrupt; replace it."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (used to verify Keras's mnist.npz, and by tests)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _find_idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def idx_search_path(name: str, path: str | None) -> list[Path]:
    """Folders searched for the IDX files, in order."""
    places: list[Path] = []
    if path:
        places.append(Path(path).expanduser())
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        places.append(Path(env).expanduser() / FOLDER_NAMES[name])
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    places.append(keras_home / "datasets" / FOLDER_NAMES[name])
    if name == "fashion_mnist":
        places.append(Path("/usr/share/datasets/fashion-mnist"))
    return places


def load_idx_dataset(
    name: str,
    path: str | None = None,
    *,
    download: Callable[[str], tuple] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Find and read MNIST or Fashion-MNIST; return ``x_train, y_train, x_test, y_test, source``."""
    places = idx_search_path(name, path)
    if path and not Path(path).expanduser().is_dir():
        raise DataError(f"dataset.path {path}: folder not found. Point it at the folder with the four IDX files.")
    for folder in places:
        files = {key: _find_idx_file(folder, stem) for key, stem in IDX_FILES.items()}
        if all(files.values()):
            arrays = read_cache(name, files)
            if arrays is None:
                arrays = {k: read_idx(f, CHECKSUMS[name][IDX_FILES[k]]) for k, f in files.items()}
                _check_pairs(arrays, folder)
                write_cache(name, files, arrays)
            return (
                arrays["train_images"], arrays["train_labels"],
                arrays["test_images"], arrays["test_labels"], str(folder),
            )  # fmt: skip
        if path and folder == places[0]:
            missing = [IDX_FILES[k] for k, f in files.items() if f is None]
            raise DataError(
                f"dataset.path {path}: missing {', '.join(missing)} (.gz or raw). "
                "Put all four IDX files in that folder."
            )
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    npz = keras_home / "datasets" / "mnist.npz"
    if name == "mnist" and npz.is_file():
        return (*_read_keras_npz(npz), str(npz))
    download = download or _keras_download
    try:
        x_train, y_train, x_test, y_test = download(name)
    except Exception as exc:  # any failure: offline, DNS, HTTP, a corrupt download
        looked = ", ".join(str(p) for p in places)
        env_hint = "" if os.environ.get(DATA_DIR_ENV) else f" (set {DATA_DIR_ENV} to a folder with a {FOLDER_NAMES[name]}/ subfolder)"
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise DataError(
            f"{DISPLAY_NAMES[name]} not found. Looked in: {looked}{env_hint}. "
            f"Download failed: {reason}. Put the four IDX files ({', '.join(IDX_FILES.values())}, "
            "gzipped or raw) in one of those folders, or set dataset.path."
        ) from None
    return x_train, y_train, x_test, y_test, "keras download"


# ------------------------------------------------------------ decoded cache
#
# Decoding MNIST (gunzip + SHA-256 of 55 MB) costs about half a second per run.
# The verified arrays are kept as .npy files, keyed by the source files' paths,
# sizes and modification times and by the expected checksums, and memory-mapped
# on later loads. A changed file gets a new key, so it is read and verified again.

CACHE_ENV = "NNRUN_CACHE_DIR"


def cache_root() -> Path | None:
    """Where decoded datasets are cached; None when caching is off (NNRUN_CACHE_DIR=off)."""
    value = os.environ.get(CACHE_ENV)
    if value == "off":
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nnrun" / "datasets"


def _cache_dir(name: str, files: dict[str, Path]) -> Path | None:
    root = cache_root()
    if root is None:
        return None
    digest = hashlib.sha256(name.encode())
    for key in sorted(files):
        stat = files[key].stat()
        digest.update(f"|{key}|{files[key].resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    digest.update("|".join(sorted(CHECKSUMS.get(name, {}).values())).encode())
    return root / f"{name}-{digest.hexdigest()[:24]}"


def read_cache(name: str, files: dict[str, Path]) -> dict[str, np.ndarray] | None:
    folder = _cache_dir(name, files)
    if folder is None or not folder.is_dir():
        return None
    try:
        return {key: np.load(folder / f"{key}.npy", mmap_mode="r") for key in files}
    except (OSError, ValueError):
        return None  # a damaged cache is ignored and rewritten


def write_cache(name: str, files: dict[str, Path], arrays: dict[str, np.ndarray]) -> None:
    """Best effort: a cache that cannot be written is simply not used."""
    folder = _cache_dir(name, files)
    if folder is None or folder.exists():
        return
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True)
        for key, array in arrays.items():
            np.save(tmp / f"{key}.npy", array)
        os.rename(tmp, folder)  # atomic: readers see all four arrays or none
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _check_pairs(arrays: dict[str, np.ndarray], folder: Path) -> None:
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_images != n_labels:
            raise DataError(f"{folder}: {split} has {n_images} images but {n_labels} labels.")


def _read_keras_npz(path: Path) -> tuple[np.ndarray, ...]:
    try:
        with np.load(path) as data:
            arrays = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    except Exception as exc:
        raise DataError(f"{path}: cannot read Keras's MNIST cache ({exc}). Delete it to download again.") from None
    sums = CHECKSUMS["mnist"]
    for array, stem in zip(arrays, IDX_FILES.values()):
        if hashlib.sha256(idx_bytes(array)).hexdigest() != sums[stem]:
            raise DataError(f"{path}: {stem} fails its checksum. Delete the file to download it again.")
    return arrays


def _keras_download(name: str) -> tuple[np.ndarray, ...]:
    from nnrun.tf import import_keras

    keras = import_keras()
    module = keras.datasets.mnist if name == "mnist" else keras.datasets.fashion_mnist
    (x_train, y_train), (x_test, y_test) = module.load_data()
    return x_train, y_train, x_test, y_test


# ---------------------------------------------------------------------- CSV


def read_csv_table(
    path: str | Path,
    *,
    label: str | int,
    features: list[str | int] | None = None,
    header: bool = True,
    delimiter: str = ",",
    key: str = "dataset.path",
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Read a numeric CSV; return ``x, y, class_names, feature_names``.

    ``y`` holds indices into ``class_names`` (the sorted distinct label values).
    Plain ``csv`` and numpy, not pandas: these files are small, and pandas
    would add ~40 MB to every training process.

    Raises:
        DataError: naming the file, row and column of the first bad cell.
    """
    import csv
    import io

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{key} {path}: file not found. Check the path.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file (cannot decode as UTF-8).") from None
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    try:
        rows = [(reader.line_num, row) for row in reader if row and any(cell.strip() for cell in row)]
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({exc}).") from None
    if not rows:
        raise DataError(f"{path}: the file is empty. A CSV needs at least one row of data.")
    if header:
        columns = [c.strip() for c in rows[0][1]]
        rows = rows[1:]
    else:
        columns = [str(i) for i in range(len(rows[0][1]))]
    if not rows:
        raise DataError(f"{path}: the file has a header but no rows of data.")
    for line, row in rows:
        if len(row) != len(columns):
            raise DataError(
                f"{path}: wrong column count: row {line} has {len(row)} cells, expected {len(columns)}. "
                "Every row needs the same number of cells."
            )

    def column(ref: str | int, what: str) -> int:
        if isinstance(ref, int):
            if not -len(columns) <= ref < len(columns):
                raise DataError(
                    f"{path}: {what} column index {ref} is out of range; the file has {len(columns)} columns."
                )
            return ref % len(columns)
        if ref not in columns:
            from nnrun.errors import did_you_mean

            raise DataError(
                f"{path}: {what} column '{ref}' is not in the file{did_you_mean(ref, columns)} "
                f"Columns: {', '.join(columns)}."
            )
        return columns.index(ref)

    label_col = column(label, "label")
    feature_cols = [column(f, "feature") for f in features] if features else [i for i in range(len(columns)) if i != label_col]
    if label_col in feature_cols:
        raise DataError(
            f"{path}: column '{columns[label_col]}' is both the label and a feature; remove it from dataset.features."
        )

    cells = [[row[i].strip() for i in feature_cols] for _, row in rows]
    try:
        x = np.array(cells, dtype=np.float64)
        ok = bool(np.isfinite(x).all())
    except ValueError:
        ok = False
    if not ok:
        for (line, _), values in zip(rows, cells):
            for col, cell in zip(feature_cols, values):
                try:
                    if np.isfinite(float(cell)):
                        continue
                except ValueError:
                    pass
                what = "missing value" if cell == "" or cell.lower() in ("nan", "na") else f"non-numeric cell {cell!r}"
                raise DataError(
                    f"{path}: {what} at row {line}, column '{columns[col]}'. "
                    "Every feature cell must be a number; fix or drop that row."
                )
    labels = [row[label_col].strip() for _, row in rows]
    for (line, _), value in zip(rows, labels):
        if value == "":
            raise DataError(f"{path}: missing value at row {line}, column '{columns[label_col]}' (the label).")
    try:
        numeric = np.array(labels, dtype=np.float64)
    except ValueError:
        numeric = None
    if numeric is not None:
        distinct = np.unique(numeric)
        class_names = tuple(_format_number(v) for v in distinct)
        y = np.searchsorted(distinct, numeric)
    else:
        distinct = np.unique(np.array(labels))
        class_names = tuple(str(v) for v in distinct)
        y = np.searchsorted(distinct, np.array(labels))
    if len(class_names) < 2:
        raise DataError(
            f"{path}: the label column '{columns[label_col]}' has a single class ({class_names[0]}); "
            "classification needs at least two. Check dataset.label."
        )
    return x.astype(np.float32), y.astype(np.int64), class_names, tuple(columns[i] for i in feature_cols)


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# -------------------------------------------------------------------- splits


def train_test_split(
    n: int, test_fraction: float, seed: int, y: np.ndarray | None = None, stratify: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of train and test.

    Without stratification this draws exactly the split of scikit-learn's
    ``train_test_split(test_size=f, random_state=seed)``, so results match the
    tutorials that use it.
    """
    n_test = int(np.ceil(test_fraction * n))
    n_train = n - n_test
    if n_train < 1 or n_test < 1:
        raise DataError(f"dataset.test_split {test_fraction} leaves an empty split of {n} rows.")
    rng = np.random.RandomState(seed)
    if not stratify:
        permutation = rng.permutation(n)
        return permutation[n_test : n_test + n_train], permutation[:n_test]
    train, test = [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        k = int(round(len(idx) * test_fraction))
        test.append(idx[:k])
        train.append(idx[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_dataset(config: Any, *, smoke: bool = False) -> Dataset:
    """Load the dataset a ``RunConfig.dataset`` section names and make its splits.

    Args:
        config: the ``dataset`` section of a RunConfig.
        smoke: keep a tiny subset (512 train, 256 test) for a seconds-long check.
    """
    name = config.name
    if name in ("mnist", "fashion_mnist"):
        x_train, y_train, x_test, y_test, source = load_idx_dataset(name, config.path)
        class_names = tuple(str(i) for i in range(10)) if name == "mnist" else FASHION_CLASSES
        data = Dataset(
            name=name, x_train=x_train, y_train=y_train.astype(np.int64), x_test=x_test,
            y_test=y_test.astype(np.int64), class_names=class_names, kind="image", source=source,
        )  # fmt: skip
    else:
        path = BUILTIN_DIABETES if name == "diabetes" else Path(config.path)
        x, y, class_names, feature_names = read_csv_table(
            path, label=config.label, features=config.features, header=config.header, delimiter=config.delimiter
        )
        train_idx, test_idx = train_test_split(len(x), config.test_split, config.split_seed, y, config.stratify)
        data = Dataset(
            name=name, x_train=x[train_idx], y_train=y[train_idx], x_test=x[test_idx], y_test=y[test_idx],
            class_names=class_names, feature_names=feature_names, source=str(path),
        )  # fmt: skip
    return make_splits(data, config, smoke=smoke)


def make_splits(data: Dataset, config: Any, *, smoke: bool = False) -> Dataset:
    """Apply ``limit`` and the validation source to a dataset's train/test arrays."""
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    limit = config.limit
    if smoke:
        limit = min(limit or 512, 512)
        x_test, y_test = x_test[:256], y_test[:256]
    if limit:
        x_train, y_train = x_train[:limit], y_train[:limit]
    x_val = y_val = None
    validation = config.validation
    if validation == "test":
        x_val, y_val = x_test, y_test
    elif isinstance(validation, float):
        # Keras's validation_split: the last fraction, before any shuffling.
        split = int(np.floor(len(x_train) * (1.0 - validation)))
        if split < 1 or split >= len(x_train):
            raise DataError(
                f"dataset.validation {validation} of {len(x_train)} training samples leaves an empty split; "
                "use a larger fraction or 'none'."
            )
        x_train, x_val, y_train, y_val = x_train[:split], x_train[split:], y_train[:split], y_train[split:]
    return replace(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, x_val=x_val, y_val=y_val)
