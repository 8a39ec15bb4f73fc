"""Shared fixtures: the real datasets folder and small real trainings reused across test modules.

The suite has two layers. Tests that train (in this process, in a subprocess, or through a
fixture that trains) carry ``@pytest.mark.slow``; ``make test-fast`` (``pytest -m "not slow"``)
runs the rest in well under a minute. Forgetting the marker fails the test: every unmarked test
runs with ``NNRUN_FORBID_TRAINING`` set to a file path, and ``nnrun.training`` refuses to fit,
and leaves that file behind, whenever the variable is set (subprocesses inherit it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "datasets"
FORBID_TRAINING = "NNRUN_FORBID_TRAINING"


@pytest.fixture(scope="session", autouse=True)
def dataset_cache(tmp_path_factory):
    """Decoded-dataset cache in a temp folder, so tests never touch the user's ~/.cache."""
    os.environ["NNRUN_CACHE_DIR"] = str(tmp_path_factory.mktemp("nnrun-cache"))


#: Fixtures that train; a test module adds its own to a module-level TRAINING_FIXTURES set.
TRAINING_FIXTURES = {"diabetes_run", "mnist_run", "fashion_run"}


def pytest_collection_modifyitems(config, items):
    """A test that uses a training fixture must be marked slow, even where the fixture is already cached.

    Tests on the real MNIST / Fashion-MNIST files (the ``data_dir`` fixture) get the ``smoke`` marker,
    so that ``pytest -m smoke`` runs exactly those.
    """
    unmarked = []
    for item in items:
        if "data_dir" in item.fixturenames:
            item.add_marker(pytest.mark.smoke)
        trainers = TRAINING_FIXTURES | getattr(item.module, "TRAINING_FIXTURES", set())
        if trainers & set(item.fixturenames) and item.get_closest_marker("slow") is None:
            unmarked.append(item.nodeid)
    if unmarked:
        raise pytest.UsageError("these tests use a fixture that trains but are not marked @pytest.mark.slow: "
                                + ", ".join(unmarked))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Unmarked tests run with training switched off, from before their fixtures are made."""
    if item.get_closest_marker("slow") is None:
        item.trained_marker = Path(tempfile.mkdtemp(prefix="nnrun-fast-")) / "trained"
        os.environ[FORBID_TRAINING] = str(item.trained_marker)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield
    os.environ.pop(FORBID_TRAINING, None)
    if marker := getattr(item, "trained_marker", None):  # its setup and call were reported: one folder per test
        shutil.rmtree(marker.parent, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """An unmarked test (or a fixture it uses) that tried to train fails, naming the marker it lacks."""
    outcome = yield
    marker = getattr(item, "trained_marker", None)
    if call.when == "teardown" or marker is None or not marker.exists() or getattr(item, "trained_reported", False):
        return
    item.trained_reported = True
    report = outcome.get_result()
    report.outcome = "failed"
    report.longrepr = (f"{item.nodeid} trains a model ({marker.read_text().strip()}) but is not marked "
                       "@pytest.mark.slow; add the marker so that `make test-fast` stays fast.")


def real_data_dir() -> Path | None:
    """The folder with mnist/ and fashion-mnist/: $NNRUN_DATA_DIR, else ../shared/datasets."""
    env = os.environ.get("NNRUN_DATA_DIR")
    for candidate in ([Path(env)] if env else []) + [SHARED_DATA]:
        if (candidate / "mnist").is_dir():
            return candidate.resolve()
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("the real datasets are not here: set NNRUN_DATA_DIR to a folder with mnist/ and fashion-mnist/")
    os.environ["NNRUN_DATA_DIR"] = str(found)
    return found


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


def train_config(config_path: Path | str, runs_dir: Path, sets: list[str] = ()):
    """Train a config for real (in this process) and return the TrainResult."""
    from nnrun.config import load_config
    from nnrun.console import Reporter, make_console
    from nnrun.training import train

    config = load_config(config_path, [*sets, f"run.runs_dir={runs_dir}"])
    return train(config, reporter=Reporter(make_console(quiet=True)), argv=["pytest"], config_path=str(config_path))


@pytest.fixture(scope="session")
def diabetes_run(runs_root) -> Path:
    """A completed diabetes run: 3 epochs, batch 32, 20% validation (a few seconds)."""
    result = train_config(
        ROOT / "configs" / "diabetes_mlp.yaml",
        runs_root / "diabetes",
        ["training.epochs=3", "training.batch_size=32", "dataset.validation=0.2", "run.name=tiny-diabetes"],
    )
    return result.run_dir


@pytest.fixture(scope="session")
def mnist_run(runs_root, data_dir) -> Path:
    """A completed MNIST run on the real data: 2,000 training images, 2 epochs, test as validation."""
    result = train_config(
        ROOT / "configs" / "mnist_dense32.yaml",
        runs_root / "mnist",
        ["training.epochs=2", "dataset.limit=2000", "run.name=tiny-mnist"],
    )
    return result.run_dir


@pytest.fixture(scope="session")
def fashion_run(runs_root, data_dir) -> Path:
    """A completed Fashion-MNIST CNN run on the real data: 1,000 training images, 1 epoch."""
    result = train_config(
        ROOT / "configs" / "fashion_cnn.yaml",
        runs_root / "fashion",
        ["training.epochs=1", "dataset.limit=1000", "run.name=tiny-fashion"],
    )
    return result.run_dir


def make_image_folder(root: Path, *, shapes: tuple[str, ...] = ("circle", "square", "triangle"), per_class: int = 10,
                      sizes: tuple[int, int] = (12, 24), formats: tuple[str, ...] = ("png", "jpg", "bmp", "gif"),
                      seed: int = 0) -> Path:
    """A tiny RGB image folder (one sub-folder per class, images of random sizes and formats), in milliseconds."""
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_images import write_shapes

    write_shapes(root, per_class, seed=seed, sizes=sizes, formats=formats, shapes=shapes)
    return root


def dead_pid() -> int:
    """The pid of a process that has finished (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
