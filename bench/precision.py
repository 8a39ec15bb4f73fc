"""Benchmark: training.precision bfloat16 against float32 on the mnist_cnn config, and against the plain script.

Four sides, alternated in every repeat, each a separate process timed from spawn to exit:
the plain Keras script (``bench/baselines/mnist_cnn.py``, ``verbose=0``) in float32 and in
``mixed_bfloat16``, and ``nnrun train configs/mnist_cnn.yaml`` with ``precision`` float32 and
bfloat16. The issue's target: nnrun with bfloat16 at most 0.55x the float32 plain script's
whole-process time, within 0.3 points of its test accuracy, on a CPU with AMX or AVX512-BF16.

Usage:
    python bench/precision.py --epochs 2 --repeats 2 --out bench/results-precision.md
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import BENCH, NNRUN, PYTHON, ROOT, child_env, find_data_dir, machine, machine_line, publish, run_child  # noqa: E402

TARGET_RATIO = 0.55
TARGET_POINTS = 0.3


def plain(precision: str, epochs: int) -> dict:
    env = child_env(BENCH_EPOCHS=str(epochs), BENCH_PRECISION=precision, BENCH_VERBOSE="0")
    child = run_child([PYTHON, str(BENCH / "baselines" / "mnist_cnn.py")], env=env, cwd=BENCH / "baselines")
    if child.returncode != 0:
        raise SystemExit(f"plain {precision} failed:\n{child.stderr[-2000:]}")
    result = json.loads(re.findall(r"^RESULT (.*)$", child.stdout, re.M)[-1])
    return {"wall_s": child.wall_s, "rss_mb": child.peak_rss_mb, "accuracy": result["test_accuracy"],
            "epoch_s": min(result.get("epoch_seconds") or [result["train_seconds"] / epochs]),
            "fit_s": result["train_seconds"]}


def nnrun(precision: str, epochs: int, runs: Path, cache: str) -> dict:
    args = [NNRUN, "train", str(ROOT / "configs" / "mnist_cnn.yaml"), "--quiet", "--runs-dir", str(runs),
            "--set", f"training.epochs={epochs}", "--set", f"training.precision={precision}"]
    child = run_child(args, env=child_env(NNRUN_CACHE_DIR=cache))
    if child.returncode != 0:
        raise SystemExit(f"nnrun {precision} failed:\n{child.stderr[-2000:]}")
    run = Path(child.stdout.strip().splitlines()[-1])
    metrics = json.loads((run / "metrics.json").read_text())
    epoch_times = [float(line.split(",")[-1]) for line in (run / "history.csv").read_text().splitlines()[1:]]
    info = json.loads((run / "run.json").read_text())
    return {"wall_s": child.wall_s, "rss_mb": child.peak_rss_mb, "accuracy": metrics["test"]["accuracy"],
            "epoch_s": min(epoch_times), "policy": info.get("precision"), "fit_s": info["fit_s"],
            "jit_probe": info.get("jit_probe")}


WARM = """
import json, sys
from nnrun.config import load_config
from nnrun.training import prepare
config = load_config("configs/mnist_cnn.yaml", [f"training.epochs={sys.argv[1]}", f"training.precision={sys.argv[2]}"])
print(json.dumps(prepare(config).jit.as_json()))
"""


def probe_cell(results: list[dict], warm: dict | None = None) -> str:
    probe = warm or results[0].get("jit_probe")
    if not probe:
        return "–"
    timings = (f"; {probe['xla_ms']:.1f} vs {probe['plain_ms']:.1f} ms/step, compile {probe['xla_compile_s']:.1f} s"
               if probe.get("xla_ms") is not None else "")
    when = "untimed warm-up" if warm else "first run"
    return f"{'XLA' if probe['enabled'] else 'no XLA'}{timings}; probe {probe['probe_s']:.1f} s ({when})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-warm-probe", dest="warm_probe", action="store_false",
                        help="let the first timed nnrun run of each precision pay the XLA probe")
    parser.add_argument("--sides", default="plain float32,nnrun float32,nnrun bfloat16,plain bfloat16",
                        help="comma-separated subset of the four sides")
    args = parser.parse_args()
    find_data_dir()
    from nnrun.distribution import cpu_bfloat16

    sides: dict[str, list[dict]] = {side.strip(): [] for side in args.sides.split(",")}
    # A new cache folder: the first nnrun run of each precision pays the XLA probe (jit_compile: auto), as a
    # user's first run would; the dataset cache is written before any timing.
    cache = tempfile.mkdtemp(prefix="nnrun-bench-cache-")
    run_child([PYTHON, "-c", "from nnrun.datasets import load_idx_dataset as load; load('mnist')"],
              env=child_env(NNRUN_CACHE_DIR=cache))
    probes = {}
    if args.warm_probe:  # the XLA probe, untimed: every timed nnrun run reads its decision from the cache
        for side in sides:
            if side.startswith("nnrun"):
                precision = side.split()[1]
                child = run_child([PYTHON, "-c", WARM, str(args.epochs), precision], env=child_env(NNRUN_CACHE_DIR=cache))
                probes[side] = json.loads(child.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as runs:
        for repeat in range(args.repeats):
            order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
            for side in order:
                who, precision = side.split()
                sides[side].append(plain(precision, args.epochs) if who == "plain"
                                   else nnrun(precision, args.epochs, Path(runs), cache))
                print(f"{side} #{repeat + 1}: {sides[side][-1]}", file=sys.stderr)
    median = {side: statistics.median(r["wall_s"] for r in results) for side, results in sides.items()}
    base = median["plain float32"]
    lines = [f"# training.precision: bfloat16 against float32 (mnist_cnn, {args.epochs} epochs)", "",
             machine_line(machine()) + f"; bfloat16 instructions: {cpu_bfloat16() or 'none'}", "",
             "| side | wall s (median) | / plain float32 | fit s | fastest epoch s | peak RSS MB | test accuracy "
             "| XLA probe |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for side, results in sides.items():
        lines.append(f"| {side} | {median[side]:.2f} ({min(r['wall_s'] for r in results):.2f}-"
                     f"{max(r['wall_s'] for r in results):.2f}) | {median[side] / base:.2f} "
                     f"| {statistics.median(r['fit_s'] for r in results):.2f} "
                     f"| {min(r['epoch_s'] for r in results):.2f} | {statistics.median(r['rss_mb'] for r in results):.0f} "
                     f"| {results[0]['accuracy']:.4f} | {probe_cell(results, probes.get(side))} |")
    ratio = median["nnrun bfloat16"] / base
    points = 100 * (sides["nnrun bfloat16"][0]["accuracy"] - sides["plain float32"][0]["accuracy"])
    identical = ("nnrun float32" not in sides
                 or sides["nnrun float32"][0]["accuracy"] == sides["plain float32"][0]["accuracy"])
    lines += ["", "| target | measured | |", "| --- | --- | --- |",
              f"| nnrun bfloat16 <= {TARGET_RATIO}x the float32 plain script (wall) | {ratio:.2f}x | "
              f"{'met' if ratio <= TARGET_RATIO else '**missed**'} |",
              f"| within {TARGET_POINTS} points of its test accuracy | {points:+.2f} points | "
              f"{'met' if abs(points) <= TARGET_POINTS else '**missed**'} |",
              *([f"| float32 test accuracy identical to the plain script | "
                 f"{sides['nnrun float32'][0]['accuracy']:.4f} vs {sides['plain float32'][0]['accuracy']:.4f} | "
                 f"{'met' if identical else '**missed**'} |"] if "nnrun float32" in sides else []), "",
              f"Median of {args.repeats} alternated processes per side; the plain script with verbose=0. "
              "Accuracy: the first repeat (the same seed gives the same figure every time)."]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
