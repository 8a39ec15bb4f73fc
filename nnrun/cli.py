"""The ``nnrun`` command line: thin Typer commands over plain functions.

Each command parses its arguments, calls one function and maps errors to
exit codes (0 ok, 1 failure, 2 bad input, 130 interrupted). Heavy modules
(TensorFlow above all) are imported inside the commands that need them, so
``nnrun --help`` answers at once.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from nnrun.errors import ExitCode, NnrunError

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
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False).print(f"[bold red]Error:[/] {escape(message)}", soft_wrap=True)
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
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _fail(f"unexpected {type(exc).__name__}: {detail} (run again with --debug for the traceback).", int(ExitCode.FAILURE))
    return None


def _load(config: Path, sets: list[str] | None, *, name: str | None = None, runs_dir: Path | None = None,
          echo: list[str] | None = None):
    from nnrun.config import load_config

    overrides = list(sets or [])
    if name is not None:
        overrides.append(f"run.name={name}")
    if runs_dir is not None:
        overrides.append(f"run.runs_dir={runs_dir}")
    return load_config(config, overrides, echo=echo)


@app.command()
def train(
    config: Annotated[Optional[Path], typer.Argument(help="The YAML config, e.g. configs/mnist_mlp.yaml.", show_default=False)] = None,
    sets: Sets = None,
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="Run name (default: the config's run.name or file name).")] = None,
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Folder for run directories (default: run.runs_dir, 'runs').")] = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="Seconds-long check: 512 training samples, 1 epoch.")] = False,
    resume: Annotated[Optional[Path], typer.Option("--resume", metavar="RUN_DIR", help="Continue an interrupted or crashed run from its last completed epoch.")] = None,
    rerun: Annotated[Optional[Path], typer.Option("--rerun", metavar="RUN_DIR", help="Train a run's saved config again, in a new run directory.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the run directory.")] = False,
    debug: Debug = False,
) -> None:
    """Train a config into a new run directory, evaluate it on the test split, and print where it went."""

    def run() -> None:
        from nnrun.console import Reporter, make_console
        from nnrun.errors import ConfigError

        given = [flag for flag, value in (("CONFIG", config), ("--resume", resume), ("--rerun", rerun)) if value is not None]
        if len(given) != 1:
            raise ConfigError(
                "give exactly one of CONFIG, --resume RUN_DIR or --rerun RUN_DIR"
                + (f" (got {', '.join(given)})." if given else ", e.g. nnrun train configs/diabetes_mlp.yaml.")
            )
        reporter = Reporter(make_console(quiet=quiet))
        if resume is not None:
            if sets or name or runs_dir or smoke:
                raise ConfigError("--resume continues a run exactly as it was configured; drop --set, --name, --runs-dir and --smoke.")
            from nnrun.training import resume as resume_run

            result = resume_run(resume, reporter=reporter, argv=sys.argv)
            typer.echo(str(result.run_dir))
            return
        source = config
        if rerun is not None:
            from nnrun import rundir

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
        from rich.console import Console
        from rich.syntax import Syntax
        from rich.table import Table

        console = Console(stderr=True, highlight=False)
        cfg = _load(config, sets)
        console.print(f"[green]✓[/] {config}: schema valid")
        console.print(Syntax(cfg.to_yaml(), "yaml", theme="ansi_dark", background_color="default"))

        from nnrun.training import model_summary, prepare

        prepared = prepare(cfg)
        table = Table(title="data shapes after each preprocessing step", header_style="bold")
        for column in ("step", "x (train)", "y (train)"):
            table.add_column(column)
        for step, x_shape, y_shape in prepared.shapes:
            table.add_row(step, str(x_shape), str(y_shape))
        console.print(table)
        console.print(model_summary(prepared.model), markup=False)
        console.print(
            f"[green]✓[/] {config}: data, model, loss, metrics and callbacks fit together "
            f"(steps_per_execution {prepared.steps_per_execution})"
        )

    guarded(debug, run)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
