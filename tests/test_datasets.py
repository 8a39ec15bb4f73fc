"""IDX and CSV loaders on small files the tests write, search order, splits, and the real data."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nnrun import datasets
from nnrun.datasets import IDX_FILES, idx_bytes, load_idx_dataset, read_csv_table, read_idx, train_test_split
from nnrun.errors import DataError


def no_download(name):
    raise OSError("no network")


def make_idx_folder(folder: Path, *, n_train=6, n_test=4, gz=True, seed=0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 255, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 255, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    payloads = {}
    for key, array in arrays.items():
        payload = idx_bytes(array)
        payloads[IDX_FILES[key]] = payload
        if gz:
            (folder / f"{IDX_FILES[key]}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / IDX_FILES[key]).write_bytes(payload)
    return payloads


@pytest.fixture
def fake_checksums(monkeypatch):
    """Point the known checksums at the test's own payloads."""
    sums: dict[str, str] = {}
    monkeypatch.setitem(datasets.CHECKSUMS, "mnist", sums)
    monkeypatch.setitem(datasets.CHECKSUMS, "fashion_mnist", sums)
    return lambda payloads: sums.update({k: hashlib.sha256(v).hexdigest() for k, v in payloads.items()})


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("NNRUN_DATA_DIR", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    return tmp_path


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_roundtrip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    payload = idx_bytes(array)
    path = tmp_path / ("x.gz" if gz else "x")
    path.write_bytes(gzip.compress(payload) if gz else payload)
    out = read_idx(path, hashlib.sha256(payload).hexdigest())
    assert out.shape == (2, 3, 4) and np.array_equal(out, array)


def test_search_order_prefers_dataset_path(isolated, fake_checksums, monkeypatch):
    fake_checksums(make_idx_folder(isolated / "explicit", seed=1))
    env_payloads = make_idx_folder(isolated / "env" / "mnist", seed=1)
    monkeypatch.setenv("NNRUN_DATA_DIR", str(isolated / "env"))
    x, *_, source = load_idx_dataset("mnist", str(isolated / "explicit"), download=no_download)
    assert source == str(isolated / "explicit")
    x, *_, source = load_idx_dataset("mnist", None, download=no_download)
    assert source == str(isolated / "env" / "mnist")
    assert np.array_equal(x, np.frombuffer(env_payloads[IDX_FILES["train_images"]][16:], np.uint8).reshape(-1, 28, 28))


def test_keras_cache_is_searched(isolated, fake_checksums):
    fake_checksums(make_idx_folder(isolated / "keras-home" / "datasets" / "fashion-mnist", gz=False))
    *_, source = load_idx_dataset("fashion_mnist", None, download=no_download)
    assert source.endswith("keras-home/datasets/fashion-mnist")


def test_nothing_found_lists_every_place(isolated, monkeypatch):
    monkeypatch.setenv("NNRUN_DATA_DIR", str(isolated / "data"))
    with pytest.raises(DataError) as err:
        load_idx_dataset("fashion_mnist", None, download=no_download)
    message = str(err.value)
    assert "Fashion-MNIST not found" in message
    for place in (isolated / "data" / "fashion-mnist", isolated / "keras-home" / "datasets" / "fashion-mnist",
                  "/usr/share/datasets/fashion-mnist"):
        assert str(place) in message
    assert "no network" in message


def test_missing_file_in_dataset_path(isolated, fake_checksums):
    folder = isolated / "partial"
    fake_checksums(make_idx_folder(folder))
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_idx_dataset("mnist", str(folder), download=no_download)


def test_download_is_the_last_resort(isolated):
    arrays = (np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8), np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.uint8))
    *out, source = load_idx_dataset("mnist", None, download=lambda name: arrays)
    assert source == "keras download" and out[0].shape == (3, 28, 28)


# ---------------------------------------------------------------- CSV


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


def test_csv_by_name_and_index(tmp_path):
    path = write_csv(tmp_path, "a,b,label\n1,2,0\n3,4,1\n5,6,1\n")
    table = read_csv_table(path, label="label")
    x, y, classes, features = table.x, table.y, table.class_names, table.feature_names
    assert x.tolist() == [[1, 2], [3, 4], [5, 6]] and y.tolist() == [0, 1, 1]
    assert classes == ("0", "1") and features == ("a", "b")
    by_index = read_csv_table(path, label=-1, features=["b"])
    x2, y2 = by_index.x, by_index.y
    assert x2.tolist() == [[2], [4], [6]] and y2.tolist() == [0, 1, 1]


def test_csv_without_header_and_other_delimiter(tmp_path):
    path = write_csv(tmp_path, "1;2;yes\n3;4;no\n")
    table = read_csv_table(path, label=2, header=False, delimiter=";")
    y, classes = table.y, table.class_names
    assert classes == ("no", "yes") and y.tolist() == [1, 0]


def test_csv_unknown_label_column(tmp_path):
    with pytest.raises(DataError, match="label column 'lable' is not in the file; did you mean 'label'?"):
        read_csv_table(write_csv(tmp_path, "a,label\n1,0\n2,1\n"), label="lable")


def test_builtin_diabetes_loads_offline():
    config = SimpleNamespace(name="diabetes", label="Outcome", features=None, header=True, delimiter=",",
                             test_split=0.25, split_seed=87, stratify=False, validation="none", limit=None,
                             task="auto", columns={}, missing="error", max_categories=1000)
    data = datasets.load_dataset(config)
    assert data.x_train.shape == (576, 8) and data.x_test.shape == (192, 8)
    assert data.class_names == ("0", "1")
    assert int(data.y_train.sum() + data.y_test.sum()) == 268


SPLIT_CASES = [(768, 0.25, 87), (100, 0.2, 0), (37, 0.33, 5), (500, 0.1, 123), (11, 0.5, 2)]


@pytest.mark.parametrize("n, test_size, seed", SPLIT_CASES)
def test_split_equals_scikit_learns_train_test_split(n, test_size, seed):
    from sklearn.model_selection import train_test_split as sklearn_split

    expected_train, expected_test = sklearn_split(np.arange(n), test_size=test_size, random_state=seed)
    train, test = train_test_split(n, test_size, seed)
    assert train.tolist() == expected_train.tolist() and test.tolist() == expected_test.tolist()


@pytest.mark.parametrize("n, test_size, seed", SPLIT_CASES)
@pytest.mark.parametrize("classes", [2, 3, 7])
def test_stratified_split_equals_scikit_learns_with_stratify(n, test_size, seed, classes):
    from sklearn.model_selection import train_test_split as sklearn_split

    y = np.random.RandomState(seed + classes).choice(classes, size=n, p=np.linspace(1, 3, classes) / np.linspace(1, 3, classes).sum())
    counts = np.bincount(y, minlength=classes)
    n_test = int(np.ceil(test_size * n))
    if counts.min() < 2 or min(n_test, n - n_test) < classes:
        with pytest.raises(DataError, match="dataset.stratify"):
            train_test_split(n, test_size, seed, y, stratify=True)
        return
    expected_train, expected_test = sklearn_split(np.arange(n), test_size=test_size, random_state=seed, stratify=y)
    train, test = train_test_split(n, test_size, seed, y, stratify=True)
    assert train.tolist() == expected_train.tolist() and test.tolist() == expected_test.tolist()


def test_stratified_split_keeps_class_ratio():
    y = np.array([0] * 80 + [1] * 20)
    train, test = train_test_split(100, 0.25, 0, y, stratify=True)
    assert len(set(train) | set(test)) == 100 and not set(train) & set(test)
    assert y[test].mean() == pytest.approx(0.2)


def test_validation_fraction_takes_the_last_part_like_keras():
    base = datasets.Dataset("t", np.arange(10)[:, None], np.arange(10), np.zeros((2, 1)), np.zeros(2), ("a", "b"))
    out = datasets.make_splits(base, SimpleNamespace(limit=None, validation=0.2))
    assert out.x_val.ravel().tolist() == [8, 9] and len(out.x_train) == 8
    out = datasets.make_splits(base, SimpleNamespace(limit=5, validation="test"))
    assert len(out.x_train) == 5 and out.x_val is out.x_test


def test_real_mnist_and_fashion_verify(data_dir):
    for name, classes in (("mnist", "0"), ("fashion_mnist", "T-shirt/top")):
        config = SimpleNamespace(name=name, path=None, limit=None, validation="none")
        data = datasets.load_dataset(config)
        assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
        assert data.class_names[0] == classes and data.kind == "image"


def test_decoded_cache_is_reused_and_invalidated(isolated, fake_checksums, monkeypatch):
    cache = isolated / "cache"
    monkeypatch.setenv("NNRUN_CACHE_DIR", str(cache))
    folder = isolated / "idx"
    fake_checksums(make_idx_folder(folder, seed=3))
    first = load_idx_dataset("mnist", str(folder), download=no_download)
    assert len(list(cache.iterdir())) == 1
    second = load_idx_dataset("mnist", str(folder), download=no_download)
    assert isinstance(second[0], np.memmap)  # served from the cache
    for a, b in zip(first[:4], second[:4]):
        assert np.array_equal(a, b)
    # A changed source file gets a new key: it is read and verified again.
    payloads = make_idx_folder(folder, seed=4)
    fake_checksums(payloads)
    third = load_idx_dataset("mnist", str(folder), download=no_download)
    assert not np.array_equal(third[0], first[0]) and not isinstance(third[0], np.memmap)


def test_cache_can_be_turned_off(isolated, fake_checksums, monkeypatch):
    monkeypatch.setenv("NNRUN_CACHE_DIR", "off")
    folder = isolated / "idx"
    fake_checksums(make_idx_folder(folder))
    load_idx_dataset("mnist", str(folder), download=no_download)
    again = load_idx_dataset("mnist", str(folder), download=no_download)
    assert not isinstance(again[0], np.memmap)



def test_keras_home_is_where_keras_itself_looks(monkeypatch, tmp_path):
    from nnrun.tf import keras_home

    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert keras_home() == tmp_path / ".keras"
    monkeypatch.setenv("HOME", str(tmp_path / "missing"))  # a home it cannot write to, as in some containers
    assert keras_home() == Path("/tmp/.keras")
    monkeypatch.setenv("KERAS_HOME", "")
    assert keras_home() == Path("/tmp/.keras")  # get_file cannot write to "": it falls back
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "k"))
    assert keras_home() == tmp_path / "k"
