"""Search against the full grid: TPE with median pruning versus every grid point, on one search space.

The space is fashion_mlp's learning rate and width. The grid trains every combination of
4 learning rates x 3 widths to the last epoch; TPE draws the learning rate from the same
range (log-uniform) and the width from the same list, for fewer trials, and the median
pruner stops trials that fall behind. Both rank by the best validation accuracy.

Measured: epochs trained (the sum of every trial's ``epochs_run``), wall time of each
``nnrun sweep`` command (spawn to exit), and the best validation accuracy each found.
Target (issue 13): TPE within 0.5 points of the grid's best using at most 40% of its epochs.

To stay within ~10 minutes on a 2-core machine, trials train on 20,000 of Fashion-MNIST's
60,000 training images (``dataset.limit``) for 5 epochs.

Usage:
    python bench/sweep_search.py [--trials 8] [--seeds 0,1,2] [--output bench/results-sweep.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import PYTHON, ROOT, child_env, find_data_dir, machine, machine_line, run_child  # noqa: E402

CONFIG = "configs/fashion_mlp.yaml"
SETS = ["dataset.limit=20000", "training.epochs=5"]
RATES = ["0.0003", "0.001", "0.003", "0.01"]
UNITS = "model.layers.0.units=32,64,128"


def sweep(runs: Path, name: str, extra: list[str]) -> dict:
    args = [PYTHON, "-m", "nnrun", "sweep", CONFIG, "--runs-dir", str(runs), "--name", name, "--grid", UNITS]
    args += [a for s in SETS for a in ("--set", s)] + extra
    child = run_child(args, env=child_env(NNRUN_DATA_DIR=str(find_data_dir()), PYTHONPATH=str(ROOT)))
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{child.stderr[-3000:]}")
    folder = Path(child.stdout.strip().splitlines()[-1])
    state = json.loads((folder / "sweep.json").read_text())
    epochs = sum(json.loads((folder / d / "run.json").read_text())["epochs_run"]
                 for t in state["trials"] for d in t["run_dirs"])
    statuses = [t["status"] for t in state["trials"]]
    return {"wall_s": child.wall_s, "epochs": epochs, "best": state["best"]["value"], "params": state["best"]["params"],
            "trials": len(statuses), "pruned": statuses.count("pruned"),
            "command": " ".join(args[3:]).replace(str(runs), "RUNS")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", default="0,1,2", help="TPE's seeds, one TPE sweep each (default 0,1,2)")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results-sweep.md")
    options = parser.parse_args()
    seeds = [int(s) for s in options.seeds.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        grid = sweep(Path(tmp), "grid", ["--grid", "training.optimizer.learning_rate=" + ",".join(RATES)])
        tpes = [sweep(Path(tmp), f"tpe{seed}", ["--grid", f"training.optimizer.learning_rate=loguniform({RATES[0]}, {RATES[-1]})",
                                                "--search", "tpe", "--trials", str(options.trials), "--prune", "median",
                                                "--seed", str(seed)])
                for seed in seeds]  # fmt: skip
    lines = [
        "# Sweep search: TPE + median pruning against the full grid",
        "",
        f"Machine: {machine_line(machine())}",
        "",
        f"Space: `{CONFIG}` with {', '.join(f'`--set {s}`' for s in SETS)}; width `{UNITS.split('=')[1]}`; learning rate",
        f"{', '.join(RATES)} (grid) or log-uniform over the same range (TPE). Ranked by the best validation accuracy.",
        "",
        "| search | trials | pruned | epochs trained | wall time | best val accuracy | best trial |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for label, r in [("grid (every point)", grid)] + [(f"tpe + median, {options.trials} trials, seed {seed}", tpe)
                                                      for seed, tpe in zip(seeds, tpes)]:
        shown = ", ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                          for k, v in r["params"].items())
        lines.append(f"| {label} | {r['trials']} | {r['pruned']} | {r['epochs']} | {r['wall_s']:.0f} s | "
                     f"{r['best']:.4f} | {shown} |")
    lines.append("")
    for seed, tpe in zip(seeds, tpes):
        gap, ratio = (grid["best"] - tpe["best"]) * 100, tpe["epochs"] / grid["epochs"]
        met = gap <= 0.5 and ratio <= 0.4
        lines.append(f"- seed {seed}: TPE used **{ratio:.0%}** of the grid's epochs and {tpe['wall_s'] / grid['wall_s']:.0%} "
                     f"of its wall time; its best is {gap:+.2f} points below the grid's (negative: above). Target "
                     f"(within 0.5 points, at most 40% of the epochs): **{'met' if met else 'not met'}**.")
    lines += ["", "Commands (run by `python bench/sweep_search.py`; RUNS is a temporary folder):", "",
              f"    nnrun {grid['command']}", f"    nnrun {tpes[0]['command']}", ""]
    options.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
