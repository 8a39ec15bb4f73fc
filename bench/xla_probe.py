"""Benchmark: what ``training.jit_compile: auto`` decides for every shipped config, and what the probe costs.

For each config, one child process runs ``nnrun.training.prepare`` (data, preprocessing, the XLA probe,
the model) with a new, empty cache folder, and reports the decision, both timings and the probe's own
seconds (``JitChoice.probe_s``). The probe is paid once per machine and config (then read from the cache);
it is repaid only where XLA is chosen and saves more than the probe cost.

Usage:
    python bench/xla_probe.py --out bench/results-xla.md
    python bench/xla_probe.py --configs mnist_mlp,fashion_cnn
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import PYTHON, ROOT, child_env, find_data_dir, machine, machine_line, publish, run_child  # noqa: E402

CHILD = """
import json, sys
from nnrun.config import load_config
from nnrun.training import prepare
prepared = prepare(load_config(sys.argv[1]))
print("CHOICE " + json.dumps(prepared.jit.as_json()))
"""


def probe(path: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="nnrun-xla-") as cache:
        child = run_child([PYTHON, "-c", CHILD, str(path)], env=child_env(NNRUN_CACHE_DIR=cache))
    if child.returncode != 0:
        raise SystemExit(f"{path.name}: {child.stderr[-1500:]}")
    line = next(x for x in reversed(child.stdout.splitlines()) if x.startswith("CHOICE "))
    return {**json.loads(line[len("CHOICE "):]), "wall_s": child.wall_s, "rss_mb": child.peak_rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", help="comma-separated config names (default: every shipped config)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    find_data_dir()
    names = args.configs.split(",") if args.configs else sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
    rows = []
    for name in names:
        result = probe(ROOT / "configs" / f"{name}.yaml")
        rows.append((name, result))
        print(f"  {name}: {result['reason']} (probe {result['probe_s']:.1f} s)", file=sys.stderr, flush=True)

    def cell(value, digits=3):
        return "–" if value is None else f"{value:.{digits}f}"

    lines = ["# `training.jit_compile: auto`: the XLA probe on every shipped config", "", machine_line(machine()), "",
             "| config | estimated training s | decision | ms/step without XLA | with XLA | XLA compile s "
             "| probe s | probe / estimated training | repaid? |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r in rows:
        estimate = r.get("estimated_train_s")
        share = f"{100 * r['probe_s'] / estimate:.0f}%" if estimate else "–"
        if r["enabled"]:
            saved = (r["plain_ms"] - r["xla_ms"]) / r["plain_ms"] * estimate - (r["xla_compile_s"] or 0)
            runs = math.ceil(r["probe_s"] / saved) if saved > 0 else None
            repaid = (f"saves about {saved:.1f} s per run (XLA's compile included): the probe is repaid "
                      + ("by the first run" if runs == 1 else f"after {runs} runs" if runs else "never"))
        else:
            repaid = "no XLA: a one-off cost per machine, read from the cache afterwards"
        lines.append(f"| {name} | {cell(estimate, 1)} | {'XLA' if r['enabled'] else 'no XLA'} | {cell(r['plain_ms'])} "
                     f"| {cell(r['xla_ms'])} | {cell(r['xla_compile_s'], 2)} | {r['probe_s']:.1f} | {share} | {repaid} |")
    lines += ["", "Estimated training: ms/step without XLA × steps per epoch × epochs (training steps only). The "
              "probe: a fresh process per config with an empty cache, as a user's first run on a new machine."]
    publish(lines, args.out)


if __name__ == "__main__":
    main()
