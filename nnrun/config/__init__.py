"""The run config: YAML plus ``--set`` overrides, validated into a frozen RunConfig.

``schema`` holds the pydantic models and every check that needs only the text;
``load`` reads the YAML, applies overrides, parses key paths and words the
errors. Nothing here imports TensorFlow: Keras names are checked later, by
``nnrun.keras_names``.

Example:
    >>> cfg = load_config("configs/diabetes_mlp.yaml", ["training.epochs=3"])
    >>> cfg.training.epochs
    3
"""

from nnrun.config.load import apply_override, dotted, load_config, parse_key, parse_override, validate_config
from nnrun.config.schema import RunConfig

__all__ = ["RunConfig", "apply_override", "dotted", "load_config", "parse_key", "parse_override", "validate_config"]
