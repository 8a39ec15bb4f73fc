"""Your own images: a folder with one sub-folder per class, decoded once into memory by ``tf.data``.

``dataset.name: images`` reads ``path/<class>/**/*.jpg|jpeg|png|bmp|gif``; the class names are the
sub-folders' names, sorted (as ``keras.utils.image_dataset_from_directory`` does). The flow:

1. ``list_image_folder`` lists the files (names and sizes only, no file is opened), follows folder
   links once (a link loop is reported and skipped), and checks the folder before anything trains:
   a missing path, no class folders, an empty class folder, a single class.
2. ``load_image_files`` shuffles the files by ``split_seed`` (as Keras shuffles file paths before its
   validation split), holds out ``test`` (a fraction, stratified per class) unless ``test_path``
   names a folder, and returns a ``Dataset`` whose ``x`` arrays are file paths; ``make_splits``
   then applies ``limit``, ``--smoke`` and ``validation`` to the paths, so nothing unused is decoded.
3. ``decode_dataset`` decodes every kept file once, in parallel (``tf.data`` map with
   ``AUTOTUNE``, then batched and prefetched), resizes it to ``image_size`` (bilinear, as Keras;
   ``crop_to_aspect_ratio`` crops the centre first) and converts it to ``color_mode``. The pixels
   are kept as uint8, 0-255, in memory: an epoch then reads memory, not files (the ``cache()``
   choice; a float32 copy would take four times the memory). Files that cannot be decoded are
   skipped, each named on one line (a count past 10).

``decode_images`` is also what ``predict`` uses, so new images are resized exactly like training's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from nnrun.errors import DataError, DataUnavailable

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
#: Larger images are skipped before they are decoded: 100 megapixels is 300 MB of RGB pixels.
MAX_PIXELS = 100_000_000
#: Images smaller than this on a side are decoded and enlarged, with a note: likely not a photo.
TINY_SIDE = 4
#: Skipped files named one by one; past this, a count.
NAMED_SKIPS = 10
#: The decoded uint8 set (and a preprocessing step's float32 copy of it) may each take at most this share of the
#: memory available then.
MEMORY_SHARE = 0.5


@dataclass
class ImageFiles:
    """The image files of a class-folder tree: paths, integer labels, class names, and what was skipped."""

    root: Path
    paths: list[str]
    labels: np.ndarray
    class_names: tuple[str, ...]
    skipped: list[str] = field(default_factory=list)  # one "path: reason" per file or link left out
    ignored: int = 0  # files without an image extension

    def counts(self) -> dict[str, int]:
        found = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, found)}


def resolve_folder(path: str, key: str) -> Path:
    """A folder named in the config: as given (relative to the current folder), else under ``$NNRUN_DATA_DIR``."""
    folder = Path(path).expanduser()
    data_dir = os.environ.get("NNRUN_DATA_DIR")
    if not folder.exists() and not folder.is_absolute() and data_dir and (Path(data_dir) / folder).exists():
        folder = Path(data_dir) / folder
    if not folder.exists():
        where = f" (nor under $NNRUN_DATA_DIR={data_dir})" if data_dir and not folder.is_absolute() else ""
        raise DataUnavailable(f"{key}: folder '{path}' does not exist{where}; expected a folder with one sub-folder of "
                        f"images per class, e.g. {path.rstrip('/')}/cats/*.jpg. Fix the path in the config.")
    if not folder.is_dir():
        raise DataError(f"{key}: '{path}' is a file; expected a folder with one sub-folder of images per class "
                        f"(e.g. {folder.parent}/cats/*.jpg). Point {key} at the folder.")
    return folder


def list_image_folder(path: str, key: str = "dataset.path", class_names: tuple[str, ...] | None = None) -> ImageFiles:
    """List ``path/<class>/**/<image>`` without opening a file.

    Args:
        path: the folder; relative paths are tried from the current folder, then ``$NNRUN_DATA_DIR``.
        key: the config key named in errors.
        class_names: the training folder's classes (for ``test_path``): a class that training lacks is an error.

    Raises:
        DataError: no such folder, no class folders, an empty class folder, a single class.
    """
    root = resolve_folder(path, key)
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise DataUnavailable(f"{key}: cannot list '{path}' ({exc.strerror}). Check its permissions.") from None
    skipped: list[str] = []
    classes = []
    for entry in entries:
        try:
            if entry.is_dir() and not entry.name.startswith("."):
                classes.append(entry.name)
        except OSError as exc:  # a link to itself: ELOOP
            skipped.append(f"{entry.path}: {exc.strerror.lower()}")
    loose = [e.name for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS)]
    if not classes:
        found = f" It holds {len(loose)} image files directly, but no class folders." if loose else ""
        raise DataError(f"{key}: '{path}' has no sub-folders; expected one sub-folder of images per class "
                        f"(e.g. {path.rstrip('/')}/cats/*.jpg, {path.rstrip('/')}/dogs/*.jpg).{found} "
                        "Move the images into one folder per class.")
    if class_names is not None:
        extra = [c for c in classes if c not in class_names]
        if extra:
            raise DataError(f"{key}: class folder '{extra[0]}' is not one of the training folder's classes "
                            f"({', '.join(class_names)}); rename or remove it.")
    names = tuple(class_names if class_names is not None else classes)
    paths: list[str] = []
    labels: list[int] = []
    ignored = 0
    for label, name in enumerate(names):
        if name not in classes:
            continue
        files, n_ignored = walk_images(root / name, skipped)
        ignored += n_ignored
        if not files and class_names is None:
            raise DataError(f"{key}: class folder '{root / name}' has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                            "add images to it or remove the folder.")
        paths.extend(files)
        labels.extend([label] * len(files))
    if class_names is None and len(names) < 2:
        raise DataError(f"{key}: '{path}' has one class folder ('{names[0]}'); a classifier needs at least two. "
                        "Add a sub-folder of images for each other class.")
    if not paths:
        raise DataError(f"{key}: '{path}' has no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders.")
    return ImageFiles(root, paths, np.asarray(labels, dtype=np.int64), names, skipped, ignored)


def walk_images(folder: Path, skipped: list[str]) -> tuple[list[str], int]:
    """Image files below ``folder`` and the count of other files; hidden ones are passed over, linked folders are
    followed once (a loop is skipped, into ``skipped``)."""
    files: list[str] = []
    ignored = 0
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            info = current.stat()
        except OSError as exc:
            skipped.append(f"{current}: {(exc.strerror or str(exc)).lower()}")
            continue
        if (info.st_dev, info.st_ino) in seen:  # two links to one folder: its images count once
            continue
        seen.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            skipped.append(f"{current}: cannot list it ({(exc.strerror or str(exc)).lower()})")
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    target = os.path.realpath(entry.path)
                    here = os.path.realpath(current)
                    if entry.is_symlink() and (here == target or here.startswith(target + os.sep)):
                        skipped.append(f"{entry.path}: a folder link that loops back to {target}")
                    else:
                        stack.append(Path(entry.path))
                    continue
                is_image = entry.name.lower().endswith(IMAGE_EXTENSIONS)
                if is_image and entry.is_file():
                    files.append(entry.path)
                elif is_image:  # a dangling or looping link
                    entry.stat()
                else:
                    ignored += 1
            except OSError as exc:
                skipped.append(f"{entry.path}: {(exc.strerror or str(exc)).lower()}")
    return sorted(files), ignored


def load_image_files(config: Any) -> tuple[ImageFiles, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The train and test file paths and labels of an ``images`` config, shuffled and split by ``split_seed``."""
    from nnrun.datasets.splits import train_test_split

    files = list_image_folder(config.path)
    paths = np.asarray(files.paths, dtype=object)
    rng = np.random.RandomState(config.split_seed)
    order = rng.permutation(len(paths))
    paths, labels = paths[order], files.labels[order]
    skipped = list(files.skipped)
    if config.test_path:
        test = list_image_folder(config.test_path, "dataset.test_path", files.class_names)
        test_order = np.random.RandomState(config.split_seed).permutation(len(test.paths))
        x_test, y_test = np.asarray(test.paths, dtype=object)[test_order], test.labels[test_order]
        x_train, y_train = paths, labels
        skipped += test.skipped
    else:
        if len(paths) < 2 * len(files.class_names):
            raise DataError(f"dataset.path: '{config.path}' has {len(paths)} images for {len(files.class_names)} "
                            "classes; holding out a test fraction needs at least two per class. Add images, or "
                            "name a test folder with dataset.test_path.")
        try:
            train_idx, test_idx = train_test_split(len(paths), config.test, config.split_seed, labels, True)
        except DataError:  # a class too small to stratify: the plain seeded split
            train_idx, test_idx = train_test_split(len(paths), config.test, config.split_seed, labels, False)
        train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)  # keep the seeded shuffle's order
        x_train, y_train, x_test, y_test = paths[train_idx], labels[train_idx], paths[test_idx], labels[test_idx]
    return files, x_train, y_train, x_test, y_test, skipped


def image_settings(config: Any) -> dict[str, Any]:
    """What the input signature records, so that ``predict`` resizes new images as training did."""
    return {"image_size": list(config.image_size), "color_mode": config.color_mode,
            "crop_to_aspect_ratio": bool(config.crop_to_aspect_ratio), "interpolation": config.interpolation}


def channels(color_mode: str) -> int:
    return 1 if color_mode == "grayscale" else 3


def decode_dataset(data: Any, settings: dict[str, Any], only: str | None = None) -> Any:
    """Decode a ``Dataset`` whose ``x`` arrays hold file paths into uint8 images; skipped files become notes.

    ``only``: decode just that split (``evaluate``, ``report`` and ``export --check`` need one); the others are empty.
    """
    splits = [("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)]
    same = data.x_val is data.x_test  # validation: test decodes the test files once
    if data.x_val is not None and not same:
        splits.append(("validation", data.x_val, data.y_val))
    if only is not None:
        splits = [split for split in splits if split[0] == ("test" if same and only == "validation" else only)]
    height, width = settings["image_size"]
    total = sum(len(x) for _, x, _ in splits)
    _check_memory(total, height * width * channels(settings["color_mode"]))
    all_paths = [p for _, x, _ in splits for p in x]
    started = time.perf_counter()
    decoded = decode_images(all_paths, settings)
    seconds = time.perf_counter() - started
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    at = 0
    for name, x, y in splits:  # each split a slice (a view, not a copy) of the decoded images, which keep their order
        low, high = np.searchsorted(decoded.kept, [at, at + len(x)])
        if low == high:
            raise DataError(f"dataset: no image of the {name} split could be decoded ({len(x)} files); "
                            f"{decoded.skipped[0] if decoded.skipped else ''}")
        out[name] = (decoded.images[low:high], np.asarray(y)[decoded.kept[low:high] - at])
        at += len(x)
    notes = list(data.notes) + decoded.notes
    notes.append(f"decoded {len(decoded.kept):,} images ({height}x{width} {settings['color_mode']}) in "
                 f"{seconds:.1f} s, {len(decoded.kept) / max(seconds, 1e-9):,.0f} images/s")
    def empty() -> tuple[np.ndarray, np.ndarray]:  # a split not decoded; its own arrays (x_val is x_test means same)
        return np.zeros((0, height, width, channels(settings["color_mode"])), np.uint8), np.zeros(0, np.int64)

    train, test = out.get("train") or empty(), out.get("test") or empty()
    x_val, y_val = test if same else out.get("validation") or (empty() if data.x_val is not None else (None, None))
    return replace(data, x_train=train[0], y_train=train[1], x_test=test[0], y_test=test[1], x_val=x_val, y_val=y_val,
                   notes=notes)  # fmt: skip


def _check_memory(count: int, values_per_image: int) -> None:
    need = count * values_per_image
    available = available_memory()
    if available and need > MEMORY_SHARE * available:
        raise DataUnavailable(f"dataset: {count:,} images of {values_per_image:,} values take {need / 2**30:.1f} GiB decoded, "
                        f"more than half of the {available / 2**30:.1f} GiB available; lower dataset.image_size or "
                        "set dataset.limit.")


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class Decoded:
    images: np.ndarray  # (kept, height, width, channels) uint8
    kept: np.ndarray  # indices into the paths given
    skipped: list[str]
    notes: list[str]


def decode_images(paths: list[str], settings: dict[str, Any], *, batch_size: int = 256) -> Decoded:
    """Decode, resize and convert image files in parallel; files that fail are skipped and named."""
    from nnrun.tf import import_keras, quiet_stderr

    import_keras()
    import tensorflow as tf
    height, width = settings["image_size"]
    depth = channels(settings["color_mode"])
    load = _loader(tf, (height, width), depth, settings["crop_to_aspect_ratio"], settings["interpolation"])
    dataset = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), np.asarray(paths, dtype=str)))
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).ignore_errors()
    dataset = dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    images = np.empty((len(paths), height, width, depth), dtype=np.uint8)
    kept = np.zeros(len(paths), dtype=bool)
    status = np.zeros(len(paths), dtype=np.int64)
    native = np.zeros((len(paths), 3), dtype=np.int64)
    with quiet_stderr():
        for index, pixels, code, shape in dataset.as_numpy_iterator():
            images[index] = pixels
            kept[index] = True
            status[index] = code
            native[index] = shape
        too_large = kept & (status == 1)
        kept &= status == 0
        skipped = [f"{paths[i]}: {_why_not_decoded(tf, paths[i])}" for i in np.flatnonzero(~kept & ~too_large)]
    skipped += [f"{paths[i]}: {native[i, 1]}x{native[i, 0]} pixels, more than the {MAX_PIXELS // 1_000_000} megapixels "
                "nnrun decodes; shrink it" for i in np.flatnonzero(too_large)]
    notes = []
    if skipped:
        shown = "; ".join(skipped[:NAMED_SKIPS])
        more = f"; and {len(skipped) - NAMED_SKIPS} more" if len(skipped) > NAMED_SKIPS else ""
        notes.append(f"skipped {len(skipped)} file(s): {shown}{more}")
    channel_counts = native[kept, 2]
    other = int(np.sum(channel_counts < 3)) if depth == 3 else int(np.sum(channel_counts >= 3))
    if other:
        notes.append(f"{other} {'grayscale' if depth == 3 else 'colour'} image(s) converted to "
                     f"{settings['color_mode']} (dataset.color_mode)")
    tiny = np.flatnonzero(kept & (np.minimum(native[:, 0], native[:, 1]) < TINY_SIDE))
    if len(tiny):
        notes.append(f"{len(tiny)} image(s) smaller than {TINY_SIDE} pixels on a side were enlarged to "
                     f"{height}x{width}, e.g. {paths[tiny[0]]} ({native[tiny[0], 1]}x{native[tiny[0], 0]})")
    index = np.flatnonzero(kept)
    return Decoded(images if len(index) == len(paths) else images[index], index, skipped, notes)  # no copy if all


def _why_not_decoded(tf: Any, path: str) -> str:
    """The reason one file failed (run again eagerly, for the few that fail)."""
    try:
        if os.path.getsize(path) == 0:
            return "an empty file (0 bytes)"
        tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
    except Exception as exc:  # noqa: BLE001 - TensorFlow's errors carry the decoder's reason
        message = str(getattr(exc, "message", exc)).strip().splitlines()[-1]
        message = message.split("}} ")[-1].split(" [Op:")[0].strip().rstrip(".")
        return f"not a decodable image ({message})" if message else "not a decodable image"
    return "cannot be decoded"


def _loader(tf: Any, size: tuple[int, int], depth: int, crop: bool, interpolation: str):
    """The per-file function of the ``tf.data`` map: index and path -> (index, pixels, status, native shape)."""
    from nnrun.tf import import_keras

    keras = import_keras()
    png = tf.constant(b"\x89PNG\r\n\x1a\n")

    def header_size(contents):
        # PNG keeps width and height at bytes 16-23; JPEG's come from its SOF marker; others are decoded to know.
        def png_size():
            raw = tf.cast(tf.io.decode_raw(tf.strings.substr(contents, 16, 8), tf.uint8), tf.int64)
            width = raw[0] * 2**24 + raw[1] * 2**16 + raw[2] * 2**8 + raw[3]
            return tf.stack([raw[4] * 2**24 + raw[5] * 2**16 + raw[6] * 2**8 + raw[7], width])

        is_png = tf.logical_and(tf.strings.length(contents) >= 24, tf.equal(tf.strings.substr(contents, 0, 8), png))
        return tf.case([(is_png, png_size),
                        (tf.io.is_jpeg(contents), lambda: tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64))],
                       default=lambda: tf.zeros([2], tf.int64))

    def convert(image):
        native = tf.shape(image)[-1]
        if depth == 3:
            return tf.case([(tf.equal(native, 1), lambda: tf.image.grayscale_to_rgb(image)),
                            (tf.equal(native, 2), lambda: tf.image.grayscale_to_rgb(image[..., :1]))],
                           default=lambda: image[..., :3])
        return tf.case([(tf.equal(native, 1), lambda: image), (tf.equal(native, 2), lambda: image[..., :1])],
                       default=lambda: tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image[..., :3], tf.float32))),
                                               tf.uint8))

    def load(index, path):
        contents = tf.io.read_file(path)
        header = header_size(contents)
        too_large = header[0] * header[1] > MAX_PIXELS

        def decode():
            image = tf.io.decode_image(contents, channels=0, expand_animations=False)
            shape = tf.cast(tf.shape(image), tf.int64)
            image = convert(image)
            image.set_shape([None, None, depth])
            same = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))
            resized = tf.cond(same, lambda: tf.cast(image, tf.float32),
                              lambda: keras.ops.image.resize(tf.cast(image, tf.float32), size, interpolation=interpolation,
                                                             crop_to_aspect_ratio=crop))
            pixels = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
            return pixels, tf.constant(0, tf.int64), shape

        def skip():
            return tf.zeros((*size, depth), tf.uint8), tf.constant(1, tf.int64), tf.concat([header, [0]], 0)

        pixels, status, shape = tf.cond(too_large, skip, decode)
        pixels.set_shape((*size, depth))
        return index, pixels, status, shape

    return load
