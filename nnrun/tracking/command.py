"""``nnrun mlflow sync``: the Typer sub-app that ``nnrun.cli`` mounts as ``nnrun mlflow``.

It lives beside the code it calls rather than in cli.py, which the layout test holds to its size. cli.py
passes in its error guard and its ``--debug`` option, so nothing here imports cli.py. Importing this module
loads only typer: ``nnrun --help`` never loads MLflow (nor pydantic, nor TensorFlow).
"""

# No `from __future__ import annotations`: typer reads the options from annotations built at def time.
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

Guard = Callable[[bool, Callable[[], object]], object]


def build_app(guarded: Guard, debug_option: Any) -> typer.Typer:
    """The ``mlflow`` command group; ``guarded`` turns nnrun errors into one line and an exit code."""
    app = typer.Typer(help="Send runs and sweeps to MLflow (pip install 'nnrun\\[mlflow]').", no_args_is_help=True)

    @app.command("sync")
    def sync_command(
        paths: Annotated[list[Path], typer.Argument(help="Run directories, sweep folders (runs/sweep-...) or runs folders.", show_default=False)],
        tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", metavar="URI", show_default=False, help=(
            "An MLflow server (http://127.0.0.1:5000) or store (sqlite:///runs.db). "
            "Default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this folder."))] = None,
        experiment: Annotated[str, typer.Option("--experiment", "-e", help="The MLflow experiment (created if missing).")] = "nnrun",
        debug: debug_option = False,
    ) -> None:
        """Write runs to MLflow: config as params, history and test metrics, tags, files and model as artefacts. Run it again to update them; nothing is duplicated."""

        def run() -> None:
            import os

            from nnrun.console import make_console
            from nnrun.tracking.client import render_sync, sync

            os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # its database-setup INFO lines are noise here
            result = sync(list(paths), tracking_uri=tracking_uri, experiment=experiment)
            console = make_console()
            for line in render_sync(result):
                console.print(line, soft_wrap=True)
            for item in result.synced:  # stdout: what scripts read
                typer.echo(f"{item.run_id}\t{item.path}")

        guarded(debug, run)

    return app
