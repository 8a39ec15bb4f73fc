"""Sweeps: one config trained many times with some keys varied, each trial an ordinary run directory.

Layout of ``runs/sweep-<YYYYMMDD-HHMMSS>-<name>/``::

    sweep.json                        the grid, the base config, every trial's params, status and run directory
    <YYYYMMDD-HHMMSS>-<name>-t01/     trial 1: a run directory like any other (``nnrun compare`` reads it)
    <YYYYMMDD-HHMMSS>-<name>-t02/     ...

The grid comes from the config's ``sweep:`` section and ``--grid KEY=V1,V2``
options (an option replaces the section's list for the same key). ``grid``
mode trains every combination; ``random`` mode samples N of them with a seed,
and also takes ranges: ``loguniform(1e-4, 1e-1)``, ``uniform(0, 0.5)``,
``randint(8, 64)``.

Every trial is checked before it trains: first the schema (all trials, at
once), then ``training.prepare`` (data, model, loss) just before it trains. A
trial that fails either is ``invalid``: its one-line error goes into
``sweep.json`` and the sweep goes on.

Executors: ``local`` trains in this process (``jobs=1``) or in a pool of
``jobs`` processes, each limited to its share of the CPU threads; ``ray``
(``nnrun.ray_executor``) sends each trial to a Ray cluster as a task.

Nothing here imports TensorFlow; ``run_trial`` does, in whichever process
runs the trial.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import random
import re
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from nnrun import rundir as rd
from nnrun.config import RunConfig, apply_override, dotted, load_config, parse_override, validate_config
from nnrun.errors import ConfigError, NnrunError, RunDirError, RunInterrupted

SWEEP_FILE = "sweep.json"
EXECUTORS = ("local", "ray")
#: Trial statuses. ``pending`` has not started; ``invalid`` failed the pre-flight check and never trains.
TRIAL_STATUSES = ("pending", "running", "completed", "failed", "interrupted", "invalid")
DONE = ("completed", "invalid")
RANGE_KINDS = ("loguniform", "uniform", "randint")
_RANGE = re.compile(r"^\s*(\w+)\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)\s*$")
#: Keys a sweep may not vary: they place the trials, the sweep does that.
FIXED_KEYS = ("run.name", "run.runs_dir")
#: Compare columns and metrics.json sections that hold validation results.
_VALIDATION_METRICS = ("best_val_", "validation.", "best_validation.")


# ------------------------------------------------------------------- grid


@dataclass(frozen=True)
class Range:
    """A range to sample from in random mode: ``loguniform(1e-4, 1e-1)``."""

    kind: str
    low: float
    high: float

    def sample(self, rng: random.Random) -> float | int:
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        return rng.randint(int(self.low), int(self.high))

    def __str__(self) -> str:
        return f"{self.kind}({self.low:g}, {self.high:g})"


Axis = list[Any] | Range


def parse_range(text: str, key: str) -> Range | None:
    """``'loguniform(1e-4, 1e-1)'`` -> Range; None if ``text`` is not a call; ConfigError if a bad one."""
    match = _RANGE.match(text)
    if not match:
        if re.match(r"^\s*\w+\s*\(", text):
            raise ConfigError(
                f"sweep key {key}: cannot read {text!r}; expected a range such as loguniform(1e-4, 1e-1), "
                f"uniform(0, 0.5) or randint(8, 64), or a list of values."
            )
        return None
    kind, low_text, high_text = match.groups()
    if kind not in RANGE_KINDS:
        raise ConfigError(f"sweep key {key}: unknown range '{kind}' in {text!r}; expected one of {', '.join(RANGE_KINDS)}.")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        raise ConfigError(f"sweep key {key}: the bounds of {text!r} must be numbers.") from None
    if not low < high:
        raise ConfigError(f"sweep key {key}: {text!r} needs low < high, got {low:g} and {high:g}.")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"sweep key {key}: loguniform needs bounds > 0, got {low:g}; e.g. loguniform(1e-4, 1e-1).")
    if kind == "randint" and not (low.is_integer() and high.is_integer()):
        raise ConfigError(f"sweep key {key}: randint needs whole-number bounds, got {text!r}.")
    return Range(kind, low, high)


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets: ``32,64`` -> 2 items, ``[1,2],[3,4]`` -> 2 items."""
    items, depth, current = [], 0, ""
    for char in text:
        if char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return [item.strip() for item in items]


def parse_grid_option(text: str) -> tuple[str, Axis]:
    """``--grid model.layers.0.units=32,64`` -> ``('model.layers.0.units', [32, 64])``; values are YAML."""
    if "=" not in text:
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,... e.g. --grid model.layers.0.units=32,64,512.")
    key, raw = text.split("=", 1)
    key = normalize_key(key)
    if not raw.strip():
        raise ConfigError(f"--grid {text!r}: no values after '='; e.g. --grid {key}=32,64.")
    found = parse_range(raw, key)
    if found is not None:
        return key, found
    values = [parse_override(f"{key}={item}")[1] for item in _split_values(raw)]
    return key, values


def normalize_key(key: str) -> str:
    """``model.layers[0].units`` -> ``model.layers.0.units`` (the form ``--set`` takes)."""
    key = re.sub(r"\[(-?\d+)\]", r".\1", key.strip())
    if not key or any(part == "" for part in key.split(".")):
        raise ConfigError(f"sweep key {key!r} is not a dotted path such as model.layers.0.units.")
    return key


def collect_grid(config: RunConfig, options: list[str] = ()) -> dict[str, Axis]:
    """The config's ``sweep.grid``, then each ``--grid`` option (which replaces the same key).

    Raises:
        ConfigError: a bad value or range, or no key to vary at all.
    """
    grid: dict[str, Axis] = {}
    for key, value in (config.sweep.grid if config.sweep else {}).items():
        key = normalize_key(key)
        if isinstance(value, str):
            found = parse_range(value, key)
            if found is None:
                raise ConfigError(
                    f"sweep.grid.{key}: expected a list of values or a range such as loguniform(1e-4, 1e-1), "
                    f"got {value!r}."
                )
            grid[key] = found
        else:
            grid[key] = list(value)
    for text in options:
        key, axis = parse_grid_option(text)
        grid[key] = axis
    if not grid:
        raise ConfigError(
            "nothing to sweep: give --grid KEY=V1,V2 (repeatable) or a sweep: section with grid: {KEY: [V1, V2]}."
        )
    return grid


def check_grid(grid: dict[str, Axis], base: dict[str, Any]) -> None:
    """Every key must exist in the resolved config, and not be one the sweep sets itself."""
    for key in grid:
        parts = parse_override(f"{key}=0")[0]
        if dotted(parts) in FIXED_KEYS or key.startswith("sweep"):
            raise ConfigError(f"sweep key {key}: a sweep sets run.name and run.runs_dir itself and cannot vary '{key}'.")
        try:
            apply_override(copy.deepcopy(base), parts, None)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("--set ", "--grid ", 1)) from None


def expand_grid(grid: dict[str, Axis]) -> list[dict[str, Any]]:
    """Every combination, the first key varying slowest."""
    for key, axis in grid.items():
        if isinstance(axis, Range):
            raise ConfigError(
                f"sweep key {key}: {axis} is a range, which only random mode can sample; "
                f"pass --random N (with --seed), or give a list of values."
            )
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def sample_grid(grid: dict[str, Axis], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` trials drawn with ``random.Random(seed)``: lists by choice, ranges by their distribution.

    Repeats are drawn again (up to a limit), so a small all-list grid yields at most its size in trials.
    """
    rng = random.Random(seed)
    trials: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts = 0
    while len(trials) < count and attempts < 100 * count:
        attempts += 1
        params = {k: (axis.sample(rng) if isinstance(axis, Range) else rng.choice(axis)) for k, axis in grid.items()}
        signature = repr(sorted(params.items()))
        if signature in seen:
            continue
        seen.add(signature)
        trials.append(params)
    return trials


def trial_config(base: dict[str, Any], params: dict[str, Any], *, name: str, runs_dir: str) -> RunConfig:
    """The base config with ``params`` applied, named and placed for the sweep. ConfigError if invalid."""
    data = copy.deepcopy(base)
    for key, value in params.items():
        apply_override(data, parse_override(f"{key}=0")[0], value)
    data["run"]["name"] = name
    data["run"]["runs_dir"] = runs_dir
    data["sweep"] = None
    return validate_config(data, source=f"trial {name}")


# ------------------------------------------------------------ state


@dataclass
class Trial:
    index: int
    name: str
    params: dict[str, Any]
    status: str = "pending"
    run_dir: str | None = None  # relative to the sweep directory
    error: str | None = None
    duration_s: float | None = None
    attempts: int = 0
    previous_run_dirs: list[str] = field(default_factory=list)


@dataclass
class SweepState:
    """What ``sweep.json`` holds."""

    id: str
    name: str
    mode: str  # grid or random
    grid: dict[str, Any]
    metric: str
    base_config: dict[str, Any]
    trials: list[Trial]
    config_file: str | None = None
    random: int | None = None
    seed: int | None = None
    smoke: bool = False
    status: str = "running"
    started: str = ""
    finished: str | None = None
    executor: str = "local"
    jobs: int = 1
    argv: list[str] = field(default_factory=list)
    host: str = ""
    pid: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = {s: n for s in TRIAL_STATUSES if (n := sum(t.status == s for t in self.trials))}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SweepState":
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["trials"] = [Trial(**{k: v for k, v in t.items() if k in Trial.__dataclass_fields__}) for t in data["trials"]]
        return cls(**data)


def grid_to_json(grid: dict[str, Axis]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Range) else v) for k, v in grid.items()}


def write_state(sweep_dir: Path, state: SweepState) -> None:
    rd.write_json_atomic(sweep_dir / SWEEP_FILE, state.to_dict())


def read_state(sweep_dir: str | Path) -> SweepState:
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / SWEEP_FILE
    if not sweep_dir.is_dir():
        raise RunDirError(f"sweep directory {sweep_dir} not found; pass the runs/sweep-... folder a sweep printed.")
    if not path.is_file():
        raise RunDirError(f"{sweep_dir} is not a sweep directory (no {SWEEP_FILE}).")
    try:
        return SweepState.from_dict(rd.read_json(path))
    except (KeyError, TypeError) as exc:
        raise RunDirError(f"{path}: not a sweep file this nnrun can read ({exc}).") from None


def create_sweep_dir(runs_dir: str | Path, name: str, now: datetime) -> Path:
    """``runs_dir/sweep-<YYYYMMDD-HHMMSS>-<name>``, with ``-2``, ``-3``... on collision."""
    return rd.create_run_dir(runs_dir, name, now, prefix="sweep-")


# ----------------------------------------------------------- one trial


@dataclass
class TrialSpec:
    """Everything a process (local or on a Ray node) needs to run one trial; picklable."""

    index: int
    name: str
    config: dict[str, Any]
    runs_dir: str  # absolute: the sweep directory
    argv: list[str]
    smoke: bool = False
    config_path: str | None = None
    resume_dir: str | None = None  # continue this interrupted run instead of starting a new one
    threads: int | None = None  # intra-op threads for TensorFlow; None: TensorFlow's default
    cwd: str | None = None  # the sweep's working folder, for relative dataset paths


def limit_threads(threads: int | None) -> None:
    """Cap TensorFlow's thread pools (before it starts; a no-op afterwards)."""
    if not threads:
        return
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1" if threads == 1 else "2"
    import sys

    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(int(os.environ["TF_NUM_INTEROP_THREADS"]))
        except RuntimeError:
            pass  # TensorFlow already started in this process: its pools keep their size


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Pre-flight and train one trial; never raises for the trial's own errors.

    Returns:
        ``{"index", "status", "run_dir", "error", "duration_s", "host"}`` with status
        completed, failed, interrupted or invalid.
    """
    limit_threads(spec.threads)
    if spec.cwd and Path(spec.cwd).is_dir():
        os.chdir(spec.cwd)
    from nnrun import training
    from nnrun.console import Reporter, make_console
    from nnrun.errors import DataError
    from nnrun.tf import import_keras

    import_keras().backend.clear_session()  # a fresh graph per trial: memory stays flat over a long sweep
    started = time.perf_counter()
    runs_dir = Path(spec.runs_dir)
    before = _trial_dirs(runs_dir, spec.name)

    def outcome(status: str, error: str | None = None, run_dir: Path | None = None) -> dict[str, Any]:
        if run_dir is None:
            new = sorted(_trial_dirs(runs_dir, spec.name) - before)
            run_dir = Path(new[-1]) if new else None
        return {
            "index": spec.index, "status": status, "error": error,
            "run_dir": run_dir.name if run_dir is not None else None,
            "duration_s": round(time.perf_counter() - started, 3), "host": socket.gethostname(),
        }  # fmt: skip

    reporter = Reporter(make_console(quiet=True))
    try:
        if spec.resume_dir:
            try:
                result = training.resume(runs_dir / spec.resume_dir, reporter=reporter, argv=spec.argv)
                return outcome("completed", run_dir=result.run_dir)
            except RunDirError:
                # Not resumable after all (e.g. stopped after its last epoch, before the final files):
                # train the trial again from the start, in a new run directory.
                reporter = Reporter(make_console(quiet=True))
        try:
            config = validate_config(spec.config, source=f"trial {spec.name}")
            prepared = training.prepare(config, smoke=spec.smoke)
        except (ConfigError, DataError) as exc:
            return outcome("invalid", str(exc))
        result = training.train(config, reporter=reporter, argv=spec.argv, smoke=spec.smoke,
                                config_path=spec.config_path, prepared=prepared)  # fmt: skip
        return outcome("completed", run_dir=result.run_dir)
    except RunInterrupted as exc:
        return outcome("interrupted", str(exc))
    except KeyboardInterrupt:
        return outcome("interrupted", "KeyboardInterrupt")
    except NnrunError as exc:
        return outcome("failed", str(exc))
    except Exception as exc:  # a bug or library error in one trial must not end the sweep
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return outcome("failed", f"{type(exc).__name__}: {detail}")


def _trial_dirs(runs_dir: Path, name: str) -> set[str]:
    pattern = re.compile(rf"^\d{{8}}-\d{{6}}-{re.escape(name)}(-\d+)?$")
    try:
        return {str(p) for p in runs_dir.iterdir() if p.is_dir() and pattern.match(p.name)}
    except OSError:
        return set()


# ----------------------------------------------------------- executors


OnResult = Callable[[dict[str, Any]], None]


def run_local(specs: list[TrialSpec], on_start: Callable[[TrialSpec], None], on_result: OnResult) -> None:
    """One trial after the other in this process; Ctrl-C stops the running trial cleanly and ends the sweep."""
    for spec in specs:
        on_start(spec)
        result = run_trial(spec)
        on_result(result)
        if result["status"] == "interrupted":
            raise KeyboardInterrupt


def _init_worker(threads: int) -> None:
    import signal

    limit_threads(threads)
    # Idle workers ignore Ctrl-C; a training installs its own handler and stops cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_pool(specs: list[TrialSpec], jobs: int, on_start: Callable[[TrialSpec], None], on_result: OnResult) -> None:
    """``jobs`` worker processes (spawned: TensorFlow does not survive fork), each with its share of threads.

    At most ``jobs`` trials are submitted at a time, so a trial is ``running`` only while it runs.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = (specs[0].threads or 1) if specs else 1
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))  # fmt: skip
    queue = list(specs)
    running: dict[Any, TrialSpec] = {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                spec = queue.pop(0)
                on_start(spec)
                running[pool.submit(run_trial, spec)] = spec
            done, _ = wait(set(running), return_when=FIRST_COMPLETED)
            for future in done:
                on_result(_future_result(future, running.pop(future)))
    except KeyboardInterrupt:
        # The running trials got the same Ctrl-C (one process group) and are saving their epochs: collect them.
        for future, spec in running.items():
            on_result(_future_result(future, spec))
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _future_result(future: Any, spec: TrialSpec) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # the worker process died (out of memory, killed)
        return {"index": spec.index, "status": "failed", "error": f"worker process failed: {type(exc).__name__}: {exc}",
                "run_dir": None, "duration_s": None}  # fmt: skip


def default_threads(jobs: int) -> int:
    """Each of ``jobs`` parallel trials gets an equal share of this machine's CPUs (at least one)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, jobs))


# ---------------------------------------------------------------- sweep


@dataclass
class SweepResult:
    path: Path
    state: SweepState
    comparison: Any  # nnrun.compare.Comparison, or None when no trial produced a run directory


def start_sweep(
    config_path: str | Path,
    *,
    sets: list[str] = (),
    grid_options: list[str] = (),
    random_trials: int | None = None,
    seed: int | None = None,
    metric: str | None = None,
    runs_dir: str | Path | None = None,
    name: str | None = None,
    smoke: bool = False,
    argv: list[str] = (),
    now: Callable[[], datetime] = datetime.now,
) -> tuple[Path, SweepState]:
    """Expand the grid, check every trial's schema, and create the sweep directory with ``sweep.json``.

    Raises:
        ConfigError: a bad config, grid key, value, range or metric (nothing is created).
    """
    overrides = list(sets)
    if name is not None:
        overrides.append(f"run.name={name}")
    if runs_dir is not None:
        overrides.append(f"run.runs_dir={runs_dir}")
    config = load_config(config_path, overrides)
    grid = collect_grid(config, list(grid_options))
    section = config.sweep
    random_trials = random_trials if random_trials is not None else (section.random if section else None)
    seed = seed if seed is not None else (section.seed if section else 0)
    metric = metric or (section.metric if section else "val_accuracy")
    base = config.to_dict()
    base["sweep"] = None
    check_grid(grid, base)
    if random_trials is not None:
        if random_trials < 1:
            raise ConfigError(f"--random must be >= 1, got {random_trials}.")
        combos, mode = sample_grid(grid, random_trials, seed), "random"
    else:
        combos, mode = expand_grid(grid), "grid"
    width = max(2, len(str(len(combos))))
    trials = [Trial(i + 1, f"{config.run.name}-t{i + 1:0{width}d}", params) for i, params in enumerate(combos)]
    configs = {}
    for trial in trials:
        try:
            configs[trial.index] = trial_config(base, trial.params, name=trial.name, runs_dir=".")
        except ConfigError as exc:
            trial.status, trial.error = "invalid", str(exc)
    metric = check_metric(metric, list(configs.values()))
    started = now()
    sweep_dir = create_sweep_dir(config.run.runs_dir, config.run.name, started)
    state = SweepState(
        id=sweep_dir.name, name=config.run.name, mode=mode, grid=grid_to_json(grid), metric=metric, base_config=base,
        trials=trials, config_file=str(config_path), random=random_trials, seed=seed if mode == "random" else None,
        smoke=smoke, started=started.isoformat(timespec="seconds"), argv=list(argv),
    )  # fmt: skip
    write_state(sweep_dir, state)
    return sweep_dir, state


def check_metric(metric: str, configs: list[RunConfig]) -> str:
    """The compare column for ``metric``; ConfigError if it is not a metric or needs validation no trial has."""
    from nnrun.compare import COLUMNS, METRIC_SECTIONS, canonical

    key = canonical(metric)
    numeric = [c for c in COLUMNS if any(w in c for w in ("accuracy", "loss"))]
    if key not in numeric and key.partition(".")[0] not in METRIC_SECTIONS:
        raise ConfigError(
            f"--metric {metric!r}: not a metric the compare table has. Use one of {', '.join(numeric)}, "
            "or a metrics.json path such as test.accuracy, validation.loss or best_validation.auc."
        )
    if key.startswith(_VALIDATION_METRICS) and configs and all(c.dataset.validation == "none" for c in configs):
        raise ConfigError(
            f"--metric {metric}: the trials have no validation data (dataset.validation is 'none'); "
            "add --set dataset.validation=0.2 (or 'test'), or rank by another metric, e.g. --metric test_accuracy."
        )
    return key


def execute(
    sweep_dir: Path,
    state: SweepState,
    *,
    executor: str = "local",
    jobs: int = 1,
    address: str | None = None,
    gpus_per_trial: float = 0,
    ray_cpus: int | None = None,
    echo: Callable[[str], None] = lambda line: None,
    now: Callable[[], datetime] = datetime.now,
) -> SweepResult:
    """Train every trial that is not done yet, keeping ``sweep.json`` current after each one.

    Raises:
        ConfigError: an unknown executor, or Ray missing.
        RunInterrupted: Ctrl-C; finished trials are kept, ``--resume`` runs the rest.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}.")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}.")
    if executor == "local" and (address or gpus_per_trial):
        raise ConfigError("--address and --gpus-per-trial need --executor ray.")
    if executor == "ray" and jobs > 1:
        raise ConfigError("--jobs is for --executor local; Ray runs as many trials at once as its cluster has CPUs (or GPUs).")
    if executor == "ray":
        from nnrun.ray_executor import import_ray

        import_ray()  # the install hint, before the sweep is marked running
    sweep_dir = Path(sweep_dir).resolve()
    state.status, state.executor, state.jobs = "running", executor, jobs
    state.host, state.pid, state.finished = socket.gethostname(), os.getpid(), None
    threads = default_threads(jobs) if executor == "local" and jobs > 1 else None
    specs = [_spec(sweep_dir, state, trial, threads) for trial in state.trials if trial.status not in DONE]
    for trial in state.trials:
        if trial.status == "invalid" and trial.attempts == 0:
            echo(f"trial {trial.index} {_params_text(trial.params)}: [yellow]invalid[/], skipped: {trial.error}")
    write_state(sweep_dir, state)
    total = len(state.trials)
    by_index = {t.index: t for t in state.trials}

    def on_start(spec: TrialSpec) -> None:
        trial = by_index[spec.index]
        if spec.resume_dir is None and trial.run_dir:
            trial.previous_run_dirs.append(trial.run_dir)
            trial.run_dir = None
        trial.status, trial.error = "running", None
        trial.attempts += 1
        write_state(sweep_dir, state)
        verb = "resuming" if spec.resume_dir else "training"
        echo(f"trial {spec.index}/{total} {verb} {_params_text(trial.params)}")

    def on_result(result: dict[str, Any]) -> None:
        trial = by_index[result["index"]]
        trial.status, trial.error = result["status"], result.get("error")
        if result.get("run_dir") and trial.run_dir and result["run_dir"] != trial.run_dir:
            trial.previous_run_dirs.append(trial.run_dir)
        trial.run_dir = result.get("run_dir") or trial.run_dir
        trial.duration_s = result.get("duration_s")
        write_state(sweep_dir, state)
        style = {"completed": "green", "invalid": "yellow", "interrupted": "yellow"}.get(trial.status, "red")
        where = f" -> {trial.run_dir}" if trial.run_dir else ""
        detail = f": {trial.error}" if trial.error and trial.status != "completed" else ""
        echo(f"trial {trial.index}/{total} [{style}]{trial.status}[/] in {trial.duration_s or 0:.1f}s{where}{detail}")

    started = time.perf_counter()
    try:
        if not specs:
            echo("every trial is already completed or invalid; nothing to train.")
        elif executor == "ray":
            from nnrun.ray_executor import run_on_ray

            run_on_ray(specs, address=address, gpus_per_trial=gpus_per_trial, num_cpus=ray_cpus,
                       on_start=on_start, on_result=on_result)  # fmt: skip
        elif jobs == 1:
            run_local(specs, on_start, on_result)
        else:
            run_pool(specs, jobs, on_start, on_result)
    except KeyboardInterrupt:
        for trial in state.trials:
            if trial.status == "running":
                trial.status, trial.error = "interrupted", "the sweep was stopped"
        _finish(sweep_dir, state, "interrupted", now, time.perf_counter() - started)
        raise RunInterrupted(
            f"sweep stopped; finished trials are kept in {sweep_dir}. Continue with: nnrun sweep --resume {sweep_dir}"
        ) from None
    failed = [t for t in state.trials if t.status not in DONE]
    _finish(sweep_dir, state, "completed" if not failed else "failed", now, time.perf_counter() - started)
    return SweepResult(sweep_dir, state, sweep_comparison(sweep_dir, state))


def _finish(sweep_dir: Path, state: SweepState, status: str, now: Callable[[], datetime], wall_s: float) -> None:
    state.status, state.finished = status, now().isoformat(timespec="seconds")
    state.history.append({"finished": state.finished, "executor": state.executor, "jobs": state.jobs,
                          "wall_s": round(wall_s, 3), "status": status})  # fmt: skip
    write_state(sweep_dir, state)


def _spec(sweep_dir: Path, state: SweepState, trial: Trial, threads: int | None) -> TrialSpec:
    resume_dir = None
    if trial.run_dir and trial.status in ("interrupted", "running", "failed"):
        run = sweep_dir / trial.run_dir
        if _resumable(run):
            resume_dir = trial.run_dir
    config = trial_config(state.base_config, trial.params, name=trial.name, runs_dir=str(sweep_dir))
    return TrialSpec(
        index=trial.index, name=trial.name, config=config.to_dict(), runs_dir=str(sweep_dir), argv=state.argv,
        smoke=state.smoke, config_path=state.config_file, resume_dir=resume_dir, threads=threads, cwd=os.getcwd(),
    )  # fmt: skip


def _resumable(run: Path) -> bool:
    """An interrupted or crashed run with a checkpoint continues where it stopped; anything else trains afresh."""
    try:
        info = rd.read_json(run / rd.RUN)
    except RunDirError:
        return False
    return rd.effective_status(info) in ("interrupted", "crashed") and (run / rd.LAST_CHECKPOINT).is_file()


def resume_state(sweep_dir: str | Path) -> SweepState:
    """Read a sweep for ``--resume``: completed trials whose run is really completed stay done.

    Raises:
        RunDirError: not a sweep directory, or the sweep is still running.
    """
    sweep_dir = Path(sweep_dir)
    state = read_state(sweep_dir)
    if state.status == "running" and state.host == socket.gethostname() and rd.pid_alive(state.pid) \
            and state.pid != os.getpid():
        raise RunDirError(f"{sweep_dir} is still running (pid {state.pid}); stop it first.")
    for trial in state.trials:
        if trial.status == "completed":
            run = sweep_dir / (trial.run_dir or "")
            try:
                ok = trial.run_dir is not None and rd.effective_status(rd.read_json(run / rd.RUN)) == "completed"
            except RunDirError:
                ok = False
            if not ok:
                trial.status, trial.error = "failed", f"its run directory {run} is missing or not completed"
        elif trial.status == "running":
            trial.status = "interrupted"
    return state


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{dotted(parse_override(f'{k}=0')[0])}={_value_text(v)}" for k, v in params.items())


def _value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- table


def sweep_comparison(sweep_dir: Path, state: SweepState) -> Any:
    """The compare table of the trials that have a run directory, sorted by the sweep's metric.

    Columns: id, status, the varied keys, the metric, test accuracy/loss and duration. Invalid
    trials have no run directory; they appear in the notes.
    """
    from nnrun.compare import canonical, compare_runs

    paths = [sweep_dir / t.run_dir for t in state.trials if t.run_dir and (sweep_dir / t.run_dir).is_dir()]
    if not paths:
        return None
    keys = [canonical(k) for k in state.grid]
    columns = list(dict.fromkeys(["name", "status", *keys, state.metric, "test_accuracy", "duration"]))
    comparison = compare_runs(paths, sort=state.metric, columns=[",".join(columns)])
    comparison.notes.extend(
        f"trial {t.index} ({_params_text(t.params)}): invalid, skipped: {t.error}" for t in state.trials if t.status == "invalid"
    )
    return comparison
