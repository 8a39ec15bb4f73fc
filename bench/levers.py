"""Levers, one at a time: ``steps_per_execution``, ``jit_compile`` and progress reporting in ``nnrun train``.

Each variant is one ``nnrun train --quiet`` process with ``--set`` overrides.
Reported: the median epoch time from ``history.csv`` (epochs 2.., so the
first epoch's tracing is left out), the whole-process wall time, test
accuracy and the last epoch's training loss, printed in full so that
variants that must give the same numbers (``steps_per_execution``) can be
seen to.

Usage:
    python bench/levers.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import NNRUN, ROOT, child_env, find_data_dir, run_child  # noqa: E402

#: (config, label, overrides). epochs and limit come from EXPERIMENTS' first entries.
EXPERIMENTS = {
    "diabetes_mlp": {
        "epochs": 6, "quick_epochs": 4,
        "variants": [
            ("spe 1", ["training.steps_per_execution=1"]),
            ("spe 8", ["training.steps_per_execution=8"]),
            ("spe 32", ["training.steps_per_execution=32"]),
            ("spe 128", ["training.steps_per_execution=128"]),
            ("spe auto", []),
            ("spe auto, XLA on", ["training.jit_compile=true"]),
            ("spe 1, verbose 0", ["training.steps_per_execution=1", "training.verbose=0"]),
            ("spe auto, verbose 0", ["training.verbose=0"]),
        ],
    },
    "mnist_dense512": {
        "epochs": 4, "quick_epochs": 3,
        "variants": [
            ("spe 1", ["training.steps_per_execution=1"]),
            ("spe 8", ["training.steps_per_execution=8"]),
            ("spe auto", []),
            ("spe 128", ["training.steps_per_execution=128"]),
            ("spe 469 (an epoch)", ["training.steps_per_execution=469"]),
            ("spe auto, XLA on", ["training.jit_compile=true"]),
        ],
    },
    "fashion_cnn": {
        "epochs": 3, "quick_epochs": 2, "limit": 12000,
        "variants": [
            ("spe 1", ["training.steps_per_execution=1"]),
            ("spe auto", []),
            ("spe auto, XLA on", ["training.jit_compile=true"]),
        ],
    },
    "mnist_mlp": {
        "epochs": 4, "quick_epochs": 2,
        "variants": [
            ("spe auto", []),
            ("spe auto, XLA on", ["training.jit_compile=true"]),
        ],
    },
}  # fmt: skip


def run_variant(config: str, sets: list[str]) -> dict:
    runs_dir = Path(tempfile.mkdtemp(prefix="nnrun-levers-"))
    try:
        args = [NNRUN, "train", str(ROOT / "configs" / f"{config}.yaml"), "--quiet", "--runs-dir", str(runs_dir)]
        for item in sets:
            args += ["--set", item]
        child = run_child(args, env=child_env())
        if child.returncode != 0:
            return {"error": child.stderr.strip().splitlines()[-1] if child.stderr.strip() else f"exit {child.returncode}"}
        run_dir = Path(child.stdout.strip().splitlines()[-1])
        with open(run_dir / "history.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        info = json.loads((run_dir / "run.json").read_text())
        epoch_s = [float(r["time_s"]) for r in rows]
        return {
            "wall_s": child.wall_s, "epoch_s": epoch_s, "epoch_median_s": statistics.median(epoch_s[1:] or epoch_s),
            "first_epoch_s": epoch_s[0], "loss": rows[-1]["loss"], "accuracy": metrics["test"]["accuracy"],
            "steps_per_execution": info.get("steps_per_execution"), "params": info.get("model", {}).get("params"),
        }  # fmt: skip
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)


def report(quick: bool = False, configs: list[str] | None = None) -> tuple[list[str], dict]:
    find_data_dir()
    raw: dict = {}
    lines = [
        "| config | variant | spe | s/epoch (median, epochs 2..) | first epoch s | wall s | test acc | last train loss |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for config in configs or list(EXPERIMENTS):
        spec = EXPERIMENTS[config]
        base = [f"training.epochs={spec['quick_epochs' if quick else 'epochs']}"]
        if spec.get("limit"):
            base.append(f"dataset.limit={spec['limit']}")
        raw[config] = {}
        for label, sets in spec["variants"]:
            result = run_variant(config, base + sets)
            raw[config][label] = result
            print(f"  {config:<15} {label:<22} {json.dumps({k: v for k, v in result.items() if k != 'epoch_s'})}",
                  file=sys.stderr, flush=True)
            if "error" in result:
                lines.append(f"| {config} | {label} | | failed: {result['error']} | | | | |")
                continue
            lines.append(
                f"| {config} | {label} | {result['steps_per_execution']} | {result['epoch_median_s']:.3f} "
                f"| {result['first_epoch_s']:.2f} | {result['wall_s']:.1f} | {result['accuracy']:.4f} | {result['loss']} |"
            )
    notes = [f"{config}: {', '.join(base_note(config, quick))}" for config in (configs or list(EXPERIMENTS))]
    return lines + ["", "Runs: " + "; ".join(notes) + ". One process per variant, `--quiet`."], raw


def base_note(config: str, quick: bool) -> list[str]:
    spec = EXPERIMENTS[config]
    note = [f"{spec['quick_epochs' if quick else 'epochs']} epochs"]
    if spec.get("limit"):
        note.append(f"first {spec['limit']:,} training samples")
    return note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs")
    parser.add_argument("--configs", help=f"comma-separated subset of: {','.join(EXPERIMENTS)}")
    args = parser.parse_args()
    lines, _ = report(args.quick, args.configs.split(",") if args.configs else None)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
