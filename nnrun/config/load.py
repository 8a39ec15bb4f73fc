"""Loading a run config: YAML with the line of every key, ``--set`` overrides, key paths, and error wording.

``load_config`` reads the file, validates it against ``schema.RunConfig``,
applies the overrides to the resolved config and validates again;
``validate_config`` alone serves data read elsewhere (a run directory's
config). The first pydantic error becomes one line that names the dotted key,
the file and line, and how to fix it.

Example:
    >>> cfg = load_config("configs/diabetes_mlp.yaml", ["training.epochs=3"])
    >>> cfg.training.epochs
    3
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from nnrun.config.schema import (
    DATASET_NAMES,
    SECTIONS,
    STEP_TYPES,
    OptimizerConfig,
    RunConfig,
    StepConfig,
    as_typed,
    expand_short_forms,
)
from nnrun.errors import ConfigError, did_you_mean, first_line


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader, which also reads ``1e-5`` as a number, as YAML 1.2 does (PyYAML's YAML 1.1 wants
    ``1.0e-5``: ``rate: 1e-5`` was the text '1e-5', which a Keras layer refuses, and a retrain command printed)."""


Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)[eE][-+]?\d+$"),
                             list("-+.0123456789"))  # fmt: skip


def load_yaml(text: str) -> Any:
    """YAML text (a config file, a ``--set`` or ``--grid`` value) as nnrun reads it: ``Loader``'s."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader


def read_yaml(path: str | Path) -> tuple[dict[str, Any], dict[tuple, int]]:
    """Read a YAML mapping and the line number of every key path in it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found; check the path (configs/ lists the shipped ones).") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}.") from None
    try:
        node = yaml.compose(text, Loader=Loader)
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or first_line(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}. Fix the file's syntax.") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping with sections {', '.join(SECTIONS)}.")
    return data, _line_map(node)


def _line_map(node: Any, prefix: tuple = ()) -> dict[tuple, int]:
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (key_node.value,)
            lines[key] = key_node.start_mark.line + 1
            lines.update(_line_map(value_node, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = prefix + (i,)
            lines[key] = item.start_mark.line + 1
            lines.update(_line_map(item, key))
    return lines


def parse_key(text: str) -> list[str | int]:
    """Split a dotted key path into its parts, list indexes as ints.

    ``model.layers[0].units`` and ``model.layers.0.units`` both give
    ``["model", "layers", 0, "units"]``; ``[-1]`` or ``.-1`` gives ``-1``.
    A part made only of digits (with an optional leading ``-``) is an int,
    every other part a str; whitespace around the whole key is ignored. The
    parts are not checked against any config: ``apply_override`` does that.
    ``dotted`` turns the parts back into ``model.layers[0].units``.

    Raises:
        ConfigError: the key is empty or has an empty part (``a..b``, ``.a``,
            ``a.``), worded ``the key 'a..b' is not a dotted path such as ...``
            so that callers can put where the key came from in front.
    """
    key = re.sub(r"\[(-?\d+)\]", r".\1", text.strip())
    if not key or any(part == "" for part in key.split(".")):
        raise ConfigError(f"the key {key!r} is not a dotted path such as model.layers.0.units.")
    return [int(p) if re.fullmatch(r"-?\d+", p) else p for p in key.split(".")]


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """Parse ``a.b.0.c=VALUE`` (or ``a.b[0].c=VALUE``) into ``parse_key``'s parts and the value; VALUE is YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set training.epochs=3.")
    key, raw = text.split("=", 1)
    try:
        parts = parse_key(key)
    except ConfigError as exc:
        raise ConfigError(f"--set {text!r}: {exc}") from None
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return parts, value


#: Where a bare string is the short form of a mapping: ``adam`` of ``{type: adam}``.
SHORT_FORM_PLACES = r"training\.optimizer|(model\.layers|preprocessing|training\.callbacks)\[-?\d+\]"


#: Mappings whose keys are the user's (a CSV's column names): ``--set`` may add one.
OPEN_MAPPINGS = ("dataset.columns",)


def apply_override(data: dict[str, Any], parts: list[str | int], value: Any) -> Any:
    """Set one existing key in the (resolved) config dict; return the old value.

    Inside a mapping an earlier override gave (``training.optimizer=sgd``, a short form, or ``{type: sgd}``), a key
    its schema has may be set though the mapping leaves it out: ``training.optimizer.learning_rate`` after either.
    """
    node: Any = data
    parent: Any = None
    for depth, part in enumerate(parts):
        here = dotted(parts[:depth]) or "the config"
        last = depth == len(parts) - 1
        if isinstance(node, str) and re.fullmatch(SHORT_FORM_PLACES, here):
            node = parent[parts[depth - 1]] = as_typed(node)
        if isinstance(node, dict):
            known = [*node, *sorted(_schema_keys(here, node.get("type")) - set(node))]
            if isinstance(part, str) and part not in node and last and (part in known or here in OPEN_MAPPINGS):
                node[part] = None
            if not isinstance(part, str) or part not in node:
                hint = did_you_mean(str(part), [k for k in known if isinstance(k, str)])
                free = (isinstance(part, str) and hint == "." and re.fullmatch(SHORT_FORM_PLACES, here)
                        and not here.startswith("preprocessing"))  # a step's keys are all in the schema
                keys = "".join(f"{k}: {json.dumps(v)}, " for k, v in node.items() if v is not None and k != "type")
                new = (f" To pass {node['type']} an argument it has no key for yet, set {here} whole, e.g. --set "
                       f"'{here}={{type: {node['type']}, {keys}{part}: ...}}'." if free else "")  # fmt: skip
                raise ConfigError(f"--set {dotted(parts)}: there is no key '{part}' in {here}{hint} "
                                  f"Valid keys: {', '.join(map(str, known))}.{new}")  # fmt: skip
        elif isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                fix = (f"address one by index 0..{len(node) - 1}, e.g. {dotted(parts[:depth])}.0" if node else
                       f"set the list whole instead, e.g. --set '{dotted(parts[:depth])}=[...]'")  # fmt: skip
                raise ConfigError(f"--set {dotted(parts)}: {here} is a list of {len(node)} items; {fix}.")
        else:
            raise ConfigError(f"--set {dotted(parts)}: {here} is a value ({node!r}), not a section with keys.")
        if last:  # a copy: a later override into it must not change the caller's value (a sweep's grid)
            old, node[part] = node[part], copy.deepcopy(value)
            return old
        parent, node = node, node[part]
    return None


def _schema_keys(here: str, kind: Any) -> set[str]:
    """The keys the schema gives the mapping at ``here`` of type ``kind`` (an optimizer's learning_rate, a scale step's
    factor); layers and callbacks take Keras's arguments, which Keras checks."""
    if here == "training.optimizer":
        return set(OptimizerConfig.model_fields)
    steps = get_args(get_args(StepConfig)[0]) if here.startswith("preprocessing[") else ()
    return next((set(s.model_fields) for s in steps if get_args(s.model_fields["type"].annotation) == (kind,)), set())


def dotted(loc: tuple | list) -> str:
    """``('model', 'layers', 2, 'units')`` -> ``model.layers[2].units``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_config(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    echo: list[str] | None = None,
    flags: dict[str, str] | None = None,
) -> RunConfig:
    """Read, validate and resolve a config file.

    Args:
        path: the YAML file.
        overrides: ``KEY=VALUE`` strings, applied in order to the resolved config.
        echo: if given, one ``key: old -> new`` line per applied override is appended.
        flags: dotted key -> the command-line flag whose override set it (``{"run.name": "--name"}``).

    Returns:
        The frozen, resolved RunConfig. ``run.name`` defaults to the file's stem.

    Raises:
        ConfigError: with the dotted key, the file and line, and how to fix it.
    """
    path = Path(path)
    data, lines = read_yaml(path)
    config = validate_config(data, source=str(path), lines=lines)
    if overrides:
        resolved = config.to_dict()
        for text in overrides:
            parts, value = parse_override(text)
            old = apply_override(resolved, parts, value)
            if echo is not None:
                echo.append(f"{dotted(parts)}: {old!r} -> {value!r}")
        config = validate_config(resolved, source=f"{path} with --set", lines={}, flags=flags)
    if not config.run.runs_dir.strip():  # an unset shell variable, say: the runs would land in the current folder
        # Here, not in the schema: a run saved with it before this check must still resume.
        given = (flags or {}).get("run.runs_dir")
        raise ConfigError(f"run.runs_dir: must name a folder, e.g. runs, got {config.run.runs_dir!r} "
                          + (f"(given by {given}). Pass another {given}." if given
                             else f"({path}). Fix the file or pass --set run.runs_dir=..."))  # fmt: skip
    if config.run.name is None:
        run = config.run.model_copy(update={"name": re.sub(r"[^A-Za-z0-9._-]", "-", path.stem)})
        config = config.model_copy(update={"run": run})
    return config


def validate_config(data: dict[str, Any], *, source: str = "config", lines: dict[tuple, int] | None = None,
                    flags: dict[str, str] | None = None) -> RunConfig:
    """Validate plain data into a RunConfig, turning the first pydantic error into one clear line.

    ``flags``: dotted key -> the command-line flag that set it (``{"sweep.search": "--search"}``), which the fix names.
    """
    data = expand_short_forms(data)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, data, source, lines or {}, flags or {})) from None


def format_validation_error(exc: ValidationError, data: dict, source: str, lines: dict[tuple, int],
                            flags: dict[str, str] | None = None) -> str:
    """One line for the first error: the dotted key, what was received, ``source:line``, and how to fix it."""
    errors = exc.errors(include_url=False)
    err = errors[0]
    loc, model_loc = _clean_loc(err["loc"], data)
    # A value that fails every member of a union yields one error per member.
    alternatives = [e["msg"] for e in errors if _clean_loc(e["loc"], data)[0] == loc]
    key = dotted(loc)
    where = source
    for n in range(len(loc), 0, -1):
        if tuple(loc[:n]) in lines:
            where = f"{source}:{lines[tuple(loc[:n])]}"
            break
    kind = err["type"]
    received = _lookup(data, loc)
    if kind == "extra_forbidden":
        parent = dotted(loc[:-1]) or "the top level"
        valid = _valid_keys(model_loc[:-1])
        hint = did_you_mean(str(loc[-1]), valid, end="")
        listing = f" Valid keys: {', '.join(valid)}." if valid else ""
        parent_data = _lookup(data, loc[:-1])
        if isinstance(parent_data, dict) and ("name" in parent_data or "type" in parent_data):
            parent += f" ({'name' if 'name' in parent_data else 'type'}: {parent_data.get('name', parent_data.get('type'))})"
        return f"unknown key '{loc[-1]}' in {parent}{hint} ({where}).{listing}"
    if kind == "missing":
        return f"{key} is required but missing ({where}). Add it to the file."
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = "name" if loc and loc[0] == "dataset" else "type"
        choices = err.get("ctx", {}).get("expected_tags", "")
        got = received.get(tag) if isinstance(received, dict) else received
        names = [c.strip().strip("'") for c in str(choices).split(",")]
        hint = did_you_mean(str(got), names, end="") if got is not None else ""
        if kind == "union_tag_not_found":
            choices = ", ".join(repr(c) for c in (DATASET_NAMES if tag == "name" else STEP_TYPES))
            return f"{key} needs a '{tag}' ({where}); expected one of {choices}."
        return f"{key}.{tag} must be one of {choices}, got {got!r}{hint} ({where})."
    alternatives = [m.removeprefix("Value error, ") for m in alternatives]  # pydantic's, for a validator's own text
    msg = " or ".join(dict.fromkeys(m[0].lower() + m[1:] for m in alternatives if m))
    msg = msg.replace(", got a number with", ": not a number with")  # pydantic's; the value comes after, as 'got'
    fix = f" Pass another {flags[key]}." if key in (flags or {}) else f" Fix the file or pass --set {_set_path(loc)}=..."
    where = f"given by {flags[key]}" if key in (flags or {}) else where  # not the file, nor a --set
    fix = fix if loc else ""
    if len(loc) > 2 and tuple(loc[:2]) == ("sweep", "grid") and key not in (flags or {}):  # dotted keys: --set cannot reach one
        fix = " Give it a list of values in the file, e.g. [12, 64], or a range such as 'loguniform(1e-4, 1e-1)'."
    return f"{key or 'the config'}: {msg}, got {received!r} ({where}).{fix}"


def _set_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def _lookup(data: Any, loc: tuple) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _clean_loc(loc: tuple, data: dict) -> tuple[tuple, tuple]:
    """Drop the union-tag and validator parts pydantic adds to error locations.

    Returns the location in the user's data and the location for walking the models.
    """
    user: list = []
    model: list = []
    node: Any = data
    for part in loc:
        if isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue
        if isinstance(node, dict) and part not in node and isinstance(part, str):
            tag = node.get("name", node.get("type"))
            if part == tag:
                model.append(part)
                continue
        if isinstance(part, str) and not isinstance(node, dict):
            break  # a union member's name (e.g. 'constrained-float') under a scalar
        user.append(part)
        model.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return tuple(user), tuple(model)


def _valid_keys(model_loc: tuple) -> list[str]:
    """The field names allowed at ``model_loc`` (walking RunConfig's annotations)."""
    tp: Any = RunConfig
    for part in model_loc:
        tp = _unwrap(tp, part)
        if tp is None:
            return []
    tp = _unwrap(tp, None)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _unwrap(tp: Any, part: Any) -> Any:
    """Step one location ``part`` into type ``tp`` (None: only unwrap Optional/Annotated)."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
            continue
        if origin is Union:
            args = [a for a in get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if isinstance(part, str) and models:
                for m in models:
                    tags = [get_args(m.model_fields[f].annotation) for f in ("name", "type") if f in m.model_fields]
                    if any(part in t for t in tags):
                        return m
            if len(models) == 1:
                tp = models[0]
                continue
            if len(args) == 1:
                tp = args[0]
                continue
            return tp if part is None else None
        break
    if part is None:
        return tp
    if isinstance(part, int):
        if get_origin(tp) is list:
            return get_args(tp)[0]
        return None
    if isinstance(tp, type) and issubclass(tp, BaseModel) and part in tp.model_fields:
        return tp.model_fields[part].annotation
    return None
