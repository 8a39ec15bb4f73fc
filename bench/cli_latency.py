"""CLI latency: ``nnrun --help``, ``nnrun check`` on a schema error, ``nnrun compare`` over 1,000 runs.

Each command runs as a user runs it: the ``nnrun`` console script in a fresh
process, timed from spawn to exit, after one untimed warm-up run (page cache
warm). A second run of each, ``python -X importtime -m nnrun ...``, proves
that TensorFlow (and Keras) were never imported and shows which imports
cost the most. Reference points: an empty interpreter, and a bare
``import tensorflow``.

The 1,000 run directories come from ``bench/compare_bench.py``'s generator
(run.json, config.yaml, metrics.json, history.csv, a few broken runs).

Usage:
    python bench/cli_latency.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import BENCH, NNRUN, PYTHON, ROOT, child_env, fmt_spread, run_child, spread  # noqa: E402

TARGET_S = 0.5
HEAVY = ("tensorflow", "keras", "jax", "torch", "optuna")


def schema_error_config(folder: Path) -> Path:
    """configs/mnist_mlp.yaml with one typo (``epocs``): a schema error that ``check`` finds without Keras."""
    text = (ROOT / "configs" / "mnist_mlp.yaml").read_text().replace("epochs:", "epocs:")
    path = folder / "mnist_mlp_typo.yaml"
    path.write_text(text)
    return path


def make_runs(folder: Path, count: int) -> bool:
    """1,000 run directories with compare_bench's generator; False if that script is not there."""
    script = BENCH / "compare_bench.py"
    if not script.is_file():
        return False
    spec = importlib.util.spec_from_file_location("compare_bench", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.make_runs(folder, count)
    return True


def has_command(name: str) -> bool:
    return run_child([NNRUN, name, "--help"], env=child_env()).returncode == 0


def heavy_imports(args: list[str]) -> tuple[list[str], list[tuple[float, str]]]:
    """Heavy packages imported by ``nnrun ARGS``, and the five costliest top-level imports (s, name)."""
    child = run_child([PYTHON, "-X", "importtime", "-m", "nnrun", *args], env=child_env())
    heavy, top = set(), []
    for line in child.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        name = match.group(4)
        if name.split(".")[0] in HEAVY:
            heavy.add(name.split(".")[0])
        if len(match.group(3)) == 1:  # top level: cumulative time is what this import cost the command
            top.append((int(match.group(2)) / 1e6, name))
    return sorted(heavy), sorted(top, reverse=True)[:5]


def time_command(args: list[str], repeats: int, expect: int) -> dict:
    run_child(args, env=child_env())  # warm-up
    times = []
    for _ in range(repeats):
        child = run_child(args, env=child_env())
        if child.returncode != expect:
            raise SystemExit(f"{' '.join(args)}: exit {child.returncode}, expected {expect}: {child.stderr.strip()[-500:]}")
        times.append(child.wall_s)
    return spread(times)


def report(repeats: int = 7, runs: int = 1000) -> tuple[list[str], dict]:
    """The markdown table, and the raw figures."""
    folder = Path(tempfile.mkdtemp(prefix="nnrun-cli-bench-"))
    raw: dict = {}
    try:
        bad = schema_error_config(folder)
        commands = [("`nnrun --help`", ["--help"], 0), ("`nnrun check` (schema error, exit 2)", ["check", str(bad)], 2)]
        runs_dir = folder / "runs"
        runs_dir.mkdir()
        notes = []
        if has_command("compare") and make_runs(runs_dir, runs):
            commands.append((f"`nnrun compare` over {runs:,} runs", ["compare", str(runs_dir)], 0))
        else:
            notes.append("`nnrun compare` not measured: the command or bench/compare_bench.py's generator is missing.")
        lines = [
            f"| command | wall s, median of {repeats} (min–max) | target < {TARGET_S} s | TensorFlow imported? | costliest imports (cumulative s) |",
            "| --- | ---: | --- | --- | --- |",
        ]
        for label, args, expect in commands:
            timing = time_command([NNRUN, *args], repeats, expect)
            heavy, top = heavy_imports(args)
            raw[label] = {"wall": timing, "heavy_imports": heavy, "top_imports": top}
            lines.append(
                f"| {label} | {fmt_spread(timing, 3)} | {'met' if timing['median'] < TARGET_S else '**missed**'} "
                f"| {'**yes: ' + ', '.join(heavy) + '**' if heavy else 'no'} "
                f"| {', '.join(f'{name} {s:.3f}' for s, name in top)} |"
            )
        for label, code, n in (("`python -c pass` (interpreter start)", "pass", repeats),
                               ("`python -c 'import tensorflow'` (reference)", "import tensorflow", 3)):
            timing = time_command([PYTHON, "-c", code], n, 0)
            raw[label] = {"wall": timing}
            lines.append(f"| {label} | {fmt_spread(timing, 3)} | | | |")
        lines += [""] + notes
        return lines, raw
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--runs", type=int, default=1000, help="run directories for compare (default 1000)")
    args = parser.parse_args()
    lines, _ = report(args.repeats, args.runs)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
