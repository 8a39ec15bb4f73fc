"""Models: a ``keras.Sequential`` built from the config's layer list.

Each layer item names a ``keras.layers`` class and passes its keyword
arguments unchanged. No layer is hand-written here: names and arguments are
checked against Keras's own classes and constructor signatures, so a typo gets
a suggestion instead of a traceback.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

from nnrun.errors import ConfigError, did_you_mean, first_line


@lru_cache(maxsize=None)
def layer_names() -> dict[str, type]:
    from nnrun.tf import import_keras

    keras = import_keras()
    return {
        name: obj
        for name, obj in vars(keras.layers).items()
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer) and not name.startswith("_")
    }


@lru_cache(maxsize=None)
def accepted_arguments(cls: type) -> tuple[frozenset[str], bool]:
    """Argument names a class's constructor accepts, and whether it takes any (**kwargs with no checks)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names.update(p for p, v in params.items() if p != "self" and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL))
        if not any(v.kind == v.VAR_KEYWORD for v in params.values()):
            return frozenset(names), False
    return frozenset(names), True


def check_arguments(cls: type, kwargs: dict[str, Any], key: str, *, extra: tuple[str, ...] = ()) -> None:
    """Raise ConfigError for a keyword ``cls`` does not accept, with the nearest valid one."""
    accepted, _ = accepted_arguments(cls)
    accepted = accepted | set(extra)
    for arg in kwargs:
        if arg not in accepted:
            raise ConfigError(
                f"{key}: {cls.__name__} has no argument '{arg}'{did_you_mean(arg, sorted(accepted))} "
                f"Valid arguments: {', '.join(sorted(a for a in accepted if not a.startswith('_')))}."
            )


# Keras's base Layer takes these through **kwargs.
_LAYER_BASE_KWARGS = ("input_dim", "input_shape", "batch_input_shape", "batch_size", "weights")


def resolve_layer(spec: dict[str, Any], index: int) -> tuple[type, dict[str, Any]]:
    """Find the Keras class for one layer item and check its arguments."""
    spec = dict(spec)
    name = spec.pop("type")
    key = f"model.layers[{index}]"
    classes = layer_names()
    if name not in classes:
        raise ConfigError(
            f"{key}.type: keras.layers has no layer '{name}'{did_you_mean(name, classes)} "
            "Use a keras.layers class name such as Dense, Dropout, Conv2D, MaxPooling2D or Flatten."
        )
    cls = classes[name]
    check_arguments(cls, spec, key, extra=_LAYER_BASE_KWARGS)
    return cls, spec


def build_model(layers: list[Any], input_shape: tuple[int, ...], *, name: str = "model"):
    """Build and return a ``keras.Sequential`` for samples of ``input_shape``.

    Args:
        layers: ``RunConfig.model.layers`` (pydantic items or plain dicts with ``type``).
        input_shape: the shape of one preprocessed sample, e.g. ``(784,)``.

    Raises:
        ConfigError: an unknown layer or argument, a bad argument value, or a
            layer that cannot take the previous layer's output.
    """
    from nnrun.tf import import_keras

    keras = import_keras()
    specs = [item.model_dump() if hasattr(item, "model_dump") else dict(item) for item in layers]
    model = keras.Sequential(name=name)
    model.add(keras.Input(shape=tuple(input_shape)))
    for index, spec in enumerate(specs):
        cls, kwargs = resolve_layer(spec, index)
        key = f"model.layers[{index}]"
        try:
            layer = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} ({cls.__name__}): {first_line(exc)}. Fix the layer's arguments.") from None
        before = model.output_shape if model.layers else (None, *tuple(input_shape))
        try:
            model.add(layer)
        except Exception as exc:  # Keras raises ValueError, TypeError or framework errors here
            hint = _shape_hint(cls.__name__, before)
            raise ConfigError(
                f"{key} ({cls.__name__}) cannot take input of shape {before}: {first_line(exc)}{hint}"
            ) from None
    return model


def _shape_hint(layer: str, shape: tuple) -> str:
    rank = len(shape) - 1
    if layer.startswith("Conv2D") or layer.endswith("Pooling2D"):
        if rank == 1:
            return ". Conv2D needs images: drop the 'flatten' step and add 'add_channel_axis' in preprocessing."
        if rank == 2:
            return ". Conv2D needs a channel axis: add the 'add_channel_axis' step to preprocessing."
    return ". Check the layer order and the preprocessing steps."


def layer_summary(layers: list[Any]) -> str:
    """A short code for the layer list, e.g. ``D512-Dr.2-D512-Dr.2-D10`` (no TensorFlow needed)."""
    parts = []
    for item in layers:
        spec = item.model_dump() if hasattr(item, "model_dump") else dict(item)
        kind = spec.get("type", "?")
        if kind == "Dense":
            parts.append(f"D{spec.get('units', '?')}")
        elif kind == "Dropout":
            parts.append("Dr" + f"{spec.get('rate', '?')}".lstrip("0"))
        elif kind.startswith("Conv"):
            parts.append(f"C{spec.get('filters', '?')}k{spec.get('kernel_size', '?')}")
        elif kind.endswith("Pooling2D") or kind.endswith("Pooling1D"):
            parts.append(("MP" if kind.startswith("Max") else "AP") + str(spec.get("pool_size", 2)))
        elif kind == "Flatten":
            parts.append("F")
        else:
            parts.append(kind)
    return "-".join(parts)
