"""Models: a ``keras.Sequential`` built from the config's layer list.

Each layer item names a ``keras.layers`` class and passes its keyword
arguments unchanged; ``nnrun.keras_names`` finds the class and checks the
arguments. Here the layers are made and stacked, and a layer that cannot take
the previous one's output gets a hint about the preprocessing steps.
"""

from __future__ import annotations

from typing import Any

from nnrun.errors import ConfigError, first_line
from nnrun.keras_names import resolve_layer


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
        except Exception as exc:  # noqa: BLE001 - Keras raises ValueError, TypeError or framework errors here
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
        elif kind.endswith(("Pooling2D", "Pooling1D")):
            parts.append(("MP" if kind.startswith("Max") else "AP") + str(spec.get("pool_size", 2)))
        elif kind == "Flatten":
            parts.append("F")
        else:
            parts.append(kind)
    return "-".join(parts)
