"""The run config: YAML plus ``--set`` overrides, validated into a frozen RunConfig.

Nothing here imports TensorFlow. Everything that can be checked from the text
alone (keys, types, ranges, choices) is checked here, so that a typo costs
milliseconds. Names that only Keras knows (layer classes and their arguments,
optimizers, losses, callbacks) are checked by ``models`` and ``training``
before anything trains.

Example:
    >>> cfg = load_config("configs/diabetes_mlp.yaml", ["training.epochs=3"])
    >>> cfg.training.epochs
    3
"""

from __future__ import annotations

import copy
import re
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nnrun.errors import ConfigError, did_you_mean

SECTIONS = ("dataset", "preprocessing", "model", "training", "run")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Named(BaseModel):
    """A Keras object named by ``type`` whose other keys are passed to its constructor."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# ----------------------------------------------------------------- dataset


Validation = Union[Annotated[float, Field(gt=0, lt=1)], Literal["test", "none"]]


class _DatasetBase(Strict):
    validation: Validation = Field(
        "none",
        description="FRACTION of train held out (the last part, as Keras's validation_split), "
        "'test' to validate on the test set, or 'none'.",
    )
    limit: Annotated[int, Field(ge=1)] | None = Field(None, description="keep the first N training samples")


class _TabularBase(_DatasetBase):
    label: str | int = Field(-1, description="label column, by name or index (negative counts from the end)")
    features: list[str | int] | None = Field(None, description="feature columns; default: all but the label")
    header: bool = True
    delimiter: str = ","
    test_split: Annotated[float, Field(gt=0, lt=1)] = 0.25
    split_seed: int = 87
    stratify: bool = False


class DiabetesDataset(_TabularBase):
    """The Pima Indians diabetes CSV that ships inside nnrun: works with no network."""

    name: Literal["diabetes"]
    label: str | int = "Outcome"


class CsvDataset(_TabularBase):
    name: Literal["csv"]
    path: str


class ImageDataset(_DatasetBase):
    """MNIST or Fashion-MNIST from the four IDX files."""

    name: Literal["mnist", "fashion_mnist"]
    path: str | None = Field(None, description="folder with the four IDX files (.gz or raw)")


DatasetConfig = Annotated[Union[DiabetesDataset, CsvDataset, ImageDataset], Field(discriminator="name")]

# ------------------------------------------------------------ preprocessing


def _fraction(value: Any) -> Any:
    """Accept ``1/255`` as well as ``0.00392``."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*/\s*\d+(\.\d+)?\s*", value):
        num, den = value.split("/")
        return float(Fraction(num.strip()) / Fraction(den.strip()))
    return value


class _Step(Strict):
    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value


class FlattenStep(_Step):
    type: Literal["flatten"]


class ReshapeStep(_Step):
    type: Literal["reshape"]
    target_shape: list[Annotated[int, Field(ge=-1)]]


class ScaleStep(_Step):
    type: Literal["scale"]
    factor: float

    _parse = field_validator("factor", mode="before")(lambda cls, v: _fraction(v))


class StandardizeStep(_Step):
    type: Literal["standardize"]


class OneHotStep(_Step):
    type: Literal["one_hot"]
    num_classes: Annotated[int, Field(ge=2)] | None = None


class AddChannelAxisStep(_Step):
    type: Literal["add_channel_axis"]


class CastStep(_Step):
    type: Literal["cast"]
    dtype: Literal["float16", "float32", "float64", "int32", "int64", "uint8"] = "float32"


StepConfig = Annotated[
    Union[FlattenStep, ReshapeStep, ScaleStep, StandardizeStep, OneHotStep, AddChannelAxisStep, CastStep],
    Field(discriminator="type"),
]


DATASET_NAMES = ("diabetes", "csv", "mnist", "fashion_mnist")
STEP_TYPES = ("flatten", "reshape", "scale", "standardize", "one_hot", "add_channel_axis", "cast")


def _steps_from_strings(value: Any) -> Any:
    if isinstance(value, list):
        return [{"type": v} if isinstance(v, str) else v for v in value]
    return value


# -------------------------------------------------------------------- model


class ModelConfig(Strict):
    layers: Annotated[list[Named], Field(min_length=1)]


# ----------------------------------------------------------------- training


class OptimizerConfig(Named):
    learning_rate: Annotated[float, Field(gt=0)] | None = Field(None, description="None: the optimizer's default")


class TrainingConfig(Strict):
    optimizer: OptimizerConfig = OptimizerConfig(type="adam")
    loss: str = "categorical_crossentropy"
    metrics: list[str] = ["accuracy"]
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=1)] = 32
    shuffle: bool = True
    callbacks: list[Named] = []
    checkpoint: Literal["best", "last", "none"] = Field(
        "last", description="which model the checkpoints/ folder keeps during training"
    )
    steps_per_execution: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    jit_compile: bool | Literal["auto"] = Field(
        False, description="XLA (Keras's jit_compile). Off by default: on these CPUs it made no shipped config "
        "faster as a whole run, 2x slower on Conv2D, and ~110 MB more memory. 'auto' (older configs) means off"
    )
    verbose: Annotated[int, Field(ge=0, le=2)] = 1
    tensorboard: bool = Field(False, description="write TensorBoard logs into the run directory's tensorboard/ folder")
    mixed_precision: bool = Field(
        False, description="Keras's mixed_float16 policy on GPU (the last layer stays float32); on CPU a warning, float32"
    )

    @field_validator("optimizer", mode="before")
    @classmethod
    def _optimizer_from_string(cls, value: Any) -> Any:
        return {"type": value} if isinstance(value, str) else value


# ---------------------------------------------------------------------- run


class RunSection(Strict):
    name: str | None = Field(None, description="run name; default: the config file's stem")
    seed: int = 42
    runs_dir: str = "runs"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}", value):
            raise ValueError("must be letters, digits, '.', '_' or '-' (at most 81 characters, no '/')")
        return value


# ------------------------------------------------------------- distribution


class DistributionConfig(Strict):
    """How ``fit`` spreads over devices, through ``tf.distribute``. ``training.batch_size`` stays the global batch."""

    strategy: Literal["none", "mirrored", "multi_worker"] = Field(
        "none", description="none; mirrored (MirroredStrategy over local GPUs or `devices`); multi_worker (rejected: "
        "broken upstream with Keras 3, see nnrun.distribution)"
    )
    devices: Annotated[list[str], Field(min_length=1)] | None = Field(
        None, description="mirrored only: the devices, e.g. ['/gpu:0', '/gpu:1']; default: all local GPUs (else the CPU)"
    )


# -------------------------------------------------------------------- sweep


class SweepConfig(Strict):
    """``nnrun sweep``: config keys to vary. ``nnrun train`` ignores this section."""

    grid: dict[str, Annotated[list[Any], Field(min_length=1)] | str] = Field(
        {}, description="dotted key -> list of values, or a range such as 'loguniform(1e-4, 1e-1)' (random mode)"
    )
    metric: str = Field("val_accuracy", description="the compare column that ranks the trials")
    random: Annotated[int, Field(ge=1)] | None = Field(None, description="sample this many trials instead of the full grid")
    seed: int = Field(0, description="seed of the random sampling")


class RunConfig(Strict):
    """The whole, resolved configuration of one run."""

    dataset: DatasetConfig
    preprocessing: list[StepConfig] = []
    model: ModelConfig
    training: TrainingConfig = TrainingConfig()
    run: RunSection = RunSection()
    distribution: DistributionConfig = DistributionConfig()
    sweep: SweepConfig | None = None

    _steps = field_validator("preprocessing", mode="before")(lambda cls, v: _steps_from_strings(v))

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data, in section order, defaults filled in."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ------------------------------------------------------------ loading


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
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
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


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """Parse ``a.b.0.c=VALUE`` (or ``a.b[0].c=VALUE``); VALUE is YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set training.epochs=3.")
    key, raw = text.split("=", 1)
    key = re.sub(r"\[(-?\d+)\]", r".\1", key.strip())
    if not key or any(part == "" for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key {key!r} is not a dotted path such as model.layers.0.units.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    parts: list[str | int] = [int(p) if re.fullmatch(r"-?\d+", p) else p for p in key.split(".")]
    return parts, value


def apply_override(data: dict[str, Any], parts: list[str | int], value: Any) -> Any:
    """Set one existing key in the (resolved) config dict; return the old value."""
    node: Any = data
    for depth, part in enumerate(parts):
        here = dotted(parts[:depth]) or "the config"
        last = depth == len(parts) - 1
        if isinstance(node, dict):
            if not isinstance(part, str) or part not in node:
                hint = did_you_mean(str(part), [k for k in node if isinstance(k, str)])
                raise ConfigError(
                    f"--set {dotted(parts)}: there is no key '{part}' in {here}{hint} "
                    f"Valid keys: {', '.join(map(str, node))}."
                )
            if last:
                old, node[part] = node[part], value
                return old
            node = node[part]
        elif isinstance(node, list):
            if not isinstance(part, int) or not -len(node) <= part < len(node):
                raise ConfigError(
                    f"--set {dotted(parts)}: {here} is a list of {len(node)} items; "
                    f"address one by index 0..{len(node) - 1}, e.g. {dotted(parts[:depth])}.0."
                )
            if last:
                old, node[part] = node[part], value
                return old
            node = node[part]
        else:
            raise ConfigError(f"--set {dotted(parts)}: {here} is a value ({node!r}), not a section with keys.")
    return None


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
) -> RunConfig:
    """Read, validate and resolve a config file.

    Args:
        path: the YAML file.
        overrides: ``KEY=VALUE`` strings, applied in order to the resolved config.
        echo: if given, one ``key: old -> new`` line per applied override is appended.

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
        config = validate_config(resolved, source=f"{path} with --set", lines={})
    if config.run.name is None:
        run = config.run.model_copy(update={"name": re.sub(r"[^A-Za-z0-9._-]", "-", path.stem)})
        config = config.model_copy(update={"run": run})
    return config


def validate_config(data: dict[str, Any], *, source: str = "config", lines: dict[tuple, int] | None = None) -> RunConfig:
    """Validate plain data into a RunConfig, turning the first pydantic error into one clear line."""
    data = copy.deepcopy(data)
    if isinstance(data.get("preprocessing"), list):
        data["preprocessing"] = _steps_from_strings(data["preprocessing"])
    training = data.get("training")
    if isinstance(training, dict) and isinstance(training.get("optimizer"), str):
        training["optimizer"] = {"type": training["optimizer"]}
    for section in ("model", "training"):
        items = data[section].get("layers" if section == "model" else "callbacks") if isinstance(data.get(section), dict) else None
        if isinstance(items, list):
            data[section]["layers" if section == "model" else "callbacks"] = [
                {"type": v} if isinstance(v, str) else v for v in items
            ]
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, data, source, lines or {})) from None


def format_validation_error(exc: ValidationError, data: dict, source: str, lines: dict[tuple, int]) -> str:
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
        valid = _valid_keys(model_loc[:-1], data)
        hint = did_you_mean(str(loc[-1]), valid)
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
        hint = did_you_mean(str(got), names) if got is not None else ""
        if kind == "union_tag_not_found":
            choices = ", ".join(repr(c) for c in (DATASET_NAMES if tag == "name" else STEP_TYPES))
            return f"{key} needs a '{tag}' ({where}); expected one of {choices}."
        return f"{key}.{tag} must be one of {choices}, got {got!r}{hint} ({where})."
    msg = " or ".join(dict.fromkeys(m[0].lower() + m[1:] for m in alternatives if m))
    fix = f" Fix the file or pass --set {_set_path(loc)}=..." if loc else ""
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


def _valid_keys(model_loc: tuple, data: dict) -> list[str]:
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
