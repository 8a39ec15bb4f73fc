"""A typed CSV's raw cells to numbers: the ``encode_columns`` step.

nnrun puts it first in the pipeline of a typed CSV (``datasets.table``); its state (the
training split's values and fill values) is saved in ``preprocessing.json`` like any step's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nnrun.datasets.csv import is_number
from nnrun.datasets.table import MISSING, category
from nnrun.errors import DataError
from nnrun.preprocessing.steps import Step


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
                if not cells:
                    raise DataError(f"column '{column['name']}': every cell of the training split is missing, so "
                                    f"there is no median to fill with. Set dataset.columns.{column['name']}: ignore.")
                self.values_.append([])
                self.fill_.append(float(np.median(self._numbers(cells, column["name"]))))
            else:
                texts = [category(c) for c in cells]
                if not texts:
                    raise DataError(f"column '{column['name']}': every cell of the training split is missing, so there "
                                    "is nothing to learn its values from. Set dataset.columns."
                                    f"{column['name']}: ignore.")
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
            codes = np.array([index.get(category(c), -1) for c in cells])
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
            at, bad = next((i, c) for i, c in enumerate(cells) if not is_number(c))
            error = DataError(f"column '{name}' is numeric, got {bad!r}. Give a number.")
            error.sample = at  # which sample: predict names its file and line
            raise error from None

    def state(self) -> dict[str, Any]:
        return {} if self.values_ is None else {"values_": self.values_, "fill_": self.fill_}

    def load_state(self, state: dict[str, Any]) -> None:
        self.values_, self.fill_ = state["values_"], state["fill_"]


def _is_missing(cell: Any) -> bool:
    return cell is None or (isinstance(cell, float) and np.isnan(cell)) or str(cell).strip().lower() in MISSING
