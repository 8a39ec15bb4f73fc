"""The search space: the config keys a sweep varies, each over a list of values or a range.

``suggest`` turns it into Optuna's ``suggest_*`` calls, so every sampler draws from the same definition.
Plain values in, plain values out: nothing here touches the disk or imports Optuna.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

from nnrun.config import RunConfig, apply_override, dotted, parse_key, parse_override, validate_config
from nnrun.errors import ConfigError

RANGE_KINDS = ("loguniform", "uniform", "randint")
_RANGE = re.compile(r"^\s*(\w+)\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)\s*$")
#: Keys a sweep may not vary: they place the trials, the sweep does that.
FIXED_KEYS = ("run.name", "run.runs_dir")


@dataclass(frozen=True)
class Range:
    """A range to sample from (random and TPE search): ``loguniform(1e-4, 1e-1)``."""

    kind: str
    low: float
    high: float

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
    try:
        return ".".join(map(str, parse_key(key)))
    except ConfigError as exc:
        raise ConfigError(f"sweep: {exc}") from None


def collect_grid(config: RunConfig, options: list[str] = ()) -> dict[str, Axis]:
    """The config's ``sweep.grid``, then each ``--grid`` option (which replaces the same key).

    Raises:
        ConfigError: a bad value or range, or no key to vary at all.
    """
    grid: dict[str, Axis] = {}
    for key, value in (config.sweep.grid if config.sweep else {}).items():
        key = normalize_key(key)
        grid[key] = parse_range(value, key) if isinstance(value, str) else list(value)
        if grid[key] is None:
            raise ConfigError(f"sweep.grid.{key}: expected a list of values or a range such as "
                              f"loguniform(1e-4, 1e-1), got {value!r}.")  # fmt: skip
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
        parts = parse_key(key)
        if dotted(parts) in FIXED_KEYS or key.startswith("sweep"):
            raise ConfigError(f"sweep key {key}: a sweep sets run.name and run.runs_dir itself and cannot vary '{key}'.")
        try:
            apply_override(copy.deepcopy(base), parts, None)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("--set ", "--grid ", 1)) from None


def grid_space(grid: dict[str, Axis]) -> dict[str, list[Any]]:
    """The space as Optuna's GridSampler takes it (every value a choice); ConfigError for a range."""
    for key, axis in grid.items():
        if isinstance(axis, Range):
            raise ConfigError(
                f"sweep key {key}: {axis} is a range, which --search grid cannot enumerate; "
                f"pass --search random or --search tpe with --trials N, or give a list of values."
            )
    return {key: [_choice(v) for v in axis] for key, axis in grid.items()}


def suggest(trial: Any, grid: dict[str, Axis]) -> dict[str, Any]:
    """One trial's values, asked of an ``optuna.Trial``: lists are categorical, ranges float or int.

    Choices other than None, bool, int, float or str (``[28, 28]``) are offered to Optuna as JSON text.
    """
    params = {}
    for key, axis in grid.items():
        if isinstance(axis, Range) and axis.kind == "randint":
            params[key] = trial.suggest_int(key, int(axis.low), int(axis.high))
        elif isinstance(axis, Range):
            params[key] = trial.suggest_float(key, axis.low, axis.high, log=axis.kind == "loguniform")
        else:
            choices = [_choice(v) for v in axis]
            params[key] = axis[choices.index(trial.suggest_categorical(key, choices))]
    return params


def _choice(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def trial_config(base: dict[str, Any], params: dict[str, Any], *, name: str, runs_dir: str) -> RunConfig:
    """The base config with ``params`` applied, named and placed for the sweep. ConfigError if invalid."""
    data = copy.deepcopy(base)
    for key, value in params.items():
        apply_override(data, parse_key(key), value)
    data["run"]["name"] = name
    data["run"]["runs_dir"] = runs_dir
    data["sweep"] = None
    return validate_config(data, source=f"trial {name}")


def grid_to_json(grid: dict[str, Axis]) -> dict[str, Any]:
    """The grid as ``sweep.json`` stores it: lists as they are, ranges as their text."""
    return {k: (str(v) if isinstance(v, Range) else v) for k, v in grid.items()}


def grid_from_json(grid: dict[str, Any]) -> dict[str, Axis]:
    """The grid back from ``sweep.json``."""
    return {k: parse_range(v, k) if isinstance(v, str) else v for k, v in grid.items()}


def params_text(params: dict[str, Any]) -> str:
    """``model.layers[0].units=64 training.optimizer.learning_rate=0.001``: a trial's values in one line."""
    return " ".join(f"{dotted(parse_key(k))}={_value_text(v)}" for k, v in params.items())


def _value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
