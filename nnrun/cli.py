"""The ``nnrun`` command line: thin Typer commands over plain functions.

Each command parses its arguments, calls one function and maps errors to
exit codes (0 ok, 1 failure, 2 bad input, 130 interrupted). Heavy modules
(TensorFlow above all) are imported inside the commands that need them, so
``nnrun --help`` answers at once.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.markup import escape

from nnrun import rundir
from nnrun.console import make_console
from nnrun.errors import ExitCode, NnrunError, first_line
from nnrun.tf import exit_fast

app = typer.Typer(
    name="nnrun",
    help="Train, evaluate and compare Keras models from YAML configs. Every run is a folder under runs/.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Sets = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a config key (VALUE is YAML); repeatable, e.g. --set training.epochs=3."),
]
ConfigPath = Annotated[Path, typer.Argument(help="The YAML config, e.g. configs/mnist_mlp.yaml.", show_default=False)]


def _fail(message: str, code: int) -> None:
    make_console().print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def guarded(debug: bool, fn: Callable[[], object]) -> object:
    """Run ``fn``; turn nnrun errors into one line and an exit code, tracebacks only with --debug."""
    try:
        return fn()
    except typer.Exit:
        raise
    except NnrunError as exc:
        if debug:
            traceback.print_exc()
        _fail(str(exc), int(exc.exit_code))
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        _fail("interrupted.", int(ExitCode.INTERRUPTED))
    except Exception as exc:  # a bug or an unexpected library error
        if debug:
            traceback.print_exc()
        detail = first_line(exc) if str(exc).strip() else ""
        _fail(f"unexpected {type(exc).__name__}: {detail} (run again with --debug for the traceback).", int(ExitCode.FAILURE))
    return None


def _load(config: Path, sets: list[str] | None, *, name: str | None = None, runs_dir: str | None = None,
          echo: list[str] | None = None):
    from nnrun.config import load_config

    overrides, flags = list(sets or []), {}
    if name is not None:
        overrides.append(f"run.name={json.dumps(name)}")  # as text: --name 2024 is not a number, nor 'null' none
        flags["run.name"] = "--name"
    if runs_dir is not None:
        overrides.append(f"run.runs_dir={json.dumps(str(runs_dir))}")
        flags["run.runs_dir"] = "--runs-dir"
    return load_config(config, overrides, echo=echo, flags=flags)


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Argument(help="The YAML config, e.g. configs/mnist_mlp.yaml.", show_default=False)] = None,
    sets: Sets = None,
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="Run name (default: the config's run.name or file name).")] = None,
    runs_dir: Annotated[Optional[str], typer.Option("--runs-dir", help="Folder for run directories (default: run.runs_dir, 'runs').")] = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="Seconds-long check: 512 training samples, 1 epoch.")] = False,
    resume: Annotated[Optional[Path], typer.Option("--resume", metavar="RUN_DIR", help="Continue an interrupted or crashed run from its last completed epoch.")] = None,
    rerun: Annotated[Optional[Path], typer.Option("--rerun", metavar="RUN_DIR", help="Train a run's saved config again, in a new run directory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the run directory.")] = False,
    debug: Debug = False,
) -> None:
    """Train a config into a new run directory, evaluate it on the test split, and print where it went."""

    def run() -> None:
        from nnrun.console import Reporter
        from nnrun.errors import ConfigError

        given = [flag for flag, value in (("CONFIG", config), ("--resume", resume), ("--rerun", rerun)) if value is not None]
        if len(given) != 1:
            raise ConfigError(
                "give exactly one of CONFIG, --resume RUN_DIR or --rerun RUN_DIR"
                + (f" (got {', '.join(given)})." if given else ", e.g. nnrun train configs/diabetes_mlp.yaml.")
            )
        reporter = Reporter(make_console(quiet=quiet))
        if resume is not None:
            if sets or name is not None or runs_dir is not None or smoke:
                raise ConfigError("--resume continues a run exactly as it was configured; drop --set, --name, --runs-dir and --smoke.")
            from nnrun.training import resume as resume_run

            result = resume_run(resume, reporter=reporter, argv=sys.argv)
            typer.echo(str(result.run_dir))
            return
        source = config
        if rerun is not None:
            source = rundir.open_run(rerun).file(rundir.CONFIG)
        echo: list[str] = []
        cfg = _load(source, sets, name=name, runs_dir=runs_dir, echo=echo)
        for line in echo[: len(sets or [])]:  # --name and --runs-dir are not echoed
            reporter.print(f"[dim]override[/] {line}", soft_wrap=True)
        from nnrun.training import train as train_run

        result = train_run(cfg, reporter=reporter, argv=sys.argv, smoke=smoke, config_path=str(source))
        typer.echo(str(result.run_dir))

    guarded(debug, run)


@app.command()
def check(
    config: ConfigPath,
    sets: Sets = None,
    debug: Debug = False,
) -> None:
    """Validate a config without training: schema, data, model and their fit. Exit 0 if all holds, 2 if not."""

    def run() -> None:
        from nnrun.check import check_config

        console = make_console()
        for item in check_config(_load(config, sets), config):
            console.print(item, soft_wrap=isinstance(item, str))

    guarded(debug, run)


RunDirArg = Annotated[Path, typer.Argument(help="A run directory, e.g. runs/20250101-120000-mnist_mlp.", show_default=False)]
RunPaths = Annotated[
    Optional[list[Path]],
    typer.Argument(help="Runs folders (every run below) or run directories. Default: runs/.", show_default=False),
]
SortKey = Annotated[Optional[str], typer.Option("--sort", metavar="COLUMN", help="Sort by a column or key; accuracy-like descending, others ascending.")]
Filters = Annotated[
    Optional[list[str]],
    typer.Option("--filter", "-f", metavar="EXPR", help="Keep runs where EXPR holds (= != > >= < <= ~), e.g. test.accuracy>0.9; repeatable."),
]
Format = Annotated[str, typer.Option("--format", metavar="table|csv|markdown|json", help="Output format.")]
Output = Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write to FILE instead of printing.")]


@app.command()
def evaluate(
    run_dir: RunDirArg,
    split: Annotated[str, typer.Option("--split", metavar="test|validation|train", help="The split to measure.")] = "test",
    data: Annotated[Optional[Path], typer.Option("--data", metavar="PATH", help="Measure this CSV or IDX folder (shaped like the training data) instead.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout instead of the report.")] = False,
    debug: Debug = False,
) -> None:
    """Reload a run's model and saved preprocessing, measure a split, and write evaluation.json, the confusion matrix and misclassified.png."""

    def run() -> None:
        import json

        from nnrun.evaluation import evaluate_run, render_evaluation, write_evaluation

        evaluation = evaluate_run(run_dir, split=split, data=data)
        files = write_evaluation(evaluation)
        if json_output:
            typer.echo(json.dumps(evaluation.result, indent=2))
            return
        console = make_console()
        for item in render_evaluation(evaluation.result, files):
            console.print(item, soft_wrap=isinstance(item, str))

    guarded(debug, run)


def _show_runs(paths: list[Path] | None, fmt: str, output: Path | None, **options: object) -> object:
    """Shared by compare and list: read, format, then print (table on stderr, data on stdout) or write."""

    from nnrun.atomic import write_text_atomic
    from nnrun.compare import compare_runs, format_comparison

    console = make_console()
    comparison = compare_runs(paths or [Path("runs")], **options)
    width = console.width if console.is_terminal and output is None else None
    formatted = format_comparison(comparison, fmt, width=width, styled=output is None)
    if not comparison.total and fmt == "table" and output is None:
        console.print(f"no runs in {escape(', '.join(map(str, paths or [Path('runs')])))}. `nnrun train CONFIG` makes one.")
        return comparison
    if output is not None:
        write_text_atomic(output, formatted.plain if fmt == "table" else formatted)
        console.print(f"wrote {len(comparison.records)} runs to [cyan]{escape(str(output))}[/]", soft_wrap=True)
    elif fmt == "table":
        console.print(formatted, soft_wrap=True, end="")
    else:
        sys.stdout.write(formatted)
    for note in comparison.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    if fmt == "table" and output is None:
        shown, total = len(comparison.records), comparison.total
        if "runs" in comparison.columns:  # --group-by: a row per group, of the runs the filters kept
            runs = sum(row.fields.get("runs", 0) for row in comparison.records)
            console.print(f"[dim]{shown} group{'s' if shown != 1 else ''} of {runs} run{'s' if runs != 1 else ''}[/]")
        else:
            console.print(f"[dim]{shown} run{'s' if shown != 1 else ''}" + (f" of {total}" if shown != total else "") + "[/]")
    return comparison


@app.command()
def compare(
    paths: RunPaths = None,
    sort: SortKey = None,
    ascending: Annotated[Optional[bool], typer.Option("--asc/--desc", help="Force the sort direction.", show_default=False)] = None,
    filters: Filters = None,
    only_changed: Annotated[bool, typer.Option("--only-changed", help="Show the config keys whose values differ between the runs.")] = False,
    columns: Annotated[
        Optional[list[str]],
        typer.Option("--columns", "-c", metavar="A,B,...", help="Columns to show (any key: test.loss, training.batch_size); +KEY adds to the defaults."),
    ] = None,
    fmt: Format = "table",
    output: Output = None,
    group_by: Annotated[Optional[list[str]], typer.Option("--group-by", metavar="KEY[,KEY]", help="One row per distinct value of the keys: run count, mean ± std of each number (e.g. seeds).")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", metavar="FILE.png", help="Overlay every listed run's validation curve.")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", help="The history.csv column to plot (default val_accuracy, else val_loss).")] = None,
    debug: Debug = False,
) -> None:
    """Compare runs side by side: status, hyperparameters, best validation and test metrics. Reads small files only."""

    def run() -> None:
        comparison = _show_runs(
            paths, fmt, output, sort=sort, descending=None if ascending is None else not ascending,
            filters=filters or [], only_changed=only_changed, columns=columns or [], group_by=group_by or None,
        )  # fmt: skip
        if plot is not None:

            from nnrun.compare import plot_comparison

            console = make_console()
            for note in plot_comparison(comparison, plot, metric):
                console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
            console.print(f"wrote plot [cyan]{escape(str(plot))}[/]", soft_wrap=True)

    guarded(debug, run)


@app.command("list")
def list_runs(
    paths: RunPaths = None,
    sort: SortKey = None,
    filters: Filters = None,
    fmt: Format = "table",
    output: Output = None,
    debug: Debug = False,
) -> None:
    """List runs: id, dataset, status, epochs, accuracy, duration (compare with fewer columns)."""
    from nnrun.compare import LIST_COLUMNS

    guarded(debug, lambda: _show_runs(paths, fmt, output, sort=sort, filters=filters or [], default_columns=LIST_COLUMNS))


@app.command()
def show(run_dir: RunDirArg, debug: Debug = False) -> None:
    """One run at a glance: status, resolved config, metrics, model summary and the files with their sizes."""

    def run() -> None:

        from nnrun.show import show_run

        console = make_console()
        for item in show_run(run_dir):
            console.print(item, soft_wrap=isinstance(item, str))

    guarded(debug, run)


@app.command()
def predict(
    run_dir: RunDirArg,
    inputs: Annotated[list[Path], typer.Argument(help="CSV, .npy, PNG/JPEG images or IDX files.", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many of the likeliest classes to show.")] = 3,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE.csv", help="Write every prediction as CSV ('-': stdout).")] = None,
    invert: Annotated[bool, typer.Option("--invert", help="Invert pixel values: for dark drawings on a light background.")] = False,
    debug: Debug = False,
) -> None:
    """Predict classes with a trained run: its model and saved preprocessing on new CSV, .npy, image or IDX inputs."""

    def run() -> None:

        from nnrun.atomic import write_text_atomic
        from nnrun.predict import predict_run, predictions_csv, render_predictions

        predictions = predict_run(run_dir, list(inputs), top_k=top_k, invert=invert)
        console = make_console()
        if output is not None and str(output) == "-":
            sys.stdout.write(predictions_csv(predictions))
            return
        for item in render_predictions(predictions):
            console.print(item, soft_wrap=isinstance(item, str))
        if output is not None:
            write_text_atomic(output, predictions_csv(predictions))
            console.print(f"wrote {len(predictions.names)} predictions to [cyan]{output}[/]", soft_wrap=True)

    guarded(debug, run)


@app.command()
def report(
    paths: Annotated[Optional[list[Path]], typer.Argument(help="A run directory; with --compare, runs folders or run directories (default: runs/).", show_default=False)] = None,
    compare_runs: Annotated[bool, typer.Option("--compare", help="One page for a set of runs: the compare table and overlaid curves.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Where to write the page (default: report.html in the run directory or the first folder).")] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", metavar="COLUMN", help="With --compare: the column that orders the runs (default: best_val_accuracy; a sweep folder's: its metric).")] = None,
    no_evaluate: Annotated[bool, typer.Option("--no-evaluate", help="Do not run the evaluation for a missing confusion matrix; leave that section empty.")] = False,
    debug: Debug = False,
) -> None:
    """Write a self-contained report.html (figures inlined; no server, no network) for a run, or for a set of runs with --compare."""

    def run() -> None:

        from nnrun.errors import ConfigError
        from nnrun.report import build_compare_report, build_run_report, write_report

        console = make_console()
        notes: list[str] = []
        if compare_runs:
            folders = list(paths or [Path("runs")])
            page = build_compare_report(folders, sort=sort, notes=notes)
            target = output or (folders[0] if folders[0].is_dir() else folders[0].parent) / rundir.REPORT
        else:
            if not paths or len(paths) != 1:
                raise ConfigError("give one run directory, e.g. nnrun report runs/20250101-120000-mnist_mlp, "
                                  "or --compare for several runs.")
            if sort:
                raise ConfigError("--sort orders the runs of a --compare page; drop it for one run.")
            page = build_run_report(paths[0], evaluate=not no_evaluate, notes=notes)
            target = output or paths[0] / rundir.REPORT
        write_report(page, target)
        for note in notes:
            console.print(f"[dim]note:[/] {note}", soft_wrap=True)
        console.print(f"wrote [cyan]{target}[/] ({len(page.encode()) / 1024:.0f} KB); open it in any browser", soft_wrap=True)
        typer.echo(str(target))

    guarded(debug, run)


@app.command()
def export(
    run_dir: RunDirArg,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="saved_model|onnx|litert|keras", help="The artefact's format.")],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="PATH", help="Where to write it (saved_model: a folder, in TF Serving's layout).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing PATH.")] = False,
    check: Annotated[bool, typer.Option("--check/--no-check", help="Reload the artefact in its own runtime and compare it with nnrun predict on 256 test samples.")] = True,
    debug: Debug = False,
) -> None:
    """Export a run's model with its preprocessing inside: raw inputs in, probabilities or values out."""

    def run() -> None:
        from nnrun.export import export_run

        result = export_run(run_dir, fmt, output, force=force, check=check)
        checked = (f"; matches nnrun predict on {result.checked_samples} test samples (largest difference "
                   f"{result.max_difference:.1e})" if result.checked_samples else "; not checked (--no-check)")
        make_console().print(f"wrote [cyan]{result.path}[/] and [cyan]{result.description}[/]{checked}", soft_wrap=True)
        typer.echo(str(result.path))

    guarded(debug, run)


from nnrun.sweep.command import add_command as add_sweep_command  # noqa: E402 - here: it needs guarded and Debug
from nnrun.tracking.command import build_app as build_mlflow_app  # noqa: E402 - here, as the sweep command

add_sweep_command(app, guarded, Debug, Sets)
app.add_typer(build_mlflow_app(guarded, Debug), name="mlflow")


def main() -> None:
    try:
        app()
    except SystemExit as exc:  # a finished train/evaluate/predict ends without TensorFlow's ~1 s teardown
        exit_fast(exc.code, sys.argv[1] if len(sys.argv) > 1 else None)
        raise


if __name__ == "__main__":
    main()
