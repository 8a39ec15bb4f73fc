"""``nnrun sweep``, which cli.py adds to its app (passing in its error guard and shared options).

Importing this module loads only typer; the sweep code, Optuna and TensorFlow load when the command runs.
"""

# No `from __future__ import annotations`: typer reads the options from annotations built at def time.
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from nnrun.errors import ConfigError

Guard = Callable[[bool, Callable[[], object]], object]


def add_command(app: typer.Typer, guarded: Guard, debug_option: Any, sets_option: Any) -> None:
    """Add ``sweep`` to ``app``; ``guarded`` turns nnrun errors into one line and an exit code."""

    @app.command()
    def sweep(
        config: Annotated[Optional[Path], typer.Argument(help="The YAML config to vary (its sweep: section, if any, holds the space).", show_default=False)] = None,
        grid: Annotated[Optional[list[str]], typer.Option("--grid", "-g", metavar="KEY=V1,V2", help=(
            "Values to try for a key; repeatable, e.g. --grid model.layers.0.units=32,64 or a range "
            "--grid training.optimizer.learning_rate='loguniform(1e-4,1e-1)' (also uniform, randint; random and tpe)."))] = None,
        sets: sets_option = None,
        search: Annotated[Optional[str], typer.Option("--search", metavar="grid|random|tpe", help="Optuna's sampler (default: sweep.search, grid).")] = None,
        trials: Annotated[Optional[int], typer.Option("--trials", metavar="N", help="Trials to run (default: the whole grid; random and tpe need it).")] = None,
        random_trials: Annotated[Optional[int], typer.Option("--random", metavar="N", help="Same as --search random --trials N.")] = None,
        prune: Annotated[Optional[str], typer.Option("--prune", metavar="none|median|hyperband", help="Stop poor trials after an epoch (default: none).")] = None,
        repeats: Annotated[Optional[int], typer.Option("--repeats", metavar="K", help="Train every trial at K seeds (run.seed, +1, ...); ranked by the mean.")] = None,
        seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the sampler (default: sweep.seed, 0).")] = None,
        metric: Annotated[Optional[str], typer.Option("--metric", help="Compare column that ranks the trials (default: sweep.metric, val_accuracy).")] = None,
        storage: Annotated[Optional[str], typer.Option("--storage", metavar="URL", help="Keep the study in this database (SQLAlchemy URL) instead of the sweep folder's journal file.")] = None,
        heartbeat: Annotated[Optional[float], typer.Option("--heartbeat", metavar="SECONDS", help="A worker's heartbeat; after 2x this without one its trials are retried (default: sweep.heartbeat, 10).", show_default=False)] = None,
        jobs: Annotated[int, typer.Option("--jobs", "-j", help="Workers on this machine: N - 1 more `--join` processes, each with an equal share of the CPU threads.")] = 1,
        executor: Annotated[str, typer.Option("--executor", metavar="local|ray", help="local: this machine; ray: a Ray instance or cluster (pip install 'nnrun\\[ray]').")] = "local",
        address: Annotated[Optional[str], typer.Option("--address", metavar="HOST:PORT", help="With --executor ray: the cluster's head (default: start a local Ray instance).")] = None,
        gpus_per_trial: Annotated[float, typer.Option("--gpus-per-trial", help="With --executor ray: GPUs Ray reserves for each trial.")] = 0,
        join: Annotated[Optional[Path], typer.Option("--join", metavar="SWEEP_DIR", help="Work on a running sweep's study too, from another process or machine.")] = None,
        resume: Annotated[Optional[Path], typer.Option("--resume", metavar="SWEEP_DIR", help="Continue a stopped sweep: failed or interrupted trials again (from their checkpoints), then the rest.")] = None,
        name: Annotated[Optional[str], typer.Option("--name", "-n", help="Sweep name (default: the config's run.name or file name).")] = None,
        runs_dir: Annotated[Optional[str], typer.Option("--runs-dir", help="Folder for the sweep directory (default: run.runs_dir, 'runs').")] = None,
        smoke: Annotated[bool, typer.Option("--smoke", help="Seconds-long trials: 512 training samples, 1 epoch each.")] = False,
        debug: debug_option = False,
    ) -> None:
        """Search a config's hyperparameters with Optuna: each trial a run directory under runs/sweep-.../, ranked in one table.

        --search, --trials, --prune, --repeats, --seed, --metric, --storage and --heartbeat set the config's sweep: keys.
        """
        flags = dict(search=search, trials=trials, random=random_trials, prune=prune, repeats=repeats, seed=seed,
                     metric=metric, storage=storage, heartbeat=heartbeat, runs_dir=runs_dir, name=name)  # fmt: skip
        options = dict(executor=executor, jobs=jobs, address=address, gpus_per_trial=gpus_per_trial)
        guarded(debug, lambda: run_sweep(config, join, resume, grid or [], sets or [], smoke, flags, options))


def run_sweep(config: Optional[Path], join: Optional[Path], resume: Optional[Path], grid: list[str], sets: list[str],
              smoke: bool, flags: dict[str, Any], options: dict[str, Any]) -> None:
    """Start a sweep (CONFIG), or work on one (--join, --resume); print the table and the best trial."""
    from rich.markup import escape  # the user's values, paths and commands: '[accuracy,AUC]' is no style tag

    from nnrun import rundir
    from nnrun.console import make_console
    from nnrun.sweep.orchestrate import (
        resume_state,
        share_cpus,
        start_sweep,
        sweep_comparison,
        watches_validation,
        work,
    )
    from nnrun.sweep.plan import ranked_on_test_data

    console, shell = make_console(), Path.cwd()  # --join and --resume move to the folder the sweep started in
    if sum(x is not None for x in (config, join, resume)) != 1:
        raise ConfigError("give exactly one of CONFIG, --join SWEEP_DIR or --resume SWEEP_DIR, "
                          "e.g. nnrun sweep configs/diabetes_sweep.yaml.")
    check_executor(**options)
    share_cpus(options["jobs"])
    path = join or resume
    if path is not None:
        path = path.resolve()  # before resume_state moves to the folder the sweep started in
        given = {"--grid": grid, "--set": sets, "--smoke": smoke} | {f"--{k.replace('_', '-')}": v is not None
                                                                    for k, v in flags.items()}  # fmt: skip
        if setup := [flag for flag, value in given.items() if value]:
            raise ConfigError(f"{'--join' if join else '--resume'} works on a sweep exactly as it was set up; drop "
                              f"{', '.join(setup)} (a sweep with other settings is a new sweep: nnrun sweep CONFIG ...).")
        state = resume_state(path, retry_failed=resume is not None)
        console.print(f"[bold]nnrun[/] {'joining' if join else 'resuming'} sweep [cyan]{escape(str(path))}[/]", soft_wrap=True)
        if state.executor.startswith("ray") and options["executor"] == "local":  # sweep.json: its last worker's
            console.print("[yellow]note:[/] this sweep ran on Ray; this worker trains here (add --executor ray, and "
                          "--address for a cluster, to go on with Ray).", soft_wrap=True)
    else:
        path, state = start_sweep(config, sets, grid, smoke=smoke, argv=sys.argv, data_here=not options["address"], **flags)
        console.print(f"[bold]nnrun[/] sweep [cyan]{escape(str(path))}[/]: {state.budget} trial{'s' * (state.budget != 1)} ({state.mode}, seed {state.seed}"
                      + (f", {state.prune} pruning" if state.prune != "none" else "")
                      + (f", {state.repeats} seeds each" if state.repeats > 1 else "") + f"), ranked by {state.metric}",
                      soft_wrap=True)  # fmt: skip
        if note := ranked_on_test_data(state.metric, state.base_config, state.grid):
            console.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    if (join or resume) and state.status == "completed":  # sweep.json as it was: no worker's session to add
        console.print("every trial of this sweep is done: nothing left to run.")
    else:
        try:
            state = work(path, state, echo=lambda line: console.print(line, soft_wrap=True), **options)
        except ConfigError:
            if config is not None and not state.trials:  # refused before its first trial (Ray's GPUs): no sweep left
                shutil.rmtree(path, ignore_errors=True)
            raise
    comparison = sweep_comparison(path, state)
    if comparison is not None:
        from nnrun.compare import render_text

        console.print(render_text(comparison), soft_wrap=True)  # full column names: the varied keys are the point
        for note in comparison.notes:
            console.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True)
    counts = ", ".join(f"{n} {s}" for s, n in state.to_dict()["counts"].items())
    console.print(f"sweep {state.status}: {counts}; {escape(str(path / rundir.SWEEP))}", soft_wrap=True)
    if best := state.best:
        spread = f" ± {best['std']:.4f}" if best.get("std") is not None else ""
        watched = watches_validation(state, best["params"])
        how = (f"Train it again in a new run (its callbacks monitor {watched}, so the validation split stays)" if watched
               else "Train it on all the training data")  # fmt: skip
        if " --rerun " in best["retrain"]:
            how += (f" (from its run's own config: {escape(str(state.config_file))} no longer gives the trials' config "
                    "here; edited, say, or not on this machine)")
        where = f"cd {shlex.quote(str(Path.cwd()))} && " if Path.cwd() != shell else ""  # its config path is from there
        console.print(f"best: trial {best['trial']}, {state.metric} {best['value']:.4f}{spread}. {how}:\n"
                      f"  {escape(where + best['retrain'])}", soft_wrap=True)  # fmt: skip
    if any(t.status in ("failed", "interrupted") for t in state.trials):
        console.print(f"Run the failed or interrupted trials again: nnrun sweep --resume {escape(shlex.quote(str(path)))}",
                      soft_wrap=True)  # fmt: skip
    typer.echo(str(path))
    if state.status not in ("completed", "running"):
        raise typer.Exit(1)


def check_executor(executor: str, jobs: int, address: str | None = None, gpus_per_trial: float = 0) -> None:
    """ConfigError for options that do not fit together, or for Ray missing when it is asked for."""
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor must be local or ray, got {executor!r}.")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}.")
    if not gpus_per_trial >= 0 or (gpus_per_trial > 1 and not float(gpus_per_trial).is_integer()):  # as Ray takes them
        raise ConfigError(f"--gpus-per-trial must be a share of one GPU (0.5, say) or a whole number of GPUs, got "
                          f"{gpus_per_trial:g}.")
    if executor == "local" and (address or gpus_per_trial):
        raise ConfigError("--address and --gpus-per-trial need --executor ray.")
    if executor == "ray" and jobs > 1:
        raise ConfigError("--jobs is for --executor local; Ray runs as many trials at once as its cluster has CPUs (or GPUs).")
    if executor == "ray":
        from nnrun.sweep.ray import check_address, import_ray

        import_ray()  # the install hint
        if address:
            check_address(address)
