"""``nnrun report``: one self-contained HTML page per run, or for a set of runs.

The page inlines everything (CSS, PNG figures as ``data:`` URIs), so it opens
from disk with no server and no network. A run's page holds the config, the
model summary, the metrics table, the training curves, the confusion matrix,
a grid of test images with true and predicted labels (image data) and the
run's environment. Figures the run directory already has (``curves.png``,
``confusion_matrix.png``, ``misclassified.png``) are inlined as they are;
a missing confusion matrix is made by ``nnrun.evaluation`` (as ``nnrun
evaluate`` would, writing its files into the run directory).

``--compare`` pages hold the compare table (the keys that differ between the
runs as columns) and each run's curves overlaid, one figure per metric.
"""

from __future__ import annotations

import base64
import contextlib
import html
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from nnrun import rundir as rd
from nnrun.atomic import write_text_atomic
from nnrun.errors import RunDirError

SAMPLE_IMAGES = 20
#: Sections of a run's page, by element id, in order (the browser test checks them).
RUN_SECTIONS = ("config", "model-summary", "metrics", "curves", "confusion-matrix", "samples", "environment")
COMPARE_SECTIONS = ("comparison", "curves", "runs")

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.5em; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: .1em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 4px; padding: .8em; overflow-x: auto; font-size: 12px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .3em .7em; text-align: left; } th { background: #f3f3f3; }
td.num { text-align: right; } td:first-child { white-space: nowrap; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #8a6d00; background: #fff8e1; border-left: 3px solid #f0c000; padding: .4em .8em; }
.status-completed { color: #137333; } .status-failed, .status-crashed { color: #c5221f; }
.status-interrupted, .status-running, .status-diverged { color: #b06000; } .status-pruned { color: #8430ce; }
nav a { margin-right: 1em; }
"""

# Counts the figures the browser could decode, so a headless check can tell a broken image from a drawn one.
_SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-images-decoded", images.filter(function (i) { return i.naturalWidth > 0; }).length);
});
"""


# ----------------------------------------------------------------- pieces


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}">\n<h2>{_esc(title)}</h2>\n{body}\n</section>'


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _pre(text: str) -> str:
    return f"<pre>{_esc(text.rstrip())}</pre>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(header: list[str], rows: list[list[Any]], numeric: list[bool] | None = None) -> str:
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=num" if n else ""}>{cell}</td>' for cell, n in zip(row, numeric)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_png(draw: Callable[[Path], None]) -> bytes:
    """Call a ``plots`` function that writes a PNG to a path, and return the bytes."""
    with tempfile.TemporaryDirectory(prefix="nnrun-report-") as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        return path.read_bytes()


def _page(title: str, subtitle: str, sections: list[str], nav: list[tuple[str, str]]) -> str:
    links = " ".join(f'<a href="#{i}">{_esc(t)}</a>' for i, t in nav)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_esc(title)}</title>\n<style>{_STYLE}</style>\n<script>{_SCRIPT}</script>\n</head>\n<body>\n"
        f"<h1>{_esc(title)}</h1>\n<p class=\"sub\">{subtitle}</p>\n<nav>{links}</nav>\n"
        + "\n".join(sections)
        + f"\n<footer><p class=\"sub\">written by nnrun report, {datetime.now():%Y-%m-%d %H:%M}</p></footer>\n</body>\n</html>\n"
    )


# -------------------------------------------------------------- one run


def build_run_report(path: str | Path, *, evaluate: bool = True, notes: list[str] | None = None) -> str:
    """The HTML page of one run directory.

    Args:
        evaluate: make the confusion matrix (and sample predictions) with the run's model when the
            run directory has no ``confusion_matrix.png`` yet; this writes ``nnrun evaluate``'s files.
        notes: receives one line per thing the page had to leave out or compute.

    Raises:
        RunDirError: not a run directory, or a corrupt ``run.json``.
    """
    from nnrun.compare import metrics_rows

    notes = notes if notes is not None else []
    run = rd.open_run(path)
    info = run.read_run()
    status = rd.effective_status(info, run.path)
    sections = []

    config = run.file(rd.CONFIG)
    sections.append(_section("config", "Config", _pre(config.read_text()) if config.is_file() else _note(f"no {rd.CONFIG}")))
    summary = run.file(rd.SUMMARY)
    sections.append(_section("model-summary", "Model summary",
                             _pre(summary.read_text()) if summary.is_file() else _note(f"no {rd.SUMMARY}")))  # fmt: skip

    metrics = rd.read_json(run.file(rd.METRICS)) if run.file(rd.METRICS).is_file() else {}
    keys, rows = metrics_rows(metrics)
    if rows:
        body = _table(["split", *keys], [[_esc(cell) for cell in row] for row in rows], [False] + [True] * len(keys))
        if metrics.get("best_epoch") is not None:
            body += f"<p>best epoch {_esc(metrics['best_epoch'])} of {_esc(metrics.get('epochs_run'))}</p>"
    else:
        body = _note(f"no {rd.METRICS}: the run is {status}; metrics are written when training completes.")
    sections.append(_section("metrics", "Metrics", body))

    curves, rows = run.file(rd.CURVES), []
    with contextlib.suppress(RunDirError):  # a history cut off mid-line: no curves, as before
        rows = [] if curves.is_file() else run.read_history()
    if rows:  # pruned, interrupted or running: drawn from its history
        from nnrun.plots import plot_curves

        drawn = _img(render_png(lambda path: plot_curves(rows, path, title=info.get("name") or "")), "training curves")
    sections.append(_section("curves", "Training curves", _img(curves.read_bytes(), "training curves") if curves.is_file()
                             else drawn + _note(f"drawn from {rd.HISTORY}: the run is {status}.") if rows
                             else _note(f"no {rd.CURVES}: the run is {status}.")))  # fmt: skip

    evaluation, samples = _evaluation_figures(run, info, status, evaluate, notes)
    regression = (info.get("signature") or {}).get("task") == "regression"
    sections.append(_section("confusion-matrix", "Predictions against the truth (test split, regression)" if regression
                             else "Confusion matrix (test split)", evaluation))
    sections.append(_section("samples", "Sample test images: true and predicted labels", samples))
    sections.append(_section("environment", "Environment", _environment(info, status)))

    subtitle = (
        f'<span class="status-{_esc(status)}">{_esc(status)}</span> · {_esc(info.get("dataset"))} · '
        f"started {_esc((info.get('started') or '').replace('T', ' '))} · {_esc(run.path)}"
    )
    nav = [(s, s.replace("-", " ")) for s in RUN_SECTIONS]
    return _page(f"nnrun report: {run.id}", subtitle, sections, nav)


def _evaluation_figures(run: rd.RunDir, info: dict[str, Any], status: str, evaluate: bool,
                        notes: list[str]) -> tuple[str, str]:
    """The confusion-matrix and sample-images sections' HTML; the run's model and data are loaded once for both."""
    files = rd.evaluation_files()
    regression = (info.get("signature") or {}).get("task") == "regression"
    cm_png = run.file(files["regression_png" if regression else "confusion_png"])
    signature = info.get("signature")  # a run from before signatures: MNIST or Fashion-MNIST are its image runs
    image_run = signature.get("kind") == "image" if signature else info.get("dataset") in ("mnist", "fashion_mnist")
    has_model = run.file(rd.MODEL).is_file()
    needs_evaluation = not cm_png.is_file() and evaluate and has_model
    trained = dataset = None
    if has_model and (needs_evaluation or image_run):
        from nnrun.trained import load_run_dataset, load_trained

        trained = load_trained(run.path)
        dataset = load_run_dataset(trained, only="test")
    if needs_evaluation:
        from nnrun.evaluation import evaluate_run, write_evaluation

        written = write_evaluation(evaluate_run(run.path, trained=trained, dataset=dataset))
        notes.append(f"evaluated the test split: wrote {', '.join(p.name for p in written)} in {run.path}")
    if cm_png.is_file():
        confusion = _img(cm_png.read_bytes(), "predicted against true, and residuals" if regression else "confusion matrix")
        evaluation = run.file(files["json"])
        if evaluation.is_file():
            result = rd.read_json(evaluation)
            parts = [f"{k} {v:.4f}" for k, v in (result.get("metrics") or {}).items() if isinstance(v, (int, float))]
            if regression:
                parts.append(f"in the units of '{result.get('target')}'")
            if isinstance(result.get("macro_f1"), (int, float)):
                parts.append(f"macro F1 {result['macro_f1']:.4f}")
            confusion = f"<p>{_esc(', '.join(parts))} on {_esc(result.get('samples'))} test samples</p>" + confusion
    elif not has_model:
        confusion = _note(f"no confusion matrix: the run is {status} and has no {rd.MODEL}.")
    else:
        confusion = _note("no confusion matrix yet: run `nnrun evaluate` on this run, or `nnrun report` without --no-evaluate.")

    if not image_run:
        samples = _note(f"not image data ({info.get('dataset')}): no sample images.")
        if regression:
            samples = _note("a regression on a table: the figure above shows every test prediction.")
    elif not has_model:
        samples = _note(f"no sample predictions: the run has no {rd.MODEL}.")
    else:
        samples = _img(render_png(lambda path: plot_sample_predictions(trained, dataset, path)), "sample test images")
        if run.file(files["misclassified"]).is_file():
            samples += "<h3>Most confidently misclassified</h3>" + _img(run.file(files["misclassified"]).read_bytes(), "misclassified")
    return confusion, samples


def plot_sample_predictions(trained: Any, dataset: Any, out: Path, count: int = SAMPLE_IMAGES) -> None:
    """The first ``count`` test images with their true and predicted labels, drawn to ``out``."""
    from nnrun.plots import plot_image_grid

    x_raw, y = dataset.x_test[:count], dataset.y_test[:count]
    predicted = trained.predict(x_raw).argmax(axis=1)
    names = trained.class_names
    titles = [f"true: {names[t]}\npred: {names[p]}" + ("" if t == p else "  ✗") for t, p in zip(y, predicted)]
    correct = int((predicted == y).sum())
    plot_image_grid(x_raw, titles, out, title=f"first {len(y)} test images: {correct} of {len(y)} right")


def _environment(info: dict[str, Any], status: str) -> str:
    versions = info.get("versions") if isinstance(info.get("versions"), dict) else {}
    rows = [
        ("status", status), ("started", info.get("started")), ("finished", info.get("finished")),
        ("duration (s)", info.get("duration_s")), ("epochs run", info.get("epochs_run")), ("seed", info.get("seed")),
        ("host", info.get("host")), ("platform", info.get("platform")),
        *((f"{name} version", version) for name, version in versions.items()),
        ("git commit", info.get("git_commit")), ("config file", info.get("config_file")),
        ("command", " ".join(info["argv"]) if isinstance(info.get("argv"), list) else None),
        ("working folder", info.get("cwd")), ("error", info.get("error")),
    ]  # fmt: skip
    return _table(["", "value"], [[_esc(k), _esc(v)] for k, v in rows if v not in (None, "")])


# -------------------------------------------------------------- several runs


def build_compare_report(paths: list[str | Path], *, sort: str | None = None, notes: list[str] | None = None) -> str:
    """The HTML page of a set of runs: the compare table of the keys that differ, and overlaid curves.

    Raises:
        RunDirError: a path does not exist or holds no runs.
    """
    from nnrun.compare import compare_runs, display
    from nnrun.compare.query import ABSENT, lookup, without_replaced_attempts
    from nnrun.compare.records import load_records
    from nnrun.plots import plot_runs

    notes = notes if notes is not None else []
    sweep = _sweep(paths)
    records, left = load_records(list(paths)), []
    if sweep:  # as the sweep's own table: its metric, completed trials first, no attempt a retry replaced
        records = without_replaced_attempts(records, Path(paths[0]), left)
    measured = sweep and any(lookup(r, sweep.metric) is not ABSENT for r in records)  # not yet, if all were pruned
    ranked = sweep and not sort  # else the order the user asked for
    sort = sort or (sweep.metric if measured else "best_val_accuracy")
    comparison = compare_runs(list(paths), sort=sort, only_changed=True, records=records)
    if ranked:
        comparison.records.sort(key=lambda row: row.status != "completed")  # a pruned one's value is of fewer epochs
    comparison.notes += left
    records = [r for r in comparison.records if r.readable]
    if not records:
        raise RunDirError(f"no run directories under {', '.join(map(str, paths))}; pass a runs folder or run directories.")
    columns = comparison.columns
    rows, numeric = [], [False] * len(columns)
    for record in comparison.records:
        row = []
        for i, column in enumerate(columns):
            value = comparison.value(record, column)
            numeric[i] = numeric[i] or isinstance(value, (int, float)) and not isinstance(value, bool)
            cell = _esc(display(column, value))
            if column == "status":
                cell = f'<span class="status-{_esc(value)}">{cell}</span>'
            row.append(cell)
        rows.append(row)
    table = _table(columns, rows, numeric) + "".join(_note(n) for n in comparison.notes)

    figures = []
    for metric in ("val_accuracy", "accuracy", "val_loss", "loss"):
        series = []
        for record in records:
            values = record.history.get(metric)
            if values:
                epochs = record.history.get("epoch") or list(range(1, len(values) + 1))
                series.append((record.path.name, epochs, values))
        if series:
            figures.append(_img(render_png(lambda path, s=series, m=metric: plot_runs(s, path, metric=m)), f"{metric} per epoch"))
    curves = "\n".join(figures) or _note("no run has a history.csv yet.")

    links = []
    for record in records:
        page = record.path / rd.REPORT
        target = f'<a href="{_esc(page.resolve().as_uri())}">{_esc(record.path.name)}</a>' if page.is_file() else _esc(record.path.name)
        links.append([target, _esc(record.status), _esc(str(record.path))])
    sections = [
        _section("comparison", f"Comparison of {len(comparison.records)} runs", table),
        _section("curves", "Training curves, overlaid", curves),
        _section("runs", "Runs", _table(["run", "status", "path"], links)),
    ]
    subtitle = f"{len(comparison.records)} runs under {_esc(', '.join(map(str, paths)))}; sorted by {_esc(sort)}"
    return _page("nnrun report: comparison", subtitle, sections, [(s, s) for s in COMPARE_SECTIONS])


def _sweep(paths: list[str | Path]) -> Any:
    """The ``sweep.json`` of one sweep folder, or None (several paths, another folder, or an unreadable file)."""
    if len(paths) != 1 or not (Path(paths[0]) / rd.SWEEP).is_file():
        return None
    from nnrun.sweep.state import read_state  # no Optuna

    try:
        return read_state(paths[0])
    except RunDirError:
        return None  # every run, as for any folder


def write_report(html_text: str, path: str | Path) -> Path:
    path = Path(path)
    write_text_atomic(path, html_text)
    return path
