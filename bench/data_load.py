"""Data loading: nnrun's IDX loader with and without its decoded cache, and where the time goes.

Measured for MNIST and Fashion-MNIST from ``$NNRUN_DATA_DIR``, median of N:

- ``load_idx_dataset`` in a fresh process (timed after ``import
  nnrun.datasets``; the files in the page cache, as for any second run), with
  the decoded cache off (``NNRUN_CACHE_DIR=off``: gunzip + SHA-256 every
  time), building the cache (an empty ``NNRUN_CACHE_DIR``), and reading it
  back (memory-mapped ``.npy``);
- the same call repeated in one warm process, cache off;
- the parts of an uncached load: read the ``.gz`` bytes, gunzip, SHA-256 of
  the payload, parse;
- "load + scale": the load followed by ``x.astype(float32) * (1/255)`` on the
  training images, which touches every byte. A memory map defers reading to
  that point, so this is the figure a training run sees.

Usage:
    python bench/data_load.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import PYTHON, ROOT, child_env, find_data_dir  # noqa: E402

DATASETS = ("mnist", "fashion_mnist")


# ------------------------------------------------------------ measurements


def _in_fresh_process(code: str, repeats: int, cache: str) -> list[float]:
    """Run ``code`` (which prints seconds) in ``repeats`` fresh interpreters with NNRUN_CACHE_DIR=cache."""
    times = []
    for _ in range(repeats):
        done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True,
                              env=child_env(NNRUN_CACHE_DIR=cache), cwd=ROOT)
        if done.returncode != 0:
            raise SystemExit(f"data_load: child failed: {done.stderr.strip()[-800:]}")
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return times


FRESH_LOAD = """
import time, numpy as np
from nnrun.datasets import load_idx_dataset
t = time.perf_counter()
x = load_idx_dataset({name!r})[0]
{touch}
print(time.perf_counter() - t)
"""

TOUCH = "x = x.astype(np.float32) * np.float32(1 / 255)"


def parts(name: str, repeats: int) -> dict[str, float]:
    """Median seconds of each step of ``read_idx`` over the four files, in this process."""
    import gzip
    import hashlib

    from nnrun.datasets.idx import FOLDER_NAMES, IDX_FILES, _find_idx_file, parse_idx

    folder = Path(os.environ["NNRUN_DATA_DIR"]) / FOLDER_NAMES[name]
    files = [_find_idx_file(folder, stem) for stem in IDX_FILES.values()]
    steps: dict[str, list[float]] = {"read .gz": [], "gunzip": [], "sha256": [], "parse": []}
    for _ in range(repeats):
        totals = dict.fromkeys(steps, 0.0)
        for path in files:
            t0 = time.perf_counter()
            raw = path.read_bytes()
            t1 = time.perf_counter()
            payload = gzip.decompress(raw)
            t2 = time.perf_counter()
            hashlib.sha256(payload).hexdigest()
            t3 = time.perf_counter()
            parse_idx(payload)
            t4 = time.perf_counter()
            for key, dt in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                totals[key] += dt
        for key in steps:
            steps[key].append(totals[key])
    return {k: statistics.median(v) for k, v in steps.items()}


def measure(name: str, repeats: int) -> dict:
    from nnrun.datasets.idx import CACHE_ENV, load_idx_dataset

    def fresh(cache: str, touch: str = "", n: int = repeats) -> list[float]:
        return _in_fresh_process(FRESH_LOAD.format(name=name, touch=touch), n, cache)

    out: dict = {"off": fresh("off"), "off_scale": fresh("off", TOUCH)}
    saved = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = "off"
    try:
        warm = []
        for _ in range(repeats):
            t = time.perf_counter()
            load_idx_dataset(name)
            warm.append(time.perf_counter() - t)
    finally:
        os.environ.pop(CACHE_ENV) if saved is None else os.environ.__setitem__(CACHE_ENV, saved)
    out["warm_off"] = warm
    out["parts"] = parts(name, repeats)
    builds = []
    for _ in range(repeats):
        cache = tempfile.mkdtemp(prefix="nnrun-data-cache-")
        try:
            builds += fresh(cache, n=1)  # one process per empty cache: each one writes it
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    out["build"] = builds
    cache = tempfile.mkdtemp(prefix="nnrun-data-cache-")
    try:
        fresh(cache, n=1)  # writes it
        out["cache_bytes"] = sum(p.stat().st_size for p in Path(cache).rglob("*.npy"))
        out["cached"] = fresh(cache)
        out["cached_scale"] = fresh(cache, TOUCH)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out


def report(repeats: int = 5) -> tuple[list[str], dict]:
    find_data_dir()
    sys.path.insert(0, str(ROOT))
    raw = {name: measure(name, repeats) for name in DATASETS}

    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.3f}"

    lines = [
        f"Seconds, median of {repeats}. Fresh process: timed after `import nnrun.datasets`, files in the page cache.",
        "",
        "| | " + " | ".join(DATASETS) + " |",
        "| --- | " + " | ".join("---:" for _ in DATASETS) + " |",
    ]
    rows = [
        ("`load_idx_dataset`, cache off, fresh process", lambda r: med(r["off"])),
        ("`load_idx_dataset`, cache off, warm process", lambda r: med(r["warm_off"])),
        ("… of which read .gz / gunzip / sha256 / parse",
         lambda r: " / ".join(f"{r['parts'][k]:.3f}" for k in ("read .gz", "gunzip", "sha256", "parse"))),
        ("`load_idx_dataset`, first load that writes the cache", lambda r: med(r["build"])),
        ("`load_idx_dataset`, from the cache (mmap)", lambda r: med(r["cached"])),
        ("load + scale train images, cache off", lambda r: med(r["off_scale"])),
        ("load + scale train images, from the cache", lambda r: med(r["cached_scale"])),
        ("cache size on disk, MB", lambda r: f"{r['cache_bytes'] / 1e6:.1f}"),
    ]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(raw[n]) for n in DATASETS) + " |")
    saved = {n: statistics.median(raw[n]["off_scale"]) - statistics.median(raw[n]["cached_scale"]) for n in DATASETS}
    lines += ["", "The cache saves " + ", ".join(f"{saved[n]:.3f} s ({n})" for n in DATASETS)
              + " per training run, counted after scaling (the load + scale rows: a memory map defers the reads)."]
    return lines, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lines, _ = report(args.repeats)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
