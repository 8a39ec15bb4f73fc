"""MNIST and Fashion-MNIST: the four IDX files, found offline first, verified, and cached decoded.

The files are looked for in ``dataset.path``, ``$NNRUN_DATA_DIR``, the Keras cache and Debian's
dataset folder, and downloaded by Keras only as the last resort. Every payload is checked against
its published SHA-256. Decoded arrays are cached as memory-mapped ``.npy`` files.

Nothing here imports TensorFlow unless it has to download.
"""


from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from nnrun.errors import DataError, DataUnavailable, first_line
from nnrun.tf import keras_home

DATA_DIR_ENV = "NNRUN_DATA_DIR"

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
        raise DataUnavailable(f"{path}: file not found.") from None
    except OSError as exc:
        raise DataUnavailable(f"{path}: cannot read: {exc.strerror}.") from None
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
    places.append(keras_home() / "datasets" / FOLDER_NAMES[name])
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
        raise DataUnavailable(f"dataset.path {path}: folder not found. Point it at the folder with the four IDX files.")
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
            raise DataUnavailable(
                f"dataset.path {path}: missing {', '.join(missing)} (.gz or raw). "
                "Put all four IDX files in that folder."
            )
    npz = keras_home() / "datasets" / "mnist.npz"
    if name == "mnist" and npz.is_file():
        return (*_read_keras_npz(npz), str(npz))
    download = download or _keras_download
    try:
        x_train, y_train, x_test, y_test = download(name)
    except Exception as exc:  # any failure: offline, DNS, HTTP, a corrupt download
        looked = ", ".join(str(p) for p in places)
        env_hint = "" if os.environ.get(DATA_DIR_ENV) else f" (set {DATA_DIR_ENV} to a folder with a {FOLDER_NAMES[name]}/ subfolder)"
        reason = first_line(exc)[:120]
        raise DataUnavailable(
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


def cache_home() -> Path | None:
    """nnrun's cache folder: ``$NNRUN_CACHE_DIR``, else ``$XDG_CACHE_HOME/nnrun`` or ``~/.cache/nnrun``; None for ``off``.

    The decoded datasets and the XLA probe's timings (``nnrun.xla``) live here.
    """
    value = os.environ.get(CACHE_ENV)
    if value == "off":
        return None
    if value:
        return Path(value).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nnrun"


def cache_root() -> Path | None:
    """Where decoded datasets are cached: ``$NNRUN_CACHE_DIR`` itself, else ``~/.cache/nnrun/datasets``."""
    home = cache_home()
    if home is None or os.environ.get(CACHE_ENV):
        return home
    return home / "datasets"


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
