"""Preprocessing: steps fitted on the training split only and applied to every split.

Each step follows scikit-learn's shape: arguments in ``__init__``, learned
state in ``fit`` (attributes ending in ``_``), applied by ``transform``. The
fitted state of the whole pipeline is saved as ``preprocessing.json`` so that
evaluation and prediction apply exactly the same transformation later.

- ``steps.py``: the array steps a config lists (flatten, scale, standardize, one_hot, ...);
- ``columns.py``: ``encode_columns``, a typed CSV's raw cells to numbers;
- ``pipeline.py``: the steps in order, ``preprocessing.json`` out and back in.

Example:
    >>> pipe = Pipeline.from_config(cfg.preprocessing)
    >>> x_train, y_train = pipe.fit_transform(x_train, y_train)
    >>> x_test, y_test = pipe.transform(x_test, y_test)
"""

from nnrun.preprocessing.columns import EncodeColumns
from nnrun.preprocessing.pipeline import Pipeline
from nnrun.preprocessing.steps import (
    REGISTRY,
    AddChannelAxis,
    Cast,
    Flatten,
    NotFittedError,
    OneHot,
    Reshape,
    Scale,
    Standardize,
    Step,
    create_step,
)

__all__ = ["REGISTRY", "AddChannelAxis", "Cast", "EncodeColumns", "Flatten", "NotFittedError", "OneHot", "Pipeline",
           "Reshape", "Scale", "Standardize", "Step", "create_step"]
