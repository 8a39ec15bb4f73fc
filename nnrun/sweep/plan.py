"""What a sweep will do, from its config and ``--grid`` options, checked before anything is created: the space,
the search and its budget, and the metric that ranks the trials (and that the pruner hears each epoch)."""

from __future__ import annotations

import difflib
import itertools
import json
import math
import os
import shlex
import socket
from pathlib import Path
from typing import Any

from nnrun.compare import COLUMNS, METRIC_SECTIONS, canonical
from nnrun.compare.query import higher_is_better
from nnrun.config import RunConfig, validate_config
from nnrun.config.schema import SweepConfig
from nnrun.datasets import fingerprint
from nnrun.datasets.table import resolve_task
from nnrun.errors import ConfigError, DataChanged
from nnrun.keras_names import metric_names
from nnrun.sweep import space


def plan(config: RunConfig, grid_options: list[str] = (), given: Any = ()) -> dict[str, Any]:
    """The sweep that ``config`` (its ``sweep:`` section) and ``--grid`` options describe, checked as far as it can be
    without training: ``SweepState``'s set-up fields. ``given``: the sweep keys a flag set (errors name the flag).

    Raises:
        ConfigError: a bad grid key, value, range, search, pruner or metric.
    """
    grid = space.collect_grid(config, list(grid_options))
    section = config.sweep or SweepConfig()
    if section.random and (section.search not in (None, "random") or section.trials):
        raise ConfigError("--random N (sweep.random) is --search random --trials N; give one spelling, not both.")
    search, budget = section.search or ("random" if section.random else "grid"), section.trials or section.random
    if search == "grid":
        size = math.prod(len(values) for values in space.grid_choices(grid).values())  # refuses ranges
        if budget and budget > size:  # a grid trains each point once: the rest would silently not run
            said = "--trials" if "trials" in given else "sweep.trials"
            raise ConfigError(f"{said} {budget}: the grid has {size} points, and --search grid trains each once; give "
                              f"at most {size}, or draw {budget} trials with --search random or --search tpe.")
        budget = budget or size
    elif budget is None:
        raise ConfigError(f"--search {search} (sweep.search) needs --trials N (sweep.trials: how many trials to run), "
                          "e.g. --trials 20 (or --set sweep.trials=20).")
    said = "--storage" if "storage" in given else "sweep.storage"
    if (url := section.storage) is not None and not url.strip():
        raise ConfigError(f"{said} is empty; give an SQLAlchemy URL (sqlite:////shared/sweeps.db, say), or leave "
                          f"{said} out to keep the study in the sweep folder.")
    if url and sqlite_file(url) == Path(":memory:"):
        raise ConfigError(f"{said} {url}: an in-memory database lives only as long as this process, out of reach of "
                          "--join, --resume and the other workers; give a file (sqlite:////shared/sweeps.db, say), "
                          "or leave --storage out to keep the study in the sweep folder.")
    base = {**config.to_dict(), "sweep": None}
    flags = {space.grid_key(space.parse_grid_option(text)[0], grid, base) for text in grid_options}
    space.check_grid(grid, base, section.repeats, flags=flags)
    said = "--metric" if "metric" in given else "sweep.metric" if section.metric else "the default metric"
    # Where the space varies the metrics or the validation split, each value (a range: its points) is checked in
    # place of the base config's, which no trial trains with: a value that drops the metric fails its trials.
    varied = {k: grid[k] if isinstance(grid[k], list) else space.range_points(grid[k], k) for place in
              ("training.metrics", "dataset.validation") if (k := space.sole_list_key(grid, place, ranges=True))}
    for point in itertools.product(*varied.values()):
        values = dict(zip(varied, point))
        try:
            metric, monitor = check_metric(section.metric or default_metric(config), section.prune,
                                           validate_config(space.resolve(base, values)) if values else config, said)
        except ConfigError as exc:
            if not values:
                raise
            shown = " and ".join(f"{key} value {json.dumps(value)}" for key, value in values.items())
            raise ConfigError(f"sweep key {shown}: {exc} Or drop that value.") from None
    return dict(mode=search, grid=grid, metric=metric, base_config=base, budget=budget, seed=section.seed,
                prune=section.prune, monitor=monitor, direction="maximize" if higher_is_better(metric) else "minimize",
                repeats=section.repeats, storage=section.storage, heartbeat_s=section.heartbeat)  # fmt: skip


def sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL (relative to the current folder, if relative), or ``Path(':memory:')``
    for an in-memory one; None for another database, or a URL SQLAlchemy cannot read (Optuna's error says why)."""
    from sqlalchemy.engine import make_url  # Optuna's dependency

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - SQLAlchemy's ArgumentError, and others
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    memory = parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
    return Path(":memory:") if memory else Path(parsed.database.removeprefix("file:"))


def data_of(base: dict[str, Any], grid: dict[str, Any]) -> dict[str, Any] | None:
    """The fingerprint of the data every trial trains on, if they share one that is here, and the machine's name."""
    here = None if any(space.reaches(key, "dataset.path") for key in grid) else fingerprint(base["dataset"])
    return here and {**here, "host": socket.gethostname()}


def check_data(state: Any, sweep_dir: Path) -> None:
    """DataChanged when the data file or folder the trials' config names is, here, other data than the sweep started
    with (another copy under the same path, or edited since): the trials could not be ranked together.
    Data that is not here passes: a trial fails on it, for a worker that has it to retry."""
    dataset = state.base_config["dataset"]
    here = state.data and fingerprint(dataset)
    if not here or here["sha256"] == state.data["sha256"]:
        return
    size = {key: f"{d['bytes']:,} bytes" if "bytes" in d else f"{d['files']:,} files" for key, d in (("here", here),
            ("then", state.data))}  # fmt: skip
    given, host = dataset["path"], socket.gethostname()
    then = state.data.get("host", host)  # sweeps that did not record it: this one
    if here["path"] == state.data["path"] and host == then:
        shown = "" if here["path"] == given else f" ({here['path']})"
        raise DataChanged(f"dataset.path {given}{shown} changed since the sweep started ({size['then']} then, "
                          f"{size['here']} now; its SHA-256 differs), so trials on the two could not be ranked "
                          f"together. Put the data back as it was and go on with nnrun sweep --resume "
                          f"{shlex.quote(str(sweep_dir))}, or start a new sweep on it.")
    data_dir = os.environ.get("NNRUN_DATA_DIR")  # the image loader's second place (images.resolve_folder)
    found = dataset["name"] == "images" and data_dir and not Path(given).expanduser().exists() and \
        Path(here["path"]).is_relative_to(Path(data_dir).resolve())
    where, there = ("here", "") if host == then else (f"on {host}", f"on {then}: ")
    raise DataChanged(f"dataset.path {given} is other data {where} ({here['path']}, {size['here']}"
                      f"{f', found through NNRUN_DATA_DIR={data_dir}' if found else ''}) than the sweep's trials trained "
                      f"on ({there}{state.data['path']}, {size['then']}; its SHA-256 differs), so their results could "
                      f"not be ranked together. Work on the sweep where dataset.path gives that data (the sweep started "
                      f"in {state.cwd}{f' on {then}' if there else ''}), or start a new sweep.")


def ranked_on_test_data(metric: str, base: dict[str, Any] | None = None, grid: dict[str, Any] = ()) -> str | None:
    """The warning for a sweep ranked on the test data, which then no longer measures the chosen trial fairly: a test
    metric, or a validation metric where the trials (``base`` with each value of ``grid``) validate on the test data."""
    if base is not None and metric.startswith(("val_", "best_val", "validation.", "best_validation.")):
        keys = [k for k in grid if space.reaches(k, "dataset.validation")]
        splits = [space.resolve(base, {k: v})["dataset"]["validation"] if isinstance(grid[k], list) else "a fraction"
                  for k in keys for v in (grid[k] if isinstance(grid[k], list) else [None])]  # a range: fractions
        splits = splits if keys else [base["dataset"]["validation"]]
        if "test" in splits:
            some = "" if set(splits) == {"test"} else " in some trials, whose values are ranked against the others'"
            return (f"dataset.validation is 'test'{some}, so {metric} is measured on the test data: the sweep chooses "
                    "the hyperparameters on it, and the best trial's test score is optimistic; hold out part of the "
                    "training data instead (dataset.validation: 0.1, say) to keep the test data for the end.")
    if not metric.startswith(("test_", "test.")):
        return None
    name = metric[5:]  # test.NAME: Keras's NAME, logged each epoch too, but for nnrun's own r2 and rmse
    instead = "val_accuracy" if metric == "test_accuracy" else f"validation.{name}" if metric.startswith("test.") \
        and name not in ("r2", "rmse") else "val_loss"
    return (f"ranking by {metric} chooses the hyperparameters on the test data, so the best trial's test score is "
            f"optimistic; rank by a validation metric ({instead}, say) to keep the test data for the end.")


def default_metric(config: RunConfig) -> str:
    """What ranks the trials when neither --metric nor sweep.metric says: val_accuracy, or val_loss for a regression."""
    task = resolve_task(getattr(config.dataset, "task", "classification"), config.training.loss)
    return "val_loss" if task == "regression" else "val_accuracy"


def check_metric(metric: str, prune: str, config: RunConfig, said: str = "--metric") -> tuple[str, str | None]:
    """The compare column for ``metric``, and the epoch's log key the pruner hears for it (None without pruning);
    ``said`` is where the metric came from, for the errors: ``--metric``, ``sweep.metric`` or the default.

    Raises:
        ConfigError: not a metric, one the trials do not log (or without the validation it needs), or one the
            pruner cannot hear.
    """
    key, regression = canonical(metric), default_metric(config) == "val_loss"
    numeric = [c for c in COLUMNS if any(w in c for w in ("accuracy", "loss"))] + ["test_r2", "test_mae", "test_rmse"]
    if key not in numeric and key.partition(".")[0] not in METRIC_SECTIONS:
        fits = ("accuracy",) if regression else ("test_r2", "test_mae", "test_rmse")  # what the task lacks
        numeric = [c for c in [*numeric, "val_accuracy", "val_loss"] if not any(w in c for w in fits)]
        close = difflib.get_close_matches(key, numeric, n=1, cutoff=0.7)
        numeric = [c for c in numeric if not c.startswith("val_")]  # short forms: suggested, not listed
        # val_accuracy and val_loss are short for best_val_...; val_mae, best_val_AUC have no column of their own
        name = key.removeprefix("best_val_").removeprefix("val_")
        logged = {n.lower(): n for n in metric_names(config, validation=False)}  # AUC, as Keras logs it
        spelled = logged.get(name.lower(), name)
        if key.startswith(("val_", "best_val_")):  # a validation metric: by its name, not its prefix
            near = [] if name.lower() in logged or name in ("r2", "rmse") else \
                difflib.get_close_matches(name, list(logged.values()), n=1, cutoff=0.5)  # acc: accuracy
            spelled = near[0] if near else spelled  # precison: precision, as validation.precision
            close = [key[: -len(name)] + near[0]] if near and near[0] in ("accuracy", "loss") else []
        short = f" (short for {canonical(close[0])})" if close and canonical(close[0]) != close[0] else ""
        fix = (f"; did you mean {close[0]}{short}?" if close else
               f"; {name} is nnrun's own measure of a regression, taken once, on the test data (test_{name})"
               if key.startswith("val_") and name in ("r2", "rmse") else
               f"; for {spelled} on the validation data, pass validation.{spelled} (its last epoch) or "
               f"best_validation.{spelled} (at the epoch of the lowest val_loss)"
               + ("" if spelled.lower() in logged else f", once training.metrics has {spelled}")
               if key.startswith(("val_", "best_val_")) else
               ", or a metrics.json path such as test.accuracy, validation.loss or best_validation.AUC")  # fmt: skip
        raise ConfigError(f"{said} {metric!r}: not a metric the compare table has. Use one of {', '.join(numeric)}"
                          f"{fix}{'' if close else '.'}")
    named = metric if key == metric.strip() else f"{metric} ({key})"  # as typed, and the column it stands for
    if key in ("test_r2", "test_mae", "test_rmse") and not regression:
        raise ConfigError(f"{said} {metric}: only a regression's runs measure it, and these trials classify; "
                          "rank them by test_accuracy or val_accuracy, say.")  # fmt: skip
    if key.startswith(("best_val_", "validation.", "best_validation.")) and config.dataset.validation == "none":
        raise ConfigError(f"{said} {metric}: the trials have no validation data (dataset.validation is 'none'); add "
                          f"--set dataset.validation=0.2 (or 'test'), or rank by another metric, e.g. --metric "
                          f"{'test_r2' if regression else 'test_accuracy'}.")
    head, _, rest = key.partition(".")
    epochs = {"best_val_accuracy": "val_accuracy", "best_val_loss": "val_loss"}.get(key) or (
        f"val_{rest}" if head in ("validation", "best_validation") else rest if head == "train" else None)
    once = {"test_accuracy": "accuracy", "test_loss": "loss"}.get(key) or (rest if head == "test" else None)
    logged = metric_names(config, config.dataset.validation != "none")
    need = (epochs or once or "").removeprefix("val_")
    if need and need not in logged and not (regression and once in ("mae", "rmse", "r2")):  # nnrun's own, at the end
        spelled = next((n for n in logged if n.lower() == need.lower()), None)  # Keras logs AUC as AUC
        typo = difflib.get_close_matches(need, [str(m) for m in config.training.metrics], n=1, cutoff=0.75)
        fix = (f"Keras logs a metric by the name training.metrics gives it: pass {key.replace(need, spelled)}" if spelled
               else f"training.metrics has {typo[0]!r}: if you meant {need}, spell it so there" if typo
               else "rank these regressions by val_loss, test_r2 or test_mae" if regression and need == "accuracy"
               else f"add {need} to training.metrics, or rank by one of those")  # fmt: skip
        raise ConfigError(f"{said} {named}: the trials log only {', '.join(logged)}; {fix}.")
    if higher_is_better(key) is None:
        raise ConfigError(f"{said} {named}: nnrun cannot tell whether a higher or a lower {rest or key} is better, so it "
                          "cannot rank the trials by it; rank them by an accuracy, AUC, R², loss or error metric.")
    if prune == "none":
        return key, None
    if epochs is None:
        each = f"{'train' if config.dataset.validation == 'none' else 'validation'}.{once or rest or 'loss'}"
        raise ConfigError(f"--prune {prune} (sweep.prune) needs a metric logged after every epoch; {said} {metric} is "
                          f"measured once, at the end. Pass --metric {each}, its value after each epoch.")  # fmt: skip
    return key, epochs
