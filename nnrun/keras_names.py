"""Keras objects by name: layers, optimizers, losses, metrics and callbacks, and their arguments.

A config names Keras classes by their Keras names and passes their keyword
arguments unchanged; nothing is hand-written or re-listed here. Names and
arguments are checked against Keras's own modules and constructor signatures,
so a typo gets a suggestion instead of a traceback. Keras is imported inside
each function that needs it (``nnrun.tf``), never when this module loads.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

from nnrun.config import RunConfig
from nnrun.errors import ConfigError, did_you_mean, first_line

# ------------------------------------------------------------ arguments


@cache
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


# --------------------------------------------------------------- layers


@cache
def layer_names() -> dict[str, type]:
    from nnrun.tf import import_keras

    keras = import_keras()
    return {
        name: obj
        for name, obj in vars(keras.layers).items()
        if inspect.isclass(obj) and issubclass(obj, keras.layers.Layer) and not name.startswith("_")
    }


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
            "Use a keras.layers class name such as Dense, Dropout, Conv2D, MaxPooling2D or Flatten, or a "
            "keras.applications model such as MobileNetV2 or ResNet50."
        )
    cls = classes[name]
    check_arguments(cls, spec, key, extra=_LAYER_BASE_KWARGS)
    return cls, spec


# ----------------------------------------------------------- optimizers


def _optimizer_classes() -> dict[str, type]:
    from nnrun.tf import import_keras

    keras = import_keras()
    return {
        name.lower(): obj
        for name, obj in vars(keras.optimizers).items()
        if inspect.isclass(obj) and issubclass(obj, keras.optimizers.Optimizer) and obj is not keras.optimizers.Optimizer
    }


def create_optimizer(spec: Any):
    """``{type: rmsprop, learning_rate: 0.001}`` -> ``keras.optimizers.RMSprop(learning_rate=0.001)``."""
    kwargs = spec.kwargs()
    if spec.learning_rate is not None:
        kwargs["learning_rate"] = spec.learning_rate
    classes = _optimizer_classes()
    cls = classes.get(spec.type.lower())
    if cls is None:
        raise ConfigError(
            f"training.optimizer.type: unknown optimizer '{spec.type}'{did_you_mean(spec.type.lower(), classes)} "
            f"Valid optimizers: {', '.join(sorted(classes))}."
        )
    check_arguments(cls, kwargs, "training.optimizer")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"training.optimizer ({cls.__name__}): {first_line(exc)}") from None


# ------------------------------------------------------ losses, metrics


def _loss_names() -> list[str]:
    from nnrun.tf import import_keras

    keras = import_keras()
    return sorted(n for n, f in vars(keras.losses).items() if n.islower() and callable(f) and not n.startswith("_") and n not in ("get", "serialize", "deserialize"))


def check_loss(name: str) -> None:
    from nnrun.tf import import_keras

    keras = import_keras()
    try:
        keras.losses.get(name)
    except (ValueError, TypeError):
        raise ConfigError(
            f"training.loss: unknown loss '{name}'{did_you_mean(name, _loss_names())} "
            "Use a keras.losses name such as categorical_crossentropy, sparse_categorical_crossentropy "
            "or binary_crossentropy."
        ) from None


_METRIC_ALIASES = ("accuracy", "acc", "crossentropy", "ce")


def check_metrics(names: list[str]) -> None:
    from nnrun.tf import import_keras

    keras = import_keras()
    for i, name in enumerate(names):
        if name in _METRIC_ALIASES:
            continue
        try:
            keras.metrics.get(name)
        except (ValueError, TypeError):
            known = [n for n in vars(keras.metrics) if not n.startswith("_") and n not in ("get", "serialize", "deserialize")]
            raise ConfigError(
                f"training.metrics[{i}]: unknown metric '{name}'{did_you_mean(name, known)} "
                "Use a keras.metrics name such as accuracy, AUC, Precision or Recall."
            ) from None


def metric_names(config: RunConfig, validation: bool) -> list[str]:
    """The names ``fit`` will log, e.g. ``loss, accuracy, AUC, val_loss, val_accuracy, val_AUC``: Keras 3 logs a
    metric given by name under that very name (``AUC``, not ``auc``)."""
    names = ["loss", *config.training.metrics]
    return names + [f"val_{n}" for n in names] if validation else names


# ------------------------------------------------------------ callbacks


#: The Keras callbacks with a ``monitor`` argument, and its default (tests/test_training.py checks it against Keras).
DEFAULT_MONITORS = {"EarlyStopping": "val_loss", "ReduceLROnPlateau": "val_loss", "ModelCheckpoint": "val_loss",
                    "OrbaxCheckpoint": "val_loss"}  # fmt: skip


def monitored(spec: dict[str, Any]) -> str | None:
    """What a callback (a config entry: ``{type: EarlyStopping, ...}``) monitors: its ``monitor``, else its Keras
    class's default (``val_loss``); None if it watches none. The checkpoints read it only with ``save_best_only``."""
    if spec.get("type") in ("ModelCheckpoint", "OrbaxCheckpoint") and not spec.get("save_best_only"):
        return None
    return spec.get("monitor") or DEFAULT_MONITORS.get(str(spec.get("type")))


def create_callbacks(specs: list[Any]) -> list[Any]:
    """The config's callbacks, each a ``keras.callbacks`` class by name."""
    from nnrun.tf import import_keras

    keras = import_keras()
    classes = {
        n: c for n, c in vars(keras.callbacks).items()
        if inspect.isclass(c) and issubclass(c, keras.callbacks.Callback) and c is not keras.callbacks.Callback
    }  # fmt: skip
    callbacks = []
    for i, spec in enumerate(specs):
        key = f"training.callbacks[{i}]"
        cls = classes.get(spec.type)
        if cls is None:
            raise ConfigError(
                f"{key}.type: keras.callbacks has no callback '{spec.type}'{did_you_mean(spec.type, classes)} "
                f"Valid callbacks: {', '.join(sorted(classes))}."
            )
        kwargs = spec.kwargs()
        check_arguments(cls, kwargs, key)
        try:
            callbacks.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{key} ({cls.__name__}): {first_line(exc)}") from None
    return callbacks
