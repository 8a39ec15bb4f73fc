"""Benchmark: nnrun on an image folder against the keras.io tutorial's plain script, same folder, model, epochs.

    python scripts/make_images.py mnist        # data/mnist_png: MNIST as 70,000 PNG files in class folders
    python bench/images.py [--repeats 3] [--epochs 5]

Alternates ``bench/baselines/images_folder.py`` (``image_dataset_from_directory`` + ``prefetch`` + ``fit``) and
``nnrun train configs/mnist_png.yaml`` (the same network, rmsprop, batch 128, test folder as validation), each a
fresh process; reports whole-process wall time and peak RSS (medians, with min-max) and test accuracy, and their
ratios. Writes ``bench/results-images.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import BENCH, PYTHON, ROOT, child_env, fmt_spread, machine, machine_line, publish, run_child, spread  # noqa: E402

FOLDER = ROOT / "data" / "mnist_png"


def run_plain(epochs: int) -> dict:
    child = run_child([PYTHON, str(BENCH / "baselines" / "images_folder.py"), str(FOLDER)],
                      env=child_env(BENCH_EPOCHS=str(epochs), PYTHONPATH=str(BENCH / "baselines")))
    if child.returncode:
        raise SystemExit(f"plain script failed: {child.stderr[-2000:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    return {"wall": child.wall_s, "rss": child.peak_rss_mb, "accuracy": result["test_accuracy"]}


def run_nnrun(epochs: int, runs: Path) -> dict:
    child = run_child([PYTHON, "-m", "nnrun", "train", "configs/mnist_png.yaml", "--quiet", "--runs-dir", str(runs),
                       "--set", f"training.epochs={epochs}"], env=child_env(PYTHONPATH=str(ROOT)))
    if child.returncode:
        raise SystemExit(f"nnrun failed: {child.stderr[-2000:]}")
    run = Path(child.stdout.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    return {"wall": child.wall_s, "rss": child.peak_rss_mb, "accuracy": metrics["test"]["accuracy"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=BENCH / "results-images.md")
    args = parser.parse_args()
    if not (FOLDER / "COMPLETE").is_file():
        raise SystemExit(f"{FOLDER} is missing; write it first: python scripts/make_images.py mnist")
    info = machine()
    started = datetime.now(timezone.utc)
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            plain.append(run_plain(args.epochs))
            ours.append(run_nnrun(args.epochs, Path(tmp)))
            print(f"repeat {i + 1}: plain {plain[-1]}  nnrun {ours[-1]}", file=sys.stderr, flush=True)

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    def accuracies(rows: list[dict]) -> str:
        return ", ".join(f"{r['accuracy']:.4f}" for r in rows)

    lines = [
        "# nnrun on an image folder against the keras.io tutorial's script",
        "",
        f"{started:%Y-%m-%d %H:%M} UTC, `python bench/images.py --repeats {args.repeats} --epochs {args.epochs}`; "
        f"{machine_line(info)}.",
        "",
        "Folder: `data/mnist_png` (MNIST as 60,000 + 10,000 PNG files, `scripts/make_images.py mnist`). Model: "
        "mnist_dense32's (Dense 32 relu, Dense 10 softmax, rmsprop, batch 128), test folder as validation data. "
        "Plain: `bench/baselines/images_folder.py` (`image_dataset_from_directory`, `prefetch`, `fit`). nnrun: "
        "`nnrun train configs/mnist_png.yaml`. Alternated fresh processes; whole-process wall time and peak RSS.",
        "",
        "| side | wall s, median (min-max) | peak RSS MB, median | test accuracy (each run) |",
        "| --- | ---: | ---: | --- |",
        f"| plain Keras | {fmt_spread(spread([r['wall'] for r in plain]))} | {med(plain, 'rss'):.0f} | "
        f"{accuracies(plain)} |",
        f"| nnrun | {fmt_spread(spread([r['wall'] for r in ours]))} | {med(ours, 'rss'):.0f} | "
        f"{accuracies(ours)} |",
        "",
        f"**Ratios nnrun / plain:** time {med(ours, 'wall') / med(plain, 'wall'):.2f}x (target <= 0.9x), peak memory "
        f"{med(ours, 'rss') / med(plain, 'rss'):.2f}x; test accuracy {med(ours, 'accuracy'):.4f} against "
        f"{med(plain, 'accuracy'):.4f} (medians).",
        "",
    ]
    publish(lines, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
