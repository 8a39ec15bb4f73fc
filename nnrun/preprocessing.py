"""Preprocessing steps, fitted on the training split only and applied to every split.

Each step follows scikit-learn's shape: arguments in ``__init__``, learned
state in ``fit`` (attributes ending in ``_``), applied by ``transform``. The
fitted state of the whole pipeline is saved as ``preprocessing.json`` so that
evaluation and prediction apply exactly the same transformation later.

Example:
    >>> pipe = Pipeline.from_config(cfg.preprocessing)
    >>> x_train, y_train = pipe.fit_transform(x_train, y_train)
    >>> x_test, y_test = pipe.transform(x_test, y_test)
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from nnrun.config.schema import as_typed
from nnrun.errors import ConfigError, DataError

REGISTRY: dict[str, type["Step"]] = {}


class NotFittedError(DataError):
    pass


class Step:
    """One preprocessing step. Subclasses set ``type`` and override what they need."""

    type: ClassVar[str]
    needs_fit: ClassVar[bool] = False
    #: transforms labels rather than features
    on_labels: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY[cls.type] = cls

    def params(self) -> dict[str, Any]:
        return {}

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "Step":
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x

    def state(self) -> dict[str, Any]:
        """Fitted attributes, as JSON-ready values."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass

    def _check_fitted(self) -> None:
        if not self.state():
            raise NotFittedError(f"the '{self.type}' step must be fitted before transform; call fit first.")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class Flatten(Step):
    """Flatten every sample to one axis: (n, 28, 28) -> (n, 784)."""

    type = "flatten"

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), -1)


class Reshape(Step):
    """Reshape every sample to ``target_shape`` (one -1 allowed)."""

    type = "reshape"

    def __init__(self, target_shape: list[int]):
        self.target_shape = list(target_shape)

    def params(self) -> dict[str, Any]:
        return {"target_shape": self.target_shape}

    def transform(self, x: np.ndarray) -> np.ndarray:
        try:
            return x.reshape(len(x), *self.target_shape)
        except ValueError:
            raise DataError(
                f"preprocessing reshape: cannot reshape samples of shape {x.shape[1:]} "
                f"to {tuple(self.target_shape)}; the sizes must match ({int(np.prod(x.shape[1:]))} values)."
            ) from None


class Scale(Step):
    """Multiply by ``factor`` (1/255 maps pixels to [0, 1]); the result is float32.

    A factor of 1/n divides by n instead, as the tutorials' ``x / 255`` does:
    float32(1/255) is not exactly 1/255, and multiplying by it rounds 126 of
    the 256 pixel values differently from the division in the last bit.
    """

    type = "scale"

    def __init__(self, factor: float):
        self.factor = float(factor)

    def params(self) -> dict[str, Any]:
        return {"factor": self.factor}

    def transform(self, x: np.ndarray) -> np.ndarray:
        # One ufunc with a float32 result casts chunk by chunk: one new array
        # instead of astype's plus the product's (MNIST: 188 MB and ~0.15 s less).
        if self.factor != 0:
            divisor = 1.0 / self.factor
            if abs(divisor) > 1 and abs(divisor - round(divisor)) < 1e-9 * abs(divisor):
                return np.divide(x, np.float32(round(divisor)), dtype=np.float32)
        return np.multiply(x, np.float32(self.factor), dtype=np.float32)


class Standardize(Step):
    """Subtract the training mean and divide by the training std, per feature.

    After ``encode_columns`` (a typed CSV) only the numeric columns are standardized:
    ``columns_`` holds their indices, set by the pipeline before ``fit``.
    """

    type = "standardize"
    needs_fit = True

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None
        self.columns_: list[int] | None = None

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "Standardize":
        x = np.asarray(x, dtype=np.float64)
        if self.columns_ is not None:
            x = x[:, self.columns_]
        self.mean_ = x.mean(axis=0)
        std = x.std(axis=0)
        self.std_ = np.where(std > 0, std, 1.0)  # a constant feature stays put
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        self._check_fitted()
        if self.columns_ is not None:
            x = np.array(x, dtype=np.float32)
            x[:, self.columns_] = (x[:, self.columns_] - self.mean_) / self.std_
            return x
        if x.shape[1:] != self.mean_.shape:
            raise DataError(
                f"preprocessing standardize was fitted on samples of shape {self.mean_.shape}, "
                f"got {x.shape[1:]}."
            )
        return ((x - self.mean_) / self.std_).astype(np.float32)

    def state(self) -> dict[str, Any]:
        if self.mean_ is None:
            return {}
        state = {"mean_": self.mean_.tolist(), "std_": self.std_.tolist()}
        return state if self.columns_ is None else {**state, "columns_": self.columns_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.mean_ = np.asarray(state["mean_"], dtype=np.float64)
        self.std_ = np.asarray(state["std_"], dtype=np.float64)
        self.columns_ = state.get("columns_")


class EncodeColumns(Step):
    """A typed CSV's raw cells to numbers, with the state learned on the training split.

    ``numeric`` columns are parsed (missing cells: the training median), ``binary`` ones
    become 0 / 1 in sorted order, ``categorical`` ones one-hot over the training values plus
    one out-of-vocabulary slot (missing cells: the most frequent value). nnrun inserts this
    step first for a typed CSV; ``unseen_`` counts the unseen categories of the last transform.
    """

    type = "encode_columns"
    needs_fit = True

    def __init__(self, columns: list[dict[str, Any]], impute: bool = False):
        self.columns = [{k: c[k] for k in ("name", "type", "values") if k in c} for c in columns]
        self.impute = impute
        self.values_: list[list[str]] | None = None  # binary / categorical: the training values, sorted
        self.fill_: list[Any] | None = None  # what a missing cell becomes
        self.unseen_: dict[str, int] = {}

    def params(self) -> dict[str, Any]:
        return {"columns": self.columns, "impute": self.impute}

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "EncodeColumns":
        self.values_, self.fill_ = [], []
        for j, column in enumerate(self.columns):
            cells = [c for c in x[:, j] if not _is_missing(c)]
            if column["type"] == "numeric":
                self.values_.append([])
                self.fill_.append(float(np.median(self._numbers(cells, column["name"]))))
            else:
                texts = [str(c) for c in cells]
                distinct, counts = np.unique(texts, return_counts=True)
                self.values_.append(column.get("values") or [str(v) for v in distinct])
                self.fill_.append(str(distinct[np.argmax(counts)]) if len(distinct) else self.values_[-1][0])
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        self._check_fitted()
        x = np.asarray(x, dtype=object).reshape(len(x), -1)
        if x.shape[1] != len(self.columns):
            raise DataError(f"preprocessing encode_columns expects {len(self.columns)} columns "
                            f"({', '.join(c['name'] for c in self.columns)}), got {x.shape[1]}.")
        blocks, self.unseen_ = [], {}
        for j, column in enumerate(self.columns):
            name, cells = column["name"], list(x[:, j])
            missing = [_is_missing(c) for c in cells]
            if any(missing) and not self.impute:
                raise DataError(f"column '{name}': missing value in sample {missing.index(True) + 1}; the run was trained "
                                "with dataset.missing error or drop, so it cannot fill it. Give every cell a value.")
            cells = [self.fill_[j] if m else c for c, m in zip(cells, missing)]
            if column["type"] == "numeric":
                blocks.append(self._numbers(cells, name).reshape(-1, 1))
                continue
            index = {v: i for i, v in enumerate(self.values_[j])}
            codes = np.array([index.get(str(c), -1) for c in cells])
            if column["type"] == "binary":
                if (codes < 0).any():
                    bad = cells[int(np.argmax(codes < 0))]
                    raise DataError(f"column '{name}' had two values in training ({', '.join(self.values_[j])}), "
                                    f"got {bad!r}. Use one of those.")
                blocks.append(codes.reshape(-1, 1).astype(np.float64))
                continue
            if (codes < 0).any():
                self.unseen_[name] = int((codes < 0).sum())
            onehot = np.zeros((len(cells), len(index) + 1))
            onehot[np.arange(len(cells)), np.where(codes < 0, len(index), codes)] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks).astype(np.float32) if blocks else np.zeros((len(x), 0), np.float32)

    @property
    def numeric_columns_(self) -> list[int]:
        """Indices, in the output, of the numeric columns (``standardize`` acts on these only)."""
        out, at = [], 0
        for j, column in enumerate(self.columns):
            if column["type"] == "numeric":
                out.append(at)
            at += len(self.values_[j]) + 1 if column["type"] == "categorical" else 1
        return out

    @staticmethod
    def _numbers(cells: list[Any], name: str) -> np.ndarray:
        try:
            return np.array([float(c) for c in cells], dtype=np.float64)
        except (TypeError, ValueError):
            bad = next(c for c in cells if not _is_number(c))
            raise DataError(f"column '{name}' is numeric, got {bad!r}. Give a number.") from None

    def state(self) -> dict[str, Any]:
        return {} if self.values_ is None else {"values_": self.values_, "fill_": self.fill_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.values_, self.fill_ = state["values_"], state["fill_"]


def _is_missing(cell: Any) -> bool:
    from nnrun.datasets.table import MISSING

    return cell is None or (isinstance(cell, float) and np.isnan(cell)) or str(cell).strip().lower() in MISSING


def _is_number(cell: Any) -> bool:
    try:
        float(cell)
    except (TypeError, ValueError):
        return False
    return True


class OneHot(Step):
    """Turn integer labels into one-hot rows (Keras's ``to_categorical``)."""

    type = "one_hot"
    needs_fit = True
    on_labels = True

    def __init__(self, num_classes: int | None = None):
        self.num_classes = num_classes
        self.num_classes_: int | None = None

    def params(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes}

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> "OneHot":
        self.num_classes_ = self.num_classes or int(np.max(y)) + 1
        return self

    def transform(self, y: np.ndarray) -> np.ndarray:
        self._check_fitted()
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if len(y) and (y.min() < 0 or y.max() >= self.num_classes_):
            raise DataError(
                f"preprocessing one_hot: label {int(y.max())} is outside 0..{self.num_classes_ - 1}; "
                "set num_classes to the number of classes."
            )
        return np.eye(self.num_classes_, dtype=np.float32)[y]

    def state(self) -> dict[str, Any]:
        return {} if self.num_classes_ is None else {"num_classes_": self.num_classes_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.num_classes_ = int(state["num_classes_"])


class AddChannelAxis(Step):
    """Append a channel axis: (n, 28, 28) -> (n, 28, 28, 1), as Conv2D expects."""

    type = "add_channel_axis"

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x[..., np.newaxis]


class Cast(Step):
    """Cast to ``dtype``."""

    type = "cast"

    def __init__(self, dtype: str = "float32"):
        self.dtype = dtype

    def params(self) -> dict[str, Any]:
        return {"dtype": self.dtype}

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x.astype(self.dtype)


def create_step(spec: dict[str, Any]) -> Step:
    spec = dict(spec)
    kind = spec.pop("type")
    try:
        cls = REGISTRY[kind]
    except KeyError:
        raise ConfigError(f"unknown preprocessing step '{kind}'; expected one of {', '.join(REGISTRY)}.") from None
    return cls(**spec)


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
