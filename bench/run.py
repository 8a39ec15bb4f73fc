"""Benchmark: nnrun against the tutorials' plain-Keras scripts, plus CLI latency and data loading.

For each shipped tutorial config, the plain-Keras script in
``bench/baselines/<config>.py`` and ``nnrun train configs/<config>.yaml``
run as separate processes, alternately (baseline first in odd repeats,
nnrun first in even ones), ``--repeats`` times each. Every process is timed
from spawn to exit (imports and data loading included) and its own peak RSS
is taken from ``wait4``. Test accuracy (R² for the regression config,
penguins_mass) comes from the baseline's ``RESULT`` line and from nnrun's
``metrics.json``. Then the CLI latencies
(``bench/cli_latency.py``) and the data-loading figures
(``bench/data_load.py``). The output is one markdown report.

Usage:
    python bench/run.py                       # full: every config, 3 repeats (make bench)
    python bench/run.py --quick               # fewer epochs, 1 repeat: a few minutes
    python bench/run.py --configs diabetes_mlp,mnist_dense512 --repeats 5 --out bench/results.md
    python bench/run.py --only train          # or cli, data, levers (levers: bench/levers.py)
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import (  # noqa: E402
    BENCH,
    NNRUN,
    PYTHON,
    ROOT,
    child_env,
    find_data_dir,
    fmt_spread,
    machine,
    machine_line,
    run_child,
    spread,
)

#: The tutorial configs that have a baseline script, in the order of issue 5's table, then the typed-CSV ones.
CONFIGS = (
    "diabetes_mlp", "mnist_mlp", "mnist_dense512", "mnist_dense32",
    "fashion_slp", "fashion_wide", "fashion_mlp", "fashion_cnn",
    "penguins_species", "penguins_mass",
)  # fmt: skip

#: Shipped configs with a baseline that the default run leaves out (12 epochs x 3 sides x repeats is ~40 min here);
#: ``bench/precision.py`` times it in float32 and bfloat16.
OPTIONAL = ("mnist_cnn",)

#: Configs whose data is in the repo (configs/data/), not in $NNRUN_DATA_DIR.
REPO_DATA = frozenset({"penguins_species", "penguins_mass"})

#: The test figure a config is judged by: accuracy, unless named here (R² for regression). The
#: baseline's RESULT line has it as ``test_<figure>`` (``test_accuracy``), nnrun's metrics.json as
#: ``test.<figure>``; MAE and RMSE (grams) come along for regression, for the raw JSON.
TEST_FIGURE = {"penguins_mass": "r2"}
EXTRA_FIGURES = {"r2": ("mae", "rmse")}
FIGURE_LABEL = {"accuracy": "acc", "r2": "R²"}

#: --quick: epochs per config (the others get QUICK_EPOCHS_DEFAULT).
QUICK_EPOCHS = {"diabetes_mlp": 10, "penguins_species": 5, "penguins_mass": 10}
QUICK_EPOCHS_DEFAULT = 2

# Issue 15's targets, against the verbose=0 plain script (the fastest honest one); issue 5's RSS budget stays.
TARGET_EACH = 0.8
TARGET_SUM = 0.6
TARGET_RSS = 1.2
TARGET_ACCURACY_POINTS = 0.3
TARGET_GFLOPS = 150.0
# The typed-CSV configs: nnrun lays out the encoded table its own way, so the first layer's initial
# weights differ from the get_dummies script's and the test figures agree within a tolerance only.
# config: (figure, largest |nnrun - Keras|; accuracy in points, R² as a difference).
TARGET_TOLERANCE = {"penguins_species": ("accuracy", 1.0), "penguins_mass": ("r2", 0.02)}

#: The three sides: the tutorial's script as written (its progress bar), the same script with verbose=0,
#: and nnrun. Each process is timed whole (spawn to exit) and around its whole fit() call.
SIDES = ("tutorial", "verbose0", "nnrun")
SIDE_LABEL = {"tutorial": "tutorial script", "verbose0": "verbose=0 script", "nnrun": "nnrun"}


def test_figure(name: str) -> str:
    return TEST_FIGURE.get(name, "accuracy")


def figure_delta(figure: str, nnrun: float, keras: float) -> float:
    """nnrun - Keras: in points (100x) for accuracy, as it is for R²."""
    return 100 * (nnrun - keras) if figure == "accuracy" else nnrun - keras


def config_epochs(name: str) -> int:
    import yaml

    return int(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())["training"].get("epochs", 10))


def run_baseline(name: str, epochs: int, *, quiet: bool, env: dict[str, str]) -> dict:
    extra = {"BENCH_EPOCHS": str(epochs), **({"BENCH_VERBOSE": "0"} if quiet else {})}
    child = run_child([PYTHON, str(BENCH / "baselines" / f"{name}.py")], env={**env, **extra})
    if child.returncode != 0:
        raise SystemExit(f"baseline {name} failed ({child.returncode}):\n{child.stderr[-2000:]}")
    line = next(x for x in reversed(child.stdout.splitlines()) if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    figure = test_figure(name)
    return {
        "wall_s": child.wall_s, "rss_mb": child.peak_rss_mb, figure: result[f"test_{figure}"],
        **{extra: result.get(f"test_{extra}") for extra in EXTRA_FIGURES.get(figure, ())},
        "fit_s": result["train_seconds"], "epoch_s": result.get("epoch_seconds", []), "params": result.get("params"),
    }  # fmt: skip


def run_nnrun(name: str, epochs: int, extra_sets: list[str], env: dict[str, str]) -> dict:
    runs_dir = Path(tempfile.mkdtemp(prefix="nnrun-bench-"))
    try:
        sets = [f"training.epochs={epochs}", *extra_sets]
        args = [NNRUN, "train", str(ROOT / "configs" / f"{name}.yaml"), "--quiet", "--runs-dir", str(runs_dir)]
        for item in sets:
            args += ["--set", item]
        child = run_child(args, env=env)
        if child.returncode != 0:
            raise SystemExit(f"nnrun train {name} failed ({child.returncode}):\n{child.stderr[-2000:]}")
        run_dir = Path(child.stdout.strip().splitlines()[-1])
        metrics = json.loads((run_dir / "metrics.json").read_text())
        info = json.loads((run_dir / "run.json").read_text())
        with open(run_dir / "history.csv", newline="") as handle:
            epoch_s = [float(row["time_s"]) for row in csv.DictReader(handle)]
        figure = test_figure(name)
        return {
            "wall_s": child.wall_s, "rss_mb": child.peak_rss_mb, figure: metrics["test"][figure],
            **{extra: metrics["test"].get(extra) for extra in EXTRA_FIGURES.get(figure, ())},
            "fit_s": info["fit_s"], "epoch_s": epoch_s, "params": info.get("model", {}).get("params"),
            "steps_per_execution": info.get("steps_per_execution"), "jit_compile": info.get("jit_compile"),
            "jit_probe": info.get("jit_probe"),
        }  # fmt: skip
    finally:
        shutil.rmtree(runs_dir, ignore_errors=True)


def bench_training(configs: list[str], repeats: int, tutorial_repeats: int, quick: bool, extra_sets: list[str],
                   env: dict[str, str]) -> dict:
    """Every side of every config, ``repeats`` times (the tutorial side ``tutorial_repeats``), in rotating order."""
    results = {}
    for name in configs:
        full = config_epochs(name)
        epochs = min(full, QUICK_EPOCHS.get(name, QUICK_EPOCHS_DEFAULT)) if quick else full
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        for repeat in range(repeats):
            order = SIDES[repeat % 3:] + SIDES[:repeat % 3]
            for side in order:
                if side == "tutorial" and repeat >= tutorial_repeats:
                    continue
                t0 = time.perf_counter()
                if side == "nnrun":
                    result = run_nnrun(name, epochs, extra_sets, env)
                else:
                    result = run_baseline(name, epochs, quiet=side == "verbose0", env=env)
                runs[side].append(result)
                figure = test_figure(name)
                print(f"  {name:<15} {side:<8} #{repeat + 1}: {result['wall_s']:6.1f}s wall, fit {result['fit_s']:6.1f}s, "
                      f"{result['rss_mb']:5.0f} MB, {FIGURE_LABEL[figure]} {result[figure]:.4f}  "
                      f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr, flush=True)  # fmt: skip
        results[name] = {"epochs": epochs, "full_epochs": full, **runs}
    return results


# ----------------------------------------------------------------- report


def _mark(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _figure_cell(figure: str, value: float) -> str:
    return f"{value:.4f}" if figure == "accuracy" else f"{FIGURE_LABEL[figure]} {value:.4f}"


def _delta_cell(figure: str, delta: float) -> str:
    return f"{delta:+.2f}" if figure == "accuracy" else f"Δ{FIGURE_LABEL[figure]} {delta:+.4f}"


def _median(runs: list[dict], key: str) -> float | None:
    values = [run[key] for run in runs if run.get(key) is not None]
    return statistics.median(values) if values else None


def _cell(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def training_report(results: dict, repeats: int) -> tuple[list[str], dict]:
    regression = any(test_figure(name) != "accuracy" for name in results)
    acc = "test acc / R²" if regression else "test acc"
    lines = [
        "| config | epochs | tutorial wall s | verbose=0 wall s | nnrun wall s | nnrun / verbose=0 | nnrun / tutorial "
        "| tutorial fit s | verbose=0 fit s | nnrun fit s | nnrun / verbose=0 fit "
        f"| verbose=0 RSS MB | nnrun RSS MB | RSS ratio | verbose=0 {acc} | nnrun {acc} "
        f"| Δ points{' / ΔR²' if regression else ''} | nnrun spe | nnrun XLA |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | --- |",
    ]
    summary = {"ratios": {}, "tutorial_ratios": {}, "rss": {}, "accuracy_points": {}, "tolerance": {}, "xla": {},
               "quick": {}, "probe": {}}
    totals = {side: 0.0 for side in SIDES}
    for name, r in results.items():
        tut, quiet, nn = r["tutorial"], r["verbose0"], r["nnrun"]
        walls = {side: spread([x["wall_s"] for x in r[side]]) if r[side] else None for side in SIDES}
        ratio = walls["nnrun"]["median"] / walls["verbose0"]["median"]
        tut_ratio = walls["nnrun"]["median"] / walls["tutorial"]["median"] if walls["tutorial"] else None
        fits = {side: _median(r[side], "fit_s") for side in SIDES}
        qrss, nrss = _median(quiet, "rss_mb"), _median(nn, "rss_mb")
        figure = test_figure(name)
        bacc, nacc = quiet[0][figure], nn[0][figure]
        varies = len({x[figure] for x in quiet + tut}) > 1 or len({x[figure] for x in nn}) > 1
        delta = figure_delta(figure, nacc, bacc)
        summary["ratios"][name] = ratio
        if tut_ratio is not None:
            summary["tutorial_ratios"][name] = tut_ratio
        summary["rss"][name] = nrss / qrss
        if name in TARGET_TOLERANCE:
            summary["tolerance"][name] = {"keras": bacc, "nnrun": nacc, "delta": delta}
        else:
            summary["accuracy_points"][name] = delta
        summary["quick"][name] = r["epochs"] != r["full_epochs"]
        summary["xla"][name] = bool(nn[0].get("jit_compile"))
        summary["probe"][name] = [run.get("jit_probe") for run in nn]
        for side in SIDES:
            totals[side] += walls[side]["median"] if walls[side] else 0.0
        epochs_cell = str(r["epochs"]) if r["epochs"] == r["full_epochs"] else f"{r['epochs']} of {r['full_epochs']}"
        lines.append(
            f"| {name} | {epochs_cell} "
            f"| {fmt_spread(walls['tutorial']) if walls['tutorial'] else '–'} | {fmt_spread(walls['verbose0'])} "
            f"| {fmt_spread(walls['nnrun'])} | **{ratio:.2f}** | {_cell(tut_ratio)} "
            f"| {_cell(fits['tutorial'])} | {_cell(fits['verbose0'])} | {_cell(fits['nnrun'])} "
            f"| {fits['nnrun'] / fits['verbose0']:.2f} "
            f"| {qrss:.0f} | {nrss:.0f} | {nrss / qrss:.2f} "
            f"| {_figure_cell(figure, bacc)} | {_figure_cell(figure, nacc)} "
            f"| {_delta_cell(figure, delta)}{' (varies between repeats)' if varies else ''} "
            f"| {nn[0].get('steps_per_execution')} | {'on' if nn[0].get('jit_compile') else 'off'} |"
        )
    summary["totals"] = totals
    if totals["verbose0"]:
        tut_total = f"{totals['nnrun'] / totals['tutorial']:.2f}" if totals["tutorial"] else "–"
        lines.append(f"| **sum** | | {totals['tutorial']:.1f} | {totals['verbose0']:.1f} | {totals['nnrun']:.1f} "
                     f"| **{totals['nnrun'] / totals['verbose0']:.2f}** | {tut_total} | | | | | | | | | | | | |")
    lines.append("")
    lines.append(
        f"Wall: whole process, spawn to exit (imports, data loading, training, evaluation, saving), median of "
        f"{repeats} alternated processes (min–max){'; the tutorial side fewer, see the run line' if any(len(r['tutorial']) < repeats for r in results.values()) else ''}. "
        "fit s: the whole `model.fit()` call on every side (nnrun: `fit_s` in run.json). Accuracy: the verbose=0 "
        "script's and nnrun's first repeat (the tutorial script's equals the verbose=0 one's: verbose changes no "
        "arithmetic); Δ points = 100 × (nnrun − Keras)"
        + ("; R² (regression, in grams): first repeat, ΔR² = nnrun − Keras." if regression else "."))
    return lines, summary


def targets_report(results: dict, summary: dict) -> list[str]:
    ratios, rss, points = summary["ratios"], summary["rss"], summary["accuracy_points"]
    lines = ["| target | measured | |", "| --- | --- | --- |"]
    if ratios:
        worst = max(ratios, key=ratios.get)
        over = [f"{k} {v:.2f}×" for k, v in ratios.items() if v > TARGET_EACH]
        lines.append(f"| every config ≤ {TARGET_EACH}× the verbose=0 script (wall) | worst {worst} {ratios[worst]:.2f}×"
                     f"{'; over: ' + ', '.join(over) if over else ''} | {_mark(ratios[worst] <= TARGET_EACH)} |")
        totals = summary["totals"]
        total = totals["nnrun"] / totals["verbose0"]
        lines.append(f"| sum ≤ {TARGET_SUM}× the verbose=0 scripts | {total:.2f}× ({totals['nnrun']:.1f} s vs "
                     f"{totals['verbose0']:.1f} s) | {_mark(total <= TARGET_SUM)} |")
    worst_rss = max(rss, key=rss.get)
    lines.append(f"| peak RSS ≤ {TARGET_RSS}× | worst {worst_rss} {rss[worst_rss]:.2f}× | {_mark(rss[worst_rss] <= TARGET_RSS)} |")
    xla = summary["xla"]
    identical = [k for k, v in points.items() if v == 0]
    differ_without_xla = [f"{k} {points[k]:+.2f}" for k in points if not xla.get(k) and points[k] != 0]
    with_xla = [f"{k} {points[k]:+.2f}" for k in points if xla.get(k)]
    ok = not differ_without_xla and all(abs(points[k]) <= TARGET_ACCURACY_POINTS for k in points if xla.get(k))
    if points:
        lines.append(
            f"| float32 test accuracy identical to the plain script (within {TARGET_ACCURACY_POINTS} points where the "
            f"probe chose XLA) | identical: {', '.join(identical) or 'none'}; with XLA: {', '.join(with_xla) or 'none'}"
            f"{'; differ without XLA: ' + ', '.join(differ_without_xla) if differ_without_xla else ''} | {_mark(ok)} |"
        )
    for name, measured in summary["tolerance"].items():
        figure, limit = TARGET_TOLERANCE[name]
        if figure == "accuracy":
            target = f"{name}: test accuracy within {limit:g} point{'s' if limit != 1 else ''} of the Keras script"
            value = f"{measured['delta']:+.2f} points ({measured['nnrun']:.4f} vs {measured['keras']:.4f})"
        else:
            target = f"{name}: test {FIGURE_LABEL[figure]} within {limit:g} of the Keras script"
            value = f"Δ{FIGURE_LABEL[figure]} {measured['delta']:+.4f} ({measured['nnrun']:.4f} vs {measured['keras']:.4f})"
        if summary["quick"].get(name):
            value += ", fewer epochs than the config's: indicative only"
        lines.append(f"| {target} | {value} | {_mark(abs(measured['delta']) <= limit)} |")
    return lines


def probe_report(summary: dict) -> list[str]:
    """What ``jit_compile: auto`` decided per config, and what the probe cost on the first run (cold cache)."""
    lines = ["| config | decision | ms/step without XLA | with XLA | XLA compile s | probe s (first run) | reason |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for name, probes in summary["probe"].items():
        first = next((p for p in probes if p), None)
        if not first:
            continue
        cost = max((p.get("probe_s") or 0.0) for p in probes if p)
        lines.append(f"| {name} | {'XLA' if first['enabled'] else 'no XLA'} | {_cell(first.get('plain_ms'), 3)} "
                     f"| {_cell(first.get('xla_ms'), 3)} | {_cell(first.get('xla_compile_s'), 1)} | {cost:.1f} "
                     f"| {first['reason']} |")
    return lines


def gflops_report(results: dict, peak: float) -> tuple[list[str], float | None]:
    r = results.get("mnist_dense512")
    if not r:
        return [], None
    lines, best = [], None
    for side in SIDES:
        runs = r[side]
        epoch_s = [s for run in runs for s in (run["epoch_s"][1:] or run["epoch_s"])]
        params = runs[0]["params"] if runs else None
        if not epoch_s or not params:
            continue
        per_epoch = statistics.median(epoch_s)
        gflops = 6 * params * 60000 / per_epoch / 1e9
        if side == "nnrun":
            best = gflops
        which = "epochs 2.." if len(runs[0]["epoch_s"]) > 1 else "epoch 1 (tracing included)"
        lines.append(f"| {SIDE_LABEL[side]} | {params:,} | {per_epoch:.3f} ({which}) | {gflops:.0f} | {100 * gflops / peak:.0f}% |")
    if not lines:
        return [], None
    return ["| mnist_dense512 | parameters | s/epoch (median) | GFLOP/s (6 × params × 60,000 / s) "
            f"| of the {peak:.0f} GFLOP/s nominal peak |", "| --- | ---: | ---: | ---: | ---: |", *lines], best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="diabetes and penguins_mass 10 epochs, penguins_species 5, the others 2; "
                             "1 repeat unless --repeats")
    parser.add_argument("--repeats", type=int, help="processes per side and config (default 3; 1 with --quick)")
    parser.add_argument("--tutorial-repeats", type=int,
                        help="processes of the tutorial script as written (its progress bar) per config (default: --repeats)")
    parser.add_argument("--configs", help=f"comma-separated subset of: {','.join(CONFIGS + OPTIONAL)}")
    parser.add_argument("--only", choices=("train", "cli", "data", "levers"), action="append",
                        help="run only these parts (repeatable); default: train, cli, data")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="extra override for the nnrun side, e.g. training.jit_compile=true (a lever experiment)")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="RAW.json",
                        help="report on the training results of earlier --json files instead of training (runs of "
                             "config subsets, e.g. split up to leave the CPU to others between them)")
    parser.add_argument("--out", type=Path, help="also write the markdown report to this file")
    parser.add_argument("--json", type=Path, help="write every raw measurement to this JSON file")
    args = parser.parse_args()

    configs = args.configs.split(",") if args.configs else list(CONFIGS)
    unknown = [c for c in configs if c not in CONFIGS + OPTIONAL]
    if unknown:
        raise SystemExit(f"bench: unknown config(s) {', '.join(unknown)}; choose from {', '.join(CONFIGS + OPTIONAL)}.")
    repeats = args.repeats or (1 if args.quick else 3)
    parts = args.only or ["train", "cli", "data"]
    # The datasets folder is needed unless only the configs with their data in the repo train.
    needs_data_dir = set(parts) != {"train"} or any(name not in REPO_DATA for name in configs)
    data_dir = find_data_dir() if needs_data_dir else None
    info = machine()
    started = datetime.now()
    print(f"bench: {machine_line(info)}; data {data_dir or 'configs/data (in the repo)'}", file=sys.stderr, flush=True)

    # Untimed warm-up: TensorFlow's files in the page cache for every side alike, and nnrun's decoded-data
    # cache written, so every timed nnrun run is a repeat run (as all but a user's very first are). The cache
    # folder is new, so the XLA probe's timings are not: the first nnrun run of a config pays the probe.
    cache = tempfile.mkdtemp(prefix="nnrun-bench-cache-")
    env = child_env(NNRUN_CACHE_DIR=cache)
    if not args.merge:
        run_child([PYTHON, "-c", "import tensorflow"], env=env)
    if data_dir is not None and not args.merge:
        run_child([PYTHON, "-c", "from nnrun.datasets import load_idx_dataset as load; load('mnist'); "
                   "load('fashion_mnist')"], env=env)  # fmt: skip

    report = [
        f"# nnrun benchmark{' (--quick)' if args.quick else ''}",
        "",
        f"{started:%Y-%m-%d %H:%M}; {machine_line(info)}.",
        "",
    ]
    raw: dict = {"machine": info, "started": started.isoformat(timespec="seconds"), "quick": args.quick, "repeats": repeats}
    if "train" in parts:
        tutorial_repeats = repeats if args.tutorial_repeats is None else args.tutorial_repeats
        print(f"bench: training, {len(configs)} config(s) x {repeats} repeat(s) x 3 sides "
              f"(the tutorial script {tutorial_repeats})", file=sys.stderr, flush=True)
        if args.merge:
            merged = [json.loads(path.read_text()) for path in args.merge]
            results = {name: r for m in merged for name, r in m["training"].items()}
            repeats = max(m["repeats"] for m in merged)
            report[2] = (f"{merged[0]['started'][:16].replace('T', ' ')}; {machine_line(merged[0]['machine'])} "
                         f"(merged from {len(merged)} runs: {', '.join(str(p) for p in args.merge)}).")
        else:
            results = bench_training(configs, repeats, tutorial_repeats, args.quick, args.sets, env)
        raw["training"] = results
        table, summary = training_report(results, repeats)
        report += ["## Training: nnrun against the plain-Keras scripts, as written and with verbose=0", ""]
        if args.sets:
            report += [f"nnrun side with {' '.join('--set ' + s for s in args.sets)}.", ""]
        report += table + ["", "### Targets", ""] + targets_report(results, summary) + [""]
        report += [
            "Where nnrun runs without XLA the arithmetic is the tutorial's: the same data order and dropout "
            "masks (the same seed, set once), `scale: 1/255` divides by 255 as the tutorials do, and "
            "`steps_per_execution` groups the same steps. Evaluation batches of 256 (Keras: 32) change only the "
            "order in which the test loss is summed, not the accuracy. With XLA on (the 'nnrun XLA' column), fused "
            f"float32 arithmetic rounds differently, so accuracy there is held to within {TARGET_ACCURACY_POINTS} points.",
            "",
        ]
        if any(name in TARGET_TOLERANCE for name in results):
            report += [
                "The penguins configs (a typed CSV) have the same seed, split, imputation, scaling, layers and epochs "
                "as their pandas scripts, but nnrun encodes the table with its own column layout (the scripts use "
                "`pd.get_dummies`), so the first layer starts from other random weights: their test figures are "
                "held to a tolerance instead (accuracy in points, R² as a difference).",
                "",
            ]
        report += ["### XLA: what `jit_compile: auto` measured and chose", ""] + probe_report(summary) + [""]
        gflops, achieved = gflops_report(results, float(info["fp32_peak_gflops"]))
        if gflops:
            xla_pays = summary["xla"].get("mnist_dense512")
            mark = _mark(achieved >= TARGET_GFLOPS) if xla_pays else ("missed; not a CPU where XLA pays (the probe chose "
                                                                        "no XLA for mnist_dense512)" if achieved < TARGET_GFLOPS else "met")
            report += ["### Compute", ""] + gflops + ["", f"Target: mnist_dense512 ≥ {TARGET_GFLOPS:.0f} GFLOP/s fp32 on a "
                                                          f"CPU where XLA pays: nnrun {achieved:.0f} GFLOP/s, {mark}.", ""]
    if "cli" in parts:
        import cli_latency

        print("bench: CLI latency", file=sys.stderr, flush=True)
        lines, raw["cli"] = cli_latency.report(repeats=max(5, repeats))
        report += ["## CLI latency", ""] + lines + [""]
    if "data" in parts:
        import data_load

        print("bench: data loading", file=sys.stderr, flush=True)
        lines, raw["data"] = data_load.report(repeats=5)
        report += ["## Data loading", ""] + lines + [""]
    if "levers" in parts:
        import levers

        print("bench: levers", file=sys.stderr, flush=True)
        lines, raw["levers"] = levers.report(quick=args.quick)
        report += ["## Levers", ""] + lines + [""]
    minutes = (datetime.now() - started).total_seconds() / 60
    report.append(f"Benchmark took {minutes:.1f} min; load average at the end {' '.join(machine()['load'].split())}.")
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2, default=str))


if __name__ == "__main__":
    main()
