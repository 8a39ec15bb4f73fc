"""Models: a ``keras.Sequential`` built from the config's layer list, and its fit to the data and loss.

Each layer item names a ``keras.layers`` class and passes its keyword
arguments unchanged; ``nnrun.keras_names`` finds the class and checks the
arguments. Here the layers are made and stacked, and a layer that cannot take
the previous one's output gets a hint about the preprocessing steps.
``check_compatibility`` then checks, before any training, that the model's
output, the labels and the loss fit together, and that callbacks monitor a
metric that will be logged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnrun.backbones import backbone_names, build_backbone
from nnrun.config import RunConfig
from nnrun.errors import ConfigError, did_you_mean, first_line
from nnrun.keras_names import layer_names, metric_names, monitored, resolve_layer


def build_model(layers: list[Any], input_shape: tuple[int, ...], *, name: str = "model", input_scale: float = 1.0):
    """Build and return a ``keras.Sequential`` for samples of ``input_shape``.

    A ``keras.applications`` name (``MobileNetV2``, ``ResNet50``, ...) is a pretrained backbone
    (``nnrun.backbones``); every other name is a ``keras.layers`` class.

    Args:
        layers: ``RunConfig.model.layers`` (pydantic items or plain dicts with ``type``).
        input_shape: the shape of one preprocessed sample, e.g. ``(784,)``.
        input_scale: the product of the config's ``scale`` factors (a backbone's ``preprocess_input`` undoes it).

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
        if spec.get("type") not in layer_names() and spec.get("type") in backbone_names():
            before = model.output_shape[1:] if model.layers else tuple(input_shape)
            kwargs = {k: v for k, v in spec.items() if k != "type"}
            for layer in build_backbone(spec["type"], kwargs, before, index, input_scale):
                model.add(layer)
            continue
        layer, kind = create_layer(spec, index), spec["type"]
        before = model.output_shape if model.layers else (None, *tuple(input_shape))
        try:
            model.add(layer)
        except Exception as exc:  # noqa: BLE001 - Keras raises ValueError, TypeError or framework errors here
            hint = _shape_hint(kind, before)
            raise ConfigError(
                f"model.layers[{index}] ({kind}) cannot take input of shape {before}: {first_line(exc)}{hint}"
            ) from None
    return model


def create_layer(spec: dict[str, Any], index: int) -> Any:
    """One ``keras.layers`` item of the config as a layer, not yet built. ConfigError: a bad name, argument or value."""
    cls, kwargs = resolve_layer(spec, index)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model.layers[{index}] ({cls.__name__}): {first_line(exc)}. Fix the layer's arguments.") from None


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
        elif kind.endswith(("Pooling2D", "Pooling1D")):
            parts.append(("MP" if kind.startswith("Max") else "AP") + str(spec.get("pool_size", 2)))
        elif kind == "Flatten":
            parts.append("F")
        else:
            parts.append(kind)
    return "-".join(parts)


def check_compatibility(model: Any, prepared_y: np.ndarray, num_classes: int, config: RunConfig,
                        label_encoding: str, validation: bool, task: str = "classification") -> None:
    """Check that the model's output, the labels and the loss fit together, before any training."""
    out = tuple(model.output_shape[1:])
    label_shape = tuple(prepared_y.shape[1:])
    loss = config.training.loss
    last = f"model.layers[{len(config.model.layers) - 1}]"
    if len(out) != 1:
        raise ConfigError(
            f"the model's output has shape {out} per sample, but each label is {label_shape or 'a single class index'}; "
            "add a Flatten layer (or the 'flatten' preprocessing step) before the Dense layers."
        )
    width = out[0]
    if task == "regression":
        _check_regression(loss, width, label_encoding, last, config.dataset.task)
    else:
        _check_loss_fits(loss, width, num_classes, label_encoding, last)
    available = metric_names(config, validation)
    for i, spec in enumerate(config.training.callbacks):
        monitor = monitored({"type": spec.type, **spec.kwargs()})
        if monitor is None or monitor in available:
            continue
        given = "" if "monitor" in spec.kwargs() else f" ({spec.type}'s default)"
        hint = (
            " There is no validation data: set dataset.validation to a fraction or 'test'."
            if monitor.startswith("val_") and not validation
            else ""
        )
        raise ConfigError(
            f"training.callbacks[{i}].monitor: '{monitor}'{given} is not a logged metric{did_you_mean(monitor, available)} "
            f"Logged metrics: {', '.join(available)}.{hint}"
        )


def _check_regression(loss: str, width: int, label_encoding: str, last: str, declared: str) -> None:
    """A regression predicts one number per sample with a regression loss, from a label left as a number."""
    from nnrun.datasets.table import REGRESSION_LOSSES

    if label_encoding == "one_hot":
        raise ConfigError("the 'one_hot' preprocessing step makes classes of the label, but this is a regression "
                          "(a number per sample); remove 'one_hot' from preprocessing.")
    if loss not in REGRESSION_LOSSES:
        raise ConfigError(f"dataset.task is regression but training.loss {loss!r} is a classification loss; "
                          "use a regression loss such as mse, mae or huber.")
    if width != 1:
        raise ConfigError(f"the last layer gives {width} outputs but a regression predicts one number; "
                          f"set {last}.units to 1 (with no activation, or a linear one).")


def _check_loss_fits(loss: str, width: int, num_classes: int, label_encoding: str, last: str) -> None:
    """Is the loss consistent with the label encoding and the output width?"""
    if loss in ("binary_crossentropy", "binary_focal_crossentropy"):
        if label_encoding == "one_hot" and width != num_classes:
            raise ConfigError(
                f"the last layer gives {width} outputs but the one-hot labels have {num_classes} columns; "
                f"set {last}.units to {num_classes}."
            )
        if label_encoding == "integer" and (num_classes != 2 or width != 1):
            raise ConfigError(
                f"training.loss binary_crossentropy needs one output for two classes, got {width} outputs "
                f"for {num_classes} classes; use units: 1 with sigmoid, or one_hot + categorical_crossentropy."
            )
        return
    if loss == "categorical_crossentropy" and label_encoding != "one_hot":
        raise ConfigError(
            "training.loss categorical_crossentropy needs one-hot labels but the labels are integers; "
            "add the 'one_hot' preprocessing step or use sparse_categorical_crossentropy."
        )
    if loss == "sparse_categorical_crossentropy" and label_encoding == "one_hot":
        raise ConfigError(
            "training.loss sparse_categorical_crossentropy needs integer labels but they are one-hot; "
            "remove the 'one_hot' step or use categorical_crossentropy."
        )
    if loss in ("categorical_crossentropy", "sparse_categorical_crossentropy") and width != num_classes:
        raise ConfigError(
            f"the last layer gives {width} outputs but the dataset has {num_classes} classes; "
            f"set {last}.units to {num_classes}."
        )
