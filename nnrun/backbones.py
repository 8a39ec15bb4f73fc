"""Pretrained backbones: any ``keras.applications`` model as one layer of the config's list.

``{type: MobileNetV2, weights: imagenet, include_top: false, trainable: false}`` builds
``keras.applications.MobileNetV2`` on the previous layer's output shape and adds it to the
Sequential model. ``weights`` is ``imagenet``, a path to a weights file, or ``null`` (random
initial weights, nothing to download). ``trainable: false`` freezes it (transfer learning).

With weights (ImageNet's or a file), the family's own ``keras.applications.<family>.preprocess_input``
runs first, inside the model, as a ``BackbonePreprocess`` layer: it expects pixels 0-255, so
the layer first undoes the config's ``scale`` steps (``scale: 1/255`` then ``preprocess_input``
gives exactly what the backbone was trained on). With ``weights: null`` nothing is added: the
config's own preprocessing is what the network learns from.

ImageNet weights come from the Keras cache only (``$KERAS_HOME/models`` or ``~/.keras/models``).
When the file is not there, the error names the file, the folder and the address to fetch it
from, at once: nnrun never starts a download, so an offline machine never hangs.
"""

from __future__ import annotations

import importlib
import inspect
import os
from functools import cache
from pathlib import Path
from typing import Any

from nnrun.errors import ConfigError, first_line
from nnrun.tf import keras_home


@cache
def backbone_names() -> dict[str, Any]:
    """``keras.applications`` model functions by name (MobileNetV2, ResNet50, EfficientNetB0, ...)."""
    from nnrun.tf import import_keras

    keras = import_keras()
    return {n: f for n, f in vars(keras.applications).items() if callable(f) and n[:1].isupper()}


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded weights: ``$KERAS_HOME/models``, else ``~/.keras/models``."""
    return keras_home() / "models"


class WeightsNotCached(Exception):
    def __init__(self, fname: str, origin: str):
        super().__init__(fname)
        self.fname, self.origin = fname, origin


def build_backbone(name: str, kwargs: dict[str, Any], input_shape: tuple[int, ...], index: int,
                   input_scale: float = 1.0) -> list[Any]:
    """The layers for one backbone item: its preprocessing (when it has weights) and the application model.

    Args:
        name: a ``keras.applications`` name.
        kwargs: the item's other keys (``weights``, ``include_top``, ``trainable``, ``pooling``, ...).
        input_shape: the previous layer's output shape for one sample, e.g. ``(96, 96, 3)``.
        index: the item's position, for errors (``model.layers[2]``).
        input_scale: the product of the config's ``scale`` factors, undone before ``preprocess_input``.

    Raises:
        ConfigError: an unknown argument, a missing weights file, ImageNet weights not in the cache, or
            an input Keras refuses (too small, not 3 channels for ImageNet weights).
    """
    from keras.src.utils import file_utils

    key = f"model.layers[{index}]"
    function = backbone_names()[name]
    kwargs = dict(kwargs)
    trainable = kwargs.pop("trainable", True)
    if not isinstance(trainable, bool):
        raise ConfigError(f"{key}.trainable must be true or false, got {trainable!r}.")
    accepted = set(inspect.signature(function).parameters) - {"input_shape", "input_tensor"}
    for arg in kwargs:
        if arg not in accepted:
            from nnrun.errors import did_you_mean

            raise ConfigError(f"{key}: {name} has no argument '{arg}'{did_you_mean(arg, sorted(accepted))} "
                              f"Valid arguments: {', '.join(sorted(accepted | {'trainable'}))}.")
    weights = kwargs.setdefault("weights", "imagenet")
    kwargs.setdefault("include_top", False)
    if weights not in (None, "imagenet") and not Path(str(weights)).expanduser().is_file():
        raise ConfigError(f"{key}.weights: file '{weights}' not found; expected 'imagenet', null, or the path of a "
                          "weights file (.weights.h5 or .h5) for this model.")
    original = file_utils.get_file

    def cached_only(fname=None, origin=None, *args, **more):
        path = keras_cache_dir() / (fname or os.path.basename(origin or ""))
        if not path.is_file():
            raise WeightsNotCached(path.name, origin or "")
        return original(fname, origin, *args, cache_dir=str(keras_cache_dir().parent), **more)

    file_utils.get_file = cached_only
    try:
        model = function(input_shape=tuple(input_shape), **kwargs)
    except WeightsNotCached as exc:
        raise ConfigError(
            f"{key} ({name}, weights: imagenet): {exc.fname} is not in the Keras cache {keras_cache_dir()}/ and "
            f"nnrun does not download; put the file there (from {exc.origin}), or use weights: null."
        ) from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{key} ({name}) on input of shape {tuple(input_shape)}: {first_line(exc)}") from None
    finally:
        file_utils.get_file = original
    model.trainable = trainable
    if weights is None:
        return [model]
    return [preprocess_layer()(family=function.__module__.rsplit(".", 1)[-1], input_scale=input_scale,
                               name=f"{name.lower()}_preprocess"), model]


@cache
def preprocess_layer() -> type:
    """The ``BackbonePreprocess`` layer class, registered with Keras so that saved models load again."""
    from nnrun.tf import import_keras

    keras = import_keras()

    @keras.saving.register_keras_serializable(package="nnrun")
    class BackbonePreprocess(keras.layers.Layer):
        """Undo the config's scaling, then apply ``keras.applications.<family>.preprocess_input``."""

        def __init__(self, family: str, input_scale: float = 1.0, **kwargs):
            super().__init__(**kwargs)
            self.family, self.input_scale = family, float(input_scale)
            self._preprocess = importlib.import_module(f"keras.applications.{family}").preprocess_input

        def call(self, inputs):
            x = keras.ops.cast(inputs, "float32")
            if self.input_scale != 1.0:
                x = x / self.input_scale
            return self._preprocess(x)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "family": self.family, "input_scale": self.input_scale}

    return BackbonePreprocess


def input_scale(config: Any) -> float:
    """The product of the config's ``scale`` factors, which ``BackbonePreprocess`` undoes."""
    factor = 1.0
    for step in config.preprocessing:
        if step.type == "scale":
            factor *= step.factor
    return factor


def register() -> None:
    """Make the layers of this module known to ``keras.models.load_model``."""
    preprocess_layer()
