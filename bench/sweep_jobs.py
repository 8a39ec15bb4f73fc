"""``nnrun sweep --jobs 2`` against one worker: the same 4 trials, wall time of each command, alternated.

``--jobs N`` starts N - 1 ``nnrun sweep --join`` processes beside the first worker, each capped to an equal share
of the CPU threads. Whether that pays depends on the machine: one TensorFlow process may already use every core.
Each sweep trains 4 MNIST trials (20,000 images, 3 epochs; widths 64/128 x batch sizes 64/128); the two sides run
alternately, ``--repeat`` times each, and the report gives the medians and their ratio.

Usage:
    python bench/sweep_jobs.py [--repeat 3] [--output bench/results-sweep-jobs.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import PYTHON, ROOT, child_env, find_data_dir, machine, machine_line, publish, run_child  # noqa: E402

CONFIG = "configs/mnist_mlp.yaml"
ARGS = ["--set", "dataset.limit=20000", "--set", "training.epochs=3", "--grid", "model.layers.0.units=64,128",
        "--grid", "training.batch_size=64,128"]  # fmt: skip


def sweep(runs: Path, jobs: int) -> tuple[float, list[float]]:
    """Wall time of one ``nnrun sweep --jobs N`` (spawn to exit), and its trials' metric values by parameters."""
    args = [PYTHON, "-m", "nnrun", "sweep", CONFIG, *ARGS, "--jobs", str(jobs), "--runs-dir", str(runs)]
    child = run_child(args, env=child_env(NNRUN_DATA_DIR=str(find_data_dir()), PYTHONPATH=str(ROOT)))
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{child.stderr[-3000:]}")
    state = json.loads((Path(child.stdout.strip().splitlines()[-1]) / "sweep.json").read_text())
    if state["status"] != "completed":
        raise SystemExit(f"--jobs {jobs}: the sweep ended {state['status']}")
    return child.wall_s, [t["value"] for t in sorted(state["trials"], key=lambda t: json.dumps(t["params"]))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results-sweep-jobs.md")
    options = parser.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    values: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(options.repeat):
            for jobs in (1, 2) if repeat % 2 == 0 else (2, 1):  # alternate which side goes first
                wall, values[jobs] = sweep(Path(tmp) / f"{jobs}-{repeat}", jobs)
                times[jobs].append(wall)
                print(f"--jobs {jobs}: {wall:.1f} s", flush=True)
    one, two = (statistics.median(times[j]) for j in (1, 2))
    publish([
        "# `nnrun sweep --jobs 2` against one worker",
        "",
        f"Machine: {machine_line(machine())}",
        "",
        f"`nnrun sweep {CONFIG} {' '.join(ARGS)}`: 4 trials; each side {options.repeat} times, alternated.",
        "",
        "| workers | wall times (s) | median |",
        "| --- | --- | ---: |",
        *(f"| --jobs {j} | {', '.join(f'{t:.1f}' for t in times[j])} | {statistics.median(times[j]):.1f} s |" for j in (1, 2)),
        "",
        f"Ratio (--jobs 2 / --jobs 1, medians): **{two / one:.2f}** ("
        + ("faster" if two < 0.95 * one else "slower" if two > 1.05 * one else "no clear difference")
        + " with two workers).",
        f"Same results both ways: {'yes' if values[1] == values[2] else 'no'} (each trial's best validation accuracy).",
        "",
    ], options.output)


if __name__ == "__main__":
    main()
