"""Splits: train/test the way scikit-learn draws them, and validation the way Keras takes it.

``train_test_split`` draws exactly the indices of scikit-learn's
``train_test_split(test_size=f, random_state=seed)``, with or without ``stratify=y``,
so that results match the tutorials that use it; scikit-learn itself is not needed
at run time (the tests compare against it). ``validation_split`` takes the last
fraction of the training samples, before any shuffling, as Keras's
``validation_split`` does.
"""

from __future__ import annotations

import numpy as np

from nnrun.errors import DataError


def train_test_split(
    n: int, test_fraction: float, seed: int, y: np.ndarray | None = None, stratify: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of train and test, as ``sklearn.model_selection.train_test_split`` returns them.

    Raises:
        DataError: a split would be empty, or (stratified) a class is too small to be in both.
    """
    n_test = int(np.ceil(test_fraction * n))
    n_train = n - n_test
    if n_train < 1 or n_test < 1:
        raise DataError(f"dataset.test_split {test_fraction} leaves an empty split of {n} rows.")
    rng = np.random.RandomState(seed)
    if not stratify:  # ShuffleSplit
        permutation = rng.permutation(n)
        return permutation[n_test : n_test + n_train], permutation[:n_test]
    return _stratified(np.asarray(y), n_train, n_test, rng)


def _stratified(y: np.ndarray, n_train: int, n_test: int, rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """StratifiedShuffleSplit's one split: per-class counts by ``_approximate_mode``, the same draws in order."""
    classes, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    if class_counts.min() < 2:
        small = ", ".join(str(c) for c in classes[class_counts < 2])
        raise DataError(f"dataset.stratify: class {small} has a single sample; it cannot be in both train and test. "
                        "Set dataset.stratify: false or add samples.")
    if min(n_train, n_test) < len(classes):
        raise DataError(f"dataset.stratify: a split of {min(n_train, n_test)} rows cannot hold all {len(classes)} "
                        "classes; change dataset.test_split or set dataset.stratify: false.")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        indices = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(indices[: n_i[i]])
        test.extend(indices[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of each class to draw: floor of the proportional share, the rest by largest remainder.

    Ties in the remainder are broken at random, as scikit-learn does, so the draws match its own.
    """
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (candidates,) = np.where(remainder == value)
            take = min(len(candidates), need)
            floored[rng.choice(candidates, size=take, replace=False)] += 1
            need -= take
            if need == 0:
                break
    return floored.astype(int)


def validation_split(n: int, fraction: float) -> int:
    """Where Keras's ``validation_split`` cuts ``n`` samples: train is ``[:at]``, validation ``[at:]``."""
    at = int(np.floor(n * (1.0 - fraction)))
    if at < 1 or at >= n:
        raise DataError(
            f"dataset.validation {fraction} of {n} training samples leaves an empty split; "
            "use a larger fraction or 'none'."
        )
    return at
