"""The search space: the config keys a sweep varies, each over a list of values or a range.

The space is kept as the user wrote it (lists, and ranges as their text, which is what ``sweep.json`` shows) and
turned into Optuna's distributions when a trial is asked for: every sampler draws from that one definition.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
import shlex
from typing import Any

import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from nnrun.config import RunConfig, apply_override, dotted, parse_key, validate_config
from nnrun.config.load import SHORT_FORM_PLACES, load_yaml
from nnrun.errors import ConfigError, DataError, first_line

RANGE_KINDS = ("loguniform", "uniform", "randint")
_RANGE = re.compile(r"^\s*(\w+)\s*\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)\s*$")
FIXED_KEYS = ("run.name", "run.runs_dir")  # they place the trials: the sweep sets them


def parse_range(text: str, key: str, said: str = "sweep key") -> Any:
    """``'loguniform(1e-4, 1e-1)'`` -> Optuna's distribution; None if ``text`` is no call; ConfigError if a bad one
    (naming ``said`` and the key: ``--grid KEY``, say)."""
    match = _RANGE.match(text)
    if not match:
        if re.match(r"^\s*\w+\s*\(", text):
            raise ConfigError(f"{said} {key}: cannot read {text!r}; expected a range such as loguniform(1e-4, 1e-1), "
                              "uniform(0, 0.5) or randint(8, 64), or a list of values.")  # fmt: skip
        return None
    kind, low, high = match.groups()
    try:
        low, high = float(low), float(high)
    except ValueError:
        raise ConfigError(f"{said} {key}: the bounds of {text!r} must be numbers.") from None
    problem = (f"unknown range '{kind}'; expected one of {', '.join(RANGE_KINDS)}" if kind not in RANGE_KINDS
               else "needs finite bounds (Optuna cannot draw from an infinite range)"
               if not math.isfinite(high - low) else f"needs low < high, got {low:g} and {high:g}" if not low < high
               else "loguniform needs bounds > 0, e.g. loguniform(1e-4, 1e-1)" if kind == "loguniform" and low <= 0
               else "randint needs whole-number bounds" if kind == "randint" and not (low.is_integer() and high.is_integer())
               else None)  # fmt: skip
    if problem:
        raise ConfigError(f"{said} {key}: {text!r}: {problem}.")
    if kind == "randint":
        return IntDistribution(int(low), int(high))
    return FloatDistribution(low, high, log=kind == "loguniform")


def parse_grid_option(text: str) -> tuple[str, Any]:
    """``--grid model.layers.0.units=32,64`` -> ``('model.layers.0.units', [32, 64])``; values are YAML, a range stays text."""
    if "=" not in text:
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,... e.g. --grid model.layers.0.units=32,64,512.")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--grid {text!r}: no key before '='; e.g. --grid model.layers.0.units=32,64.")
    key = normalize_key(key)
    if not raw.strip():
        raise ConfigError(f"--grid {text!r}: no values after '='; e.g. --grid {key}=32,64.")
    if parse_range(raw, key, "--grid") is not None:
        return key, raw.strip()
    try:  # one YAML flow list: 32,64 -> [32, 64]; [1,2],[3,4] and 'a,b',c keep their inner commas
        return key, load_yaml(f"[{raw}]")
    except yaml.YAMLError as exc:
        raise ConfigError(f"--grid {text!r}: cannot read the values as YAML ({first_line(exc)}); "
                          "separate them with commas and quote one that has a comma or starts with @, ! or *.") from None


def normalize_key(key: str, data: dict[str, Any] | None = None) -> str:
    """``model.layers[0].units`` -> ``model.layers.0.units`` (the form ``--set`` takes); with the config ``data``, a
    negative index counts from its list's end: ``model.layers.-1`` is ``model.layers.2`` of three, one key."""
    try:
        parts = parse_key(key)
    except ConfigError as exc:
        raise ConfigError(f"sweep: {exc}") from None
    node: Any = data
    for i, part in enumerate(parts):
        if isinstance(node, list) and isinstance(part, int):
            parts[i] = part = part + len(node) if -len(node) <= part < 0 else part
            node = node[part] if 0 <= part < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return ".".join(map(str, parts))


def grid_key(key: str, grid: dict[str, Any], data: dict[str, Any]) -> str:
    """``key`` as the sweep names it: ``model.layers.-1`` is ``model.layers.2`` of three, unless another grid key
    above it replaces the list."""
    return normalize_key(key, None if any(key.startswith(f"{outer}.") for outer in grid) else data)


def collect_grid(config: RunConfig, options: list[str] = ()) -> dict[str, Any]:
    """The config's ``sweep.grid``, then each ``--grid`` option (which replaces the same key). ConfigError if empty."""
    section: list[tuple[str, Any]] = []
    for key, axis in (config.sweep.grid if config.sweep else {}).items():
        key = normalize_key(key)
        if isinstance(axis, str) and parse_range(axis, key, "sweep.grid") is None:
            raise ConfigError(f"sweep.grid.{key}: expected a list of values or a range such as "
                              f"loguniform(1e-4, 1e-1), got {axis!r}.")  # fmt: skip
        section.append((key, axis.strip() if isinstance(axis, str) else list(axis)))
    given = [parse_grid_option(text) for text in options]
    every, data = dict(section + given), config.to_dict()
    for pairs, said in ((section, "sweep.grid keys"), (given, "--grid")):  # --grid KEY replaces the section's KEY
        named: dict[str, str] = {}
        for key, _ in pairs:  # model.layers.-1 and model.layers[2] of three layers: one key, its values given twice
            if (canonical := grid_key(key, every, data)) in named:
                twice = f"{key} is given twice" if named[canonical] == key else \
                    f"{named[canonical]} and {key} are one key ({canonical})"
                raise ConfigError(f"{said} {twice}; give its values once.")
            named[canonical] = key
    grid = {grid_key(key, every, data): axis for key, axis in section + given}
    # YAML reads 2024-01-01 as a date: keep the text the user wrote, as sweep.json and the config can hold it.
    grid = {key: json.loads(json.dumps(axis, default=str)) for key, axis in grid.items()}
    if not grid:
        raise ConfigError("nothing to sweep: give --grid KEY=V1,V2 (repeatable) or a sweep: section with grid: {KEY: [V1, V2]}.")
    for key, axis in grid.items():  # a grid would train the point twice; Optuna's choices cannot tell true from 1
        if twice := [(a, b) for i, b in enumerate(axis if isinstance(axis, list) else []) for a in axis[:i]
                     if a == b or _choice(a) == _choice(b)]:  # [1, 2] goes to Optuna as the text '[1, 2]'
            (a, b), same = twice[0], json.dumps(twice[0][0]) == json.dumps(twice[0][1])
            why = ("is listed twice" if same else f"and {json.dumps(a)} are one value to Python" if a == b else
                   f"and {json.dumps(a)} are one choice to Optuna, which takes a list or mapping as its JSON text")
            raise ConfigError(f"sweep key {key}: {json.dumps(b)} {why}; list each value once.")
    return grid


def check_sets(grid: dict[str, Any], sets: list[str], base: dict[str, Any]) -> None:
    """ConfigError for a ``--set`` of a grid key, or inside one, whose every value replaces the mapping the ``--set``
    went into (``--set training.optimizer.learning_rate=0.5`` with ``--grid training.optimizer=sgd,adam``)."""
    for text in sets:
        inner = normalize_key(text.split("=")[0], base)
        for key, axis in grid.items():
            if inner == key:  # every trial sets its own value
                raise ConfigError(f"--set {text}: the sweep varies {key} over {json.dumps(axis)}, so every trial would "
                                  f"replace this value; drop the --set, or give the values to try: --grid {key}=V1,V2.")
            if inner.startswith(f"{key}."):
                first = axis[0].get("type", "...") if isinstance(axis[0], dict) else axis[0]
                raise ConfigError(f"--set {text}: --grid {key} replaces {key} whole with each of its values, so this "
                                  f"--set would be lost; give the values whole, e.g. --grid "
                                  f"'{key}={{type: {first}, {inner[len(key) + 1:]}: ...}},...'.")


def check_grid(grid: dict[str, Any], base: dict[str, Any], repeats: int = 1, flags: Any = ()) -> None:
    """Every key must exist in the resolved config, be one a sweep may vary, and take each of its values alone
    (a list's every value; a range's bounds and a point inside) as far as the schema types it. A layer's own
    arguments (free-form) and the combinations are checked as each trial starts. Errors name ``--grid KEY`` for a
    key in ``flags``, else ``sweep.grid KEY``."""
    for key, axis in grid.items():
        parts, said = parse_key(key), "--grid" if key in flags else "sweep.grid"
        if key.startswith("sweep"):
            raise ConfigError(f"sweep key {key}: the sweep's own set-up cannot be varied; set it once, with its flag "
                              f"or --set {key}=...")  # fmt: skip
        if dotted(parts) in FIXED_KEYS:
            raise ConfigError(f"sweep key {key}: a sweep sets run.name and run.runs_dir itself and cannot vary '{key}'.")
        if dotted(parts) == "run.seed" and repeats > 1:
            raise ConfigError(f"sweep key {key}: --repeats {repeats} already trains every trial at seeds run.seed, "
                              "run.seed + 1, ...; drop --repeats or stop varying run.seed.")  # fmt: skip
        # A key inside another grid key is checked in each of that key's values.
        outer = next((k for k in grid if key.startswith(f"{k}.") and isinstance(grid[k], list)), None)
        for around, data in [(v, resolve(base, {outer: v})) for v in grid[outer]] if outer else [(None, base)]:
            try:
                apply_override(copy.deepcopy(data), parts, None)
            except ConfigError as exc:
                if outer is None:
                    raise ConfigError(str(exc).replace("--set ", f"{said} ", 1)) from None
                rest, kind = key[len(outer) + 1 :], around.get("type", "...") if isinstance(around, dict) else around
                place = dotted(parse_key(outer))  # a Keras object's arguments are free; a step's keys are fixed
                free = re.fullmatch(SHORT_FORM_PLACES, place) and not place.startswith("preprocessing")
                whole = f" (or, if {kind} takes {rest}, give it: {{type: {kind}, {rest}: ...}})" if free else ""
                raise ConfigError(f"{said} {key}: {outer} value {json.dumps(around)} has no key '{rest}' to vary; drop "
                                  f"that value, or stop varying {key}{whole}.") from None  # fmt: skip
            for value in axis if isinstance(axis, list) else range_points(axis, key):
                try:
                    _check_value(data, key, value, said)
                except ConfigError as exc:
                    raise ConfigError(_value_fix(exc, data, key, axis, value, said)) from None


def range_points(axis: str, key: str) -> list[Any]:
    """What a range is checked at before the sweep: randint's bounds; a float range's low bound, a point inside (not
    whole) and the float just below its high bound (which uniform and loguniform never quite draw)."""
    low, high = (bounds := parse_range(axis, key)).low, bounds.high
    return [low, high] if isinstance(low, int) else [low, low + (high - low) * 0.382, math.nextafter(high, low)]


def _value_fix(exc: ConfigError, data: dict[str, Any], key: str, axis: Any, value: Any, said: str) -> str:
    """The error for a grid value the schema refuses, with the fix for two slips: a float range over whole numbers,
    and one list in brackets where its items were meant."""
    if isinstance(axis, str) and "valid integer" in str(exc):
        return _fractions(axis, key, said)
    if isinstance(value, list) and value and _valid(data, key, value[0], said):
        items = [v if isinstance(v, str) and re.fullmatch(r"[\w.+-]+", v) else json.dumps(v) for v in value]
        given = (f"--grid {shlex.quote(f'{key}=' + ','.join(items))}" if said == "--grid"
                 else f"in the config's sweep: grid: section, {key}: {json.dumps(value)}")  # fmt: skip
        return f"{said} {key}: to try each value in {json.dumps(value)}, list them without the brackets: {given}."
    return str(exc)


def _check_value(base: dict[str, Any], key: str, value: Any, said: str) -> None:
    flags = {dotted(parse_key(key)): f"{said} {key} value"}
    validate_config({**resolve(base, {key: value}), "sweep": None}, source=f"{said} {key}", flags=flags)


def _valid(base: dict[str, Any], key: str, value: Any, said: str) -> bool:
    try:
        _check_value(base, key, value, said)
        return True
    except ConfigError:
        return False


def check_fixed(base: dict[str, Any], grid: dict[str, Any], data_here: bool = True) -> None:
    """Keras's names (a misspelt metric, a callback's or a layer's argument) and (``data_here``) the data file or
    folder, checked as ``train`` checks them before the sweep starts: in the parts of the config no grid key varies,
    and in each value of a list (or at a range's bounds) that is the only key varying its part (a combination is
    checked as its trial starts).

    Raises:
        ConfigError, DataError: what every trial (or every trial with that value) would fail on.
    """
    from nnrun import keras_names as kn
    from nnrun.backbones import backbone_names
    from nnrun.datasets.csv import existing_file
    from nnrun.datasets.images import resolve_folder
    from nnrun.models import create_layer

    config = validate_config({**base, "sweep": None})
    points = {k: v if isinstance(v, list) else range_points(v, k) for k, v in grid.items()}

    @functools.cache
    def valued(key: str, i: int) -> RunConfig:  # the config with one grid value set: once, for every place it reaches
        return validate_config({**resolve(base, {key: points[key][i]}), "sweep": None})

    def layer(c: RunConfig, i: int) -> None:
        if i < len(c.model.layers) and (spec := c.model.layers[i]).type not in backbone_names():
            create_layer(spec.model_dump(), i)

    def data(c: RunConfig) -> None:  # from here, where the sweep starts: its trials work there too
        if c.dataset.name == "csv":
            existing_file(c.dataset.path)
        elif c.dataset.name == "images":
            resolve_folder(c.dataset.path, "dataset.path")

    checks = {"training.optimizer": lambda c: kn.create_optimizer(c.training.optimizer),
              "training.loss": lambda c: kn.check_loss(c.training.loss),
              "training.metrics": lambda c: kn.check_metrics(c.training.metrics),
              "training.callbacks": lambda c: kn.create_callbacks(c.training.callbacks)}  # fmt: skip
    layers = max(len(c.model.layers) for c in [config, *(valued(k, i) for k in grid if k in ("model", "model.layers")
                                                          for i in range(len(points[k])))])  # a value may hold more
    checks |= {f"model.layers.{i}": lambda c, i=i: layer(c, i) for i in range(layers)}
    checks |= {"dataset.path": data} if data_here else {}
    for place, check in checks.items():
        if not any(reaches(k, place) for k in grid):
            check(config)
        elif key := sole_list_key(grid, place, ranges=True):
            for i, value in enumerate(points[key]):
                try:
                    check(valued(key, i))
                except (ConfigError, DataError) as exc:
                    if isinstance(grid[key], str) and _whole_would_do(check, base, key, value):
                        raise type(exc)(_fractions(grid[key], key, "sweep key")) from None
                    if isinstance(grid[key], str):
                        raise type(exc)(f"sweep key {key}: {grid[key]} can draw {json.dumps(value)}: {exc} Trials "
                                        "that draw it would fail on this: keep the range to values that work.") from None
                    raise type(exc)(f"sweep key {key} value {json.dumps(value)}: {exc} Every trial with that "
                                    "value would fail on this: fix or drop the value.") from None  # fmt: skip


def _fractions(axis: str, key: str, said: str) -> str:
    """The error for a float range over a key that takes whole numbers (the schema's, or Keras's, say so)."""
    low, high = math.ceil((bounds := parse_range(axis, key)).low), math.floor(bounds.high)
    fix = f"use randint({low}, {high})" if low < high else "give them as a list"
    return f"{said} {key}: {axis} draws fractions, and {key} takes whole numbers: {fix}."


def _whole_would_do(check: Any, base: dict[str, Any], key: str, value: float) -> bool:
    """Whether a float range's value fails only for being a float: the same value as an int passes ``check``."""
    if not isinstance(value, float) or not value.is_integer():
        return False
    try:
        check(validate_config({**resolve(base, {key: int(value)}), "sweep": None}))
        return True
    except (ConfigError, DataError):
        return False


def reaches(key: str, place: str) -> bool:
    """Whether varying ``key`` changes ``place``: the same key, one inside it, or one around it."""
    return key == place or key.startswith(f"{place}.") or place.startswith(f"{key}.")


def sole_list_key(grid: dict[str, Any], place: str, ranges: bool = False) -> str | None:
    """The grid key that alone varies ``place``, if its values are a list (or, with ``ranges``, a range): each value
    can be checked before the sweep starts, against the base config (a key inside another's values can only be
    checked with them)."""
    varied = [k for k in grid if reaches(k, place)]
    return varied[0] if len(varied) == 1 and (ranges or isinstance(grid[varied[0]], list)) else None


def grid_choices(grid: dict[str, Any]) -> dict[str, list[Any]]:
    """The space as Optuna's GridSampler takes it; ConfigError for a range, which a grid cannot enumerate."""
    for key, axis in grid.items():
        if isinstance(axis, str):
            raise ConfigError(f"sweep key {key}: {axis} is a range, which --search grid cannot enumerate; pass --search "
                              "random or --search tpe with --trials N, or give a list of values.")  # fmt: skip
    return {key: list(map(_choice, axis)) for key, axis in grid.items()}


def distributions(grid: dict[str, Any]) -> dict[str, Any]:
    """Optuna's distribution per key: a range's, or categorical over a list's choices."""
    return {key: parse_range(axis, key) if isinstance(axis, str) else CategoricalDistribution(list(map(_choice, axis)))
            for key, axis in grid.items()}  # fmt: skip


def decode(trial: Any, grid: dict[str, Any]) -> dict[str, Any]:
    """A trial's values as the config takes them: a list's value back from its choice (``[28, 28]`` from its JSON)."""
    params = dict(trial.params)
    for key, axis in grid.items():
        if not isinstance(axis, str):
            choices = list(map(_choice, axis))
            params[key] = axis[choices.index(params[key])]
    return params


def _choice(value: Any) -> Any:
    """A value as an Optuna choice: a plain number or string as it is, anything else (``[28, 28]``) as JSON text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else json.dumps(value)


def resolve(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A copy of the resolved config ``base`` with a trial's ``params`` set, each as ``--set`` sets it (``sgd``
    replaces the whole optimizer mapping)."""
    data = copy.deepcopy(base)
    for key, value in in_order(params).items():
        apply_override(data, parse_key(key), value)
    return data


def in_order(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with a key before the keys inside it: ``training.optimizer=sgd``, then its ``learning_rate``."""
    return dict(sorted(params.items(), key=lambda item: sum(item[0].startswith(f"{key}.") for key in params)))


def trial_config(base: dict[str, Any], params: dict[str, Any], *, name: str, runs_dir: str) -> RunConfig:
    """The base config with ``params`` applied, named and placed for the sweep. ConfigError if invalid."""
    data = resolve(base, params)
    data["run"].update(name=name, runs_dir=runs_dir)
    flags = {dotted(parse_key(key)): f"--grid {key} value" for key in params}  # the fix names --grid, not --set
    return validate_config({**data, "sweep": None}, source=f"trial {name}", flags=flags)


def params_text(params: dict[str, Any]) -> str:
    """``model.layers[0].units=64 training.optimizer.learning_rate=0.001``: a trial's values in one line."""
    return " ".join(f"{dotted(parse_key(k))}={f'{v:.4g}' if isinstance(v, float) else v}" for k, v in params.items())
