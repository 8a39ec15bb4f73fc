"""Benchmark ``nnrun compare`` on many run directories.

Generates N run directories shaped like real ones (``run.json``,
``config.yaml``, ``metrics.json``, ``history.csv`` of 10-30 epochs, a small
``model.keras`` stand-in; a few failed, interrupted, crashed, still-running
and corrupt ones among them), then times:

- the whole command, ``nnrun compare DIR`` in a fresh interpreter, as a user
  runs it (interpreter start and imports included), for each ``--format``;
- the in-process part: reading, filtering and sorting (``compare_runs``) and
  formatting the table.

Each figure is the median of ``--repeat`` runs with the files in the page
cache (a second ``compare`` over the same runs, the usual case).

Usage:
    python bench/compare_bench.py              # 1,000 runs in a temp folder
    python bench/compare_bench.py --runs 5000 --repeat 7 --keep /tmp/bench-runs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
NNRUN = Path(sys.executable).parent / "nnrun"

CONFIG = """\
dataset:
  validation: {validation}
  limit: null
  name: {dataset}
  path: null
preprocessing:
- type: flatten
- type: scale
  factor: 0.00392156862745098
- type: one_hot
  num_classes: null
model:
  layers:
  - type: Dense
    units: {units}
    activation: relu
  - type: Dropout
    rate: {dropout}
  - type: Dense
    units: 10
    activation: softmax
training:
  optimizer:
    type: {optimizer}
    learning_rate: {learning_rate}
  loss: categorical_crossentropy
  metrics:
  - accuracy
  epochs: {epochs}
  batch_size: {batch_size}
  shuffle: true
  callbacks: []
  checkpoint: last
  steps_per_execution: auto
  jit_compile: false
  verbose: 1
run:
  name: {name}
  seed: {seed}
  runs_dir: runs
"""


def make_runs(folder: Path, count: int, seed: int = 0, with_config_in_run_json: bool = True) -> None:
    """Write ``count`` run directories into ``folder`` (``with_config_in_run_json=False``: as older nnrun wrote them)."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, 9, 0, 0)
    for i in range(count):
        units = rng.choice([32, 64, 128, 256, 512])
        dropout = rng.choice([0.0, 0.1, 0.2, 0.3])
        optimizer = rng.choice(["adam", "rmsprop", "sgd"])
        learning_rate = rng.choice(["null", "0.001", "0.0005", "0.01"])
        batch_size = rng.choice([32, 64, 128, 256])
        dataset = rng.choice(["mnist", "fashion_mnist"])
        epochs = rng.randint(10, 30)
        name = f"{dataset}-d{units}-{optimizer}"
        started = start + timedelta(minutes=7 * i)
        run_id = f"{started:%Y%m%d-%H%M%S}-{name}"
        path = folder / run_id
        (path / "checkpoints").mkdir(parents=True)
        status = "completed"
        roll = rng.random()
        if roll < 0.03:
            status = "failed"
        elif roll < 0.05:
            status = "interrupted"
        elif roll < 0.06:
            status = "running"  # with a pid that does not exist: shown as crashed
        epochs_run = epochs if status == "completed" else rng.randint(1, epochs)
        history, rows = _history(rng, epochs_run)
        info = {
            "id": run_id, "name": name, "status": status, "started": started.isoformat(),
            "finished": None if status == "running" else (started + timedelta(seconds=30 * epochs_run)).isoformat(),
            "duration_s": None if status == "running" else round(30.0 * epochs_run + rng.random(), 3),
            "argv": ["nnrun", "train", "configs/x.yaml"], "cwd": str(folder), "config_file": "configs/x.yaml",
            "seed": 42, "pid": 999_999_999, "host": os.uname().nodename, "platform": "bench",
            "versions": {"python": "3", "nnrun": "0.1.0"}, "git_commit": None,
            "error": "NnrunError: boom" if status == "failed" else None, "smoke": False, "dataset": dataset,
            "model": {"params": 784 * units + units + units * 10 + 10, "layers": f"D{units}-Dr{dropout}-D10"},
            "epochs_run": epochs_run,
        }  # fmt: skip
        config = CONFIG.format(
            validation=rng.choice(["test", 0.1]), dataset=dataset, units=units, dropout=dropout, optimizer=optimizer,
            learning_rate=learning_rate, epochs=epochs, batch_size=batch_size, name=name, seed=42,
        )  # fmt: skip
        if with_config_in_run_json:  # as nnrun writes run.json since the config was added to it
            info["config"] = yaml.safe_load(config)
        (path / "run.json").write_text(json.dumps(info, indent=2))
        (path / "config.yaml").write_text(config)
        (path / "history.csv").write_text(history)
        if status == "completed":
            last = rows[-1]
            best = min(rows, key=lambda r: r[3])
            metrics = {
                "train": {"accuracy": last[0], "loss": last[1]},
                "validation": {"accuracy": last[2], "loss": last[3]},
                "best_validation": {"accuracy": best[2], "loss": best[3]},
                "test": {"accuracy": last[2] + 0.001, "loss": last[3] + 0.001},
                "best_epoch": rows.index(best) + 1, "epochs_run": epochs_run,
            }  # fmt: skip
            (path / "metrics.json").write_text(json.dumps(metrics, indent=2))
            (path / "model.keras").write_bytes(b"\0" * 4096)
    for name, content in (("zz-corrupt", "{not json"), ("zz-empty", "")):
        (folder / name).mkdir()
        (folder / name / "run.json").write_text(content)
    (folder / "zz-not-a-run").mkdir()
    (folder / "zz-not-a-run" / "notes.txt").write_text("hello")


def _history(rng: random.Random, epochs: int) -> tuple[str, list[tuple[float, ...]]]:
    lines = ["epoch,accuracy,loss,val_accuracy,val_loss,learning_rate,time_s"]
    rows = []
    accuracy, loss = 0.6 + 0.2 * rng.random(), 1.5
    for epoch in range(1, epochs + 1):
        accuracy = min(0.999, accuracy + 0.02 * rng.random())
        loss = max(0.01, loss * (0.8 + 0.15 * rng.random()))
        row = (accuracy, loss, accuracy - 0.01 * rng.random(), loss + 0.05 * rng.random())
        rows.append(row)
        lines.append(f"{epoch},{row[0]!r},{row[1]!r},{row[2]!r},{row[3]!r},0.0010000000474974513,{rng.uniform(1, 3):.4f}")
    return "\n".join(lines) + "\n", rows


def time_command(args: list[str], repeat: int) -> tuple[float, str]:
    """Median wall time of a fresh process; returns it with the command's stdout of the last run."""
    times, out = [], ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = subprocess.run(args, check=False, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
        out = done.stdout
    return statistics.median(times), out


def time_in_process(folder: Path, repeat: int) -> tuple[float, float]:
    sys.path.insert(0, str(ROOT))
    from nnrun.compare import compare_runs, format_comparison

    reads, formats = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        comparison = compare_runs([folder])
        t1 = time.perf_counter()
        _ = format_comparison(comparison, "table", width=None).plain
        formats.append(time.perf_counter() - t1)
        reads.append(t1 - t0)
    assert "tensorflow" not in sys.modules and "numpy" not in sys.modules, "compare imported TensorFlow or numpy"
    return statistics.median(reads), statistics.median(formats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="how many run directories (default 1000)")
    parser.add_argument("--repeat", type=int, default=5, help="timings per figure; the median is reported")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="nnrun-compare-bench-"))
    if folder.exists() and any(folder.iterdir()):
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    make_runs(folder, args.runs)
    print(f"generated {args.runs} runs (+3 unreadable folders) in {folder} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    try:
        figures = {"runs": args.runs, "repeat": args.repeat, "cpus": os.cpu_count()}
        figures["python_start_s"], _ = time_command([sys.executable, "-c", "pass"], args.repeat)
        figures["nnrun_help_s"], _ = time_command([str(NNRUN), "--help"], args.repeat)
        for fmt in ("table", "csv", "json"):
            figures[f"compare_{fmt}_s"], out = time_command([str(NNRUN), "compare", str(folder), "--format", fmt], args.repeat)
            if fmt == "csv":
                rows = out.count("\n") - 1
                assert rows == args.runs + 3, f"expected {args.runs + 3} rows, got {rows}"
        figures["compare_sort_filter_s"], _ = time_command(
            [str(NNRUN), "compare", str(folder), "--sort", "test.accuracy", "--filter", "status=completed", "--format", "csv"],
            args.repeat,
        )
        figures["compare_only_changed_s"], _ = time_command(
            [str(NNRUN), "compare", str(folder), "--only-changed", "--format", "csv"], args.repeat
        )
        figures["in_process_read_s"], figures["in_process_table_s"] = time_in_process(folder, args.repeat)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"nnrun compare on {args.runs} run directories (median of {args.repeat}, warm page cache, {os.cpu_count()} CPUs)")
    for key, value in figures.items():
        if key.endswith("_s"):
            print(f"  {key[:-2]:<24} {value * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
