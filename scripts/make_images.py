"""Write image folders for nnrun's image examples and tests: no download, nothing big in the repo.

    python scripts/make_images.py mnist   [OUT]   # MNIST from $NNRUN_DATA_DIR as PNGs: OUT/train/<digit>/, OUT/test/<digit>/
    python scripts/make_images.py fashion [OUT]   # the same for Fashion-MNIST (class folders named after the clothes)
    python scripts/make_images.py shapes  [OUT]   # small RGB pictures of three shapes, of different sizes and formats

OUT defaults to data/<name>_png (or data/shapes), which git ignores; configs/mnist_png.yaml and
configs/shapes_rgb.yaml read from there. A folder that is already complete is left as it is.
Only numpy and Pillow are needed (no TensorFlow), so this takes seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
FASHION_FOLDERS = ("tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle_boot")


def write_idx_as_png(name: str, out: Path) -> int:
    """Write MNIST or Fashion-MNIST's train and test IDX files as PNGs into class folders; return the count."""
    done = out / "COMPLETE"
    if done.exists():  # before reading the dataset: `make smoke` calls this every time
        return 0
    sys.path.insert(0, str(ROOT))
    from nnrun.datasets import load_idx_dataset

    x_train, y_train, x_test, y_test, _ = load_idx_dataset("mnist" if name == "mnist" else "fashion_mnist", None)
    folders = [str(i) for i in range(10)] if name == "mnist" else list(FASHION_FOLDERS)
    count = 0
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        for folder in folders:
            (out / split / folder).mkdir(parents=True, exist_ok=True)
        for i, (pixels, label) in enumerate(zip(x, y)):
            Image.fromarray(pixels, mode="L").save(out / split / folders[int(label)] / f"{i:05d}.png", compress_level=1)
            count += 1
    done.write_text(f"{count} images\n")
    return count


def draw_shape(shape: str, size: tuple[int, int], rng: np.random.RandomState) -> Image.Image:
    """One RGB picture: a circle, square or triangle of a random colour on a random background."""
    width, height = size
    background = tuple(int(v) for v in rng.randint(0, 256, 3))
    colour = tuple(int(255 - v) for v in background)
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    scale = rng.uniform(0.5, 0.8) * min(size)
    cx = width / 2 + rng.uniform(-0.1, 0.1) * width
    cy = height / 2 + rng.uniform(-0.1, 0.1) * height
    r = scale / 2
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return image


SHAPES = ("circle", "square", "triangle")


def write_shapes(out: Path, per_class: int = 60, *, seed: int = 0, sizes: tuple[int, int] = (24, 96),
                 formats: tuple[str, ...] = ("png", "jpg", "bmp", "gif"), shapes: tuple[str, ...] = SHAPES) -> int:
    """Write ``per_class`` pictures of each shape, of random sizes and the given formats; return the count."""
    rng = np.random.RandomState(seed)
    count = 0
    for shape in shapes:
        (out / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (int(rng.randint(*sizes)), int(rng.randint(*sizes)))
            fmt = formats[i % len(formats)]
            draw_shape(shape, size, rng).save(out / shape / f"{shape}_{i:03d}.{fmt}")
            count += 1
    return count


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("mnist", "fashion", "shapes"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    name = argv[0]
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "data" / ("shapes" if name == "shapes" else f"{name}_png")
    count = write_shapes(out) if name == "shapes" else write_idx_as_png(name, out)
    print(f"{out}: {count} images written" if count else f"{out}: already complete")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
