"""The pipeline: steps in order, fitted on the training split, applied to every split, saved and restored."""

from __future__ import annotations

from typing import Any

import numpy as np

from nnrun.config.schema import as_typed
from nnrun.errors import DataError, DataUnavailable
from nnrun.preprocessing.columns import EncodeColumns
from nnrun.preprocessing.steps import Cast, NotFittedError, Scale, Standardize, Step, create_step


class Pipeline:
    """An ordered list of steps. Feature steps see ``x``; label steps see ``y``."""

    def __init__(self, steps: list[Step]):
        self.steps = steps
        self.fitted_ = False

    @classmethod
    def from_config(cls, specs: list[Any]) -> "Pipeline":
        """Build from ``RunConfig.preprocessing`` (pydantic models or plain dicts)."""
        dicts = [
            s.model_dump() if hasattr(s, "model_dump") else dict(as_typed(s))
            for s in specs
        ]
        return cls([create_step(d) for d in dicts])

    def fit_transform(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fit every step on the training split, in order, and return the transformed split."""
        numeric: list[int] | None = None
        for step in self.steps:
            if isinstance(step, Standardize) and numeric is not None:
                step.columns_ = numeric
            if step.on_labels:
                y = step.fit(x, y).transform(y)
            else:
                check_room(step, x)
                x = step.fit(x, y).transform(x)
            if isinstance(step, EncodeColumns):
                numeric = step.numeric_columns_
        self.fitted_ = True
        return x, y

    def transform(self, x: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Apply the fitted steps; ``y=None`` transforms features only (prediction)."""
        if not self.fitted_:
            raise NotFittedError("the preprocessing pipeline must be fitted before transform; call fit_transform.")
        for step in self.steps:
            if step.on_labels:
                if y is not None:
                    y = step.transform(y)
            else:
                check_room(step, x)
                x = step.transform(x)
        return x, y

    def shapes(self, x: np.ndarray, y: np.ndarray) -> list[tuple[str, tuple, tuple]]:
        """``(step, x shape, y shape)`` after each step, on a small sample, for ``nnrun check``."""
        rows = [("input", x.shape, y.shape)]
        for step in self.steps:
            if step.on_labels:
                y = step.transform(y)
            else:
                x = step.transform(x)
            rows.append((step.type, x.shape, y.shape))
        return rows

    def notes(self) -> list[str]:
        """Warnings about the last transform: categories never seen in training (the out-of-vocabulary slot)."""
        return [
            f"column '{name}': {count} value(s) never seen in training, encoded as 'other' (the out-of-vocabulary slot)"
            for step in self.steps if isinstance(step, EncodeColumns) for name, count in step.unseen_.items()
        ]

    @property
    def label_encoding(self) -> str:
        """'one_hot' if a step one-hot encodes the labels, else 'integer'."""
        return "one_hot" if any(s.on_labels for s in self.steps) else "integer"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": 1,
            "steps": [{"type": s.type, "params": s.params(), "state": s.state()} for s in self.steps],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Pipeline":
        """Rebuild a fitted pipeline from ``preprocessing.json``."""
        try:
            steps = []
            for item in data["steps"]:
                step = create_step({"type": item["type"], **item.get("params", {})})
                if step.needs_fit:
                    step.load_state(item["state"])
                steps.append(step)
        except (KeyError, TypeError) as exc:
            raise DataError(f"preprocessing.json is malformed ({exc}); the run directory is damaged.") from None
        pipe = cls(steps)
        pipe.fitted_ = True
        return pipe


def check_room(step: Step, x: np.ndarray) -> None:
    """DataError before ``step`` copies decoded uint8 images into numbers the memory cannot also hold."""
    from nnrun.datasets.images import MEMORY_SHARE, available_memory

    if x.dtype != np.uint8 or not isinstance(step, (Scale, Standardize, Cast)):
        return
    dtype = np.dtype(step.dtype if isinstance(step, Cast) else np.float32)
    need, available = x.size * dtype.itemsize, available_memory()
    if available and need > MEMORY_SHARE * available:
        raise DataUnavailable(f"preprocessing step {step.type}: {len(x):,} images as {dtype} take {need / 2**30:.1f} GiB "
                        f"beside the decoded ones, more than half of the {available / 2**30:.1f} GiB available; "
                        "lower dataset.image_size or set dataset.limit.")
