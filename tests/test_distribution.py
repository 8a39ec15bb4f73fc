"""distribution: (none, mirrored, multi_worker rejected), mixed precision and TensorBoard, with real trainings.

MirroredStrategy is tested without GPUs on two logical CPU devices. Logical
devices must be configured before TensorFlow initialises, so that test runs in
a fresh Python process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nnrun.cli import app
from nnrun.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DIABETES = ROOT / "configs" / "diabetes_sweep.yaml"
ONE_EPOCH = ["--set", "training.epochs=1"]


def train_cli(tmp_path: Path, *sets: str):
    args = ["train", str(DIABETES), "--quiet", "--runs-dir", str(tmp_path)]
    for item in sets:
        args += ["--set", item]
    return CliRunner().invoke(app, args)


# -------------------------------------------------------------- rejected


def test_multi_worker_is_rejected_naming_the_upstream_bug_and_ray(tmp_path):
    result = train_cli(tmp_path, "distribution.strategy=multi_worker", "training.epochs=1")
    assert result.exit_code == 2
    message = result.output
    assert "'multi_worker' is not supported" in message
    assert "keras-team/keras#20585" in message and "tensorflow/tensorflow#72388" in message
    assert "nnrun sweep --executor ray" in message and "strategy: mirrored" in message
    assert "Traceback" not in message
    assert not any(tmp_path.iterdir())  # rejected before any run directory exists


def test_devices_need_the_mirrored_strategy(tmp_path):
    result = train_cli(tmp_path, "distribution.devices=[/cpu:0]", "training.epochs=1")
    assert result.exit_code == 2 and "set strategy: mirrored" in result.output


def test_a_device_this_machine_lacks_is_named(tmp_path):
    result = train_cli(tmp_path, "distribution.strategy=mirrored", "distribution.devices=[/cpu:0,/gpu:7]", "training.epochs=1")
    assert result.exit_code == 2
    assert "distribution.devices[1]: no device '/gpu:7' on this machine; it has /device:CPU:0" in result.output
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "setting, message",
    [("training.steps_per_execution=8", "training.steps_per_execution is 8 but distribution.strategy is mirrored"),
     ("training.jit_compile=true", "training.jit_compile is true but distribution.strategy is mirrored")],
)
def test_mirrored_rejects_what_fails_under_it(tmp_path, setting, message):
    result = train_cli(tmp_path, "distribution.strategy=mirrored", setting, "training.epochs=1")
    assert result.exit_code == 2 and message in result.output and "Set it to" in result.output


# -------------------------------------------------------------- mirrored


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from nnrun.config import load_config
    from nnrun.console import Reporter, make_console
    from nnrun.training import prepare, train

    config_path, runs_dir = sys.argv[1], sys.argv[2]
    out = {}
    for strategy, devices in (("none", "null"), ("mirrored", "[/cpu:0,/cpu:1]")):
        config = load_config(config_path, ["training.epochs=2", "dataset.limit=2000", "training.verbose=0",
                                           f"distribution.strategy={strategy}", f"distribution.devices={devices}",
                                           f"run.name={strategy}", f"run.runs_dir={runs_dir}"])
        prepared = prepare(config)
        replicas = prepared.model.distribute_strategy.num_replicas_in_sync
        result = train(config, reporter=Reporter(make_console(quiet=True)), argv=["test"], prepared=prepared)
        out[strategy] = {"replicas": replicas, "test": result.metrics["test"], "run_dir": str(result.run_dir),
                         "strategy": type(prepared.model.distribute_strategy).__name__,
                         "steps_per_execution": prepared.steps_per_execution, "seconds": result.duration_s}
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_none_within_half_a_point(data_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(ROOT / "configs" / "mnist_dense32.yaml"), str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["mirrored"]["strategy"] == "MirroredStrategy" and out["mirrored"]["replicas"] == 2
    assert out["none"]["replicas"] == 1
    assert out["mirrored"]["steps_per_execution"] == 1  # 'auto' under a strategy (MIRRORED_LIMITS)
    print(json.dumps(out, indent=1))  # the measured accuracies and times, shown with pytest -s
    none, mirrored = out["none"]["test"]["accuracy"], out["mirrored"]["test"]["accuracy"]
    assert none > 0.5  # both really learned (10 classes: chance is 0.1)
    assert abs(none - mirrored) <= 0.005, (none, mirrored)
    # The run directory records the strategy in its config.
    saved = load_config(Path(out["mirrored"]["run_dir"]) / "config.yaml")
    assert saved.distribution.strategy == "mirrored" and saved.distribution.devices == ["/cpu:0", "/cpu:1"]


# -------------------------------------------------------- mixed precision


@pytest.mark.slow
def test_mixed_precision_on_cpu_warns_and_keeps_float32(tmp_path):
    result = train_cli(tmp_path, "training.mixed_precision=true", "training.epochs=1")
    assert result.exit_code == 0, result.output
    assert "Warning: training.mixed_precision: no GPU found" in result.stderr and "keeps float32" in result.stderr
    from nnrun.tf import import_keras

    model = import_keras().models.load_model(Path(result.stdout.strip().splitlines()[-1]) / "model.keras")
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}


@pytest.mark.slow
def test_mixed_precision_with_a_gpu_uses_float16_and_keeps_float32_outputs(tmp_path, monkeypatch):
    """GPU detection is simulated (this machine has none); the mixed_float16 model really trains, on the CPU."""
    import numpy as np

    import nnrun.distribution as distribution
    from nnrun.console import Reporter, make_console
    from nnrun.tf import import_keras
    from nnrun.training import train

    keras = import_keras()
    monkeypatch.setattr(distribution, "gpu_count", lambda: 1)
    config = load_config(DIABETES, ["training.mixed_precision=true", "training.epochs=2", f"run.runs_dir={tmp_path}"])
    result = train(config, reporter=Reporter(make_console(quiet=True)), argv=["test"])
    assert keras.mixed_precision.global_policy().name == "float32"  # restored for the next model in this process
    model = keras.models.load_model(result.run_dir / "model.keras")
    assert [layer.dtype_policy.name for layer in model.layers] == ["mixed_float16", "mixed_float16", "float32"]
    assert model.layers[0].compute_dtype == "float16" and model.layers[0].kernel.dtype == "float32"
    assert model(np.zeros((2, 8), "float32")).dtype == "float32"
    assert np.isfinite(result.metrics["test"]["loss"]) and result.metrics["test"]["accuracy"] > 0.5


@pytest.mark.slow
def test_bfloat16_trains_on_the_cpu_with_float32_outputs(tmp_path):
    import numpy as np

    from nnrun.console import Reporter, make_console
    from nnrun.tf import import_keras
    from nnrun.training import train

    keras = import_keras()
    sets = ["training.precision=bfloat16", "training.epochs=15", "training.batch_size=32", "preprocessing=[standardize]",
            f"run.runs_dir={tmp_path}"]
    result = train(load_config(DIABETES, sets), reporter=Reporter(make_console(quiet=True)), argv=["test"])
    assert keras.mixed_precision.global_policy().name == "float32"  # restored for the next model in this process
    assert json.loads((result.run_dir / "run.json").read_text())["precision"] == "mixed_bfloat16"
    model = keras.models.load_model(result.run_dir / "model.keras")
    assert [layer.dtype_policy.name for layer in model.layers] == ["mixed_bfloat16", "mixed_bfloat16", "float32"]
    assert model.layers[0].compute_dtype == "bfloat16" and model.layers[0].kernel.dtype == "float32"
    assert model(np.zeros((2, 8), "float32")).dtype == "float32"
    assert np.isfinite(result.metrics["test"]["loss"]) and result.metrics["test"]["accuracy"] > 0.6


def test_check_names_the_precision_and_the_cpus_bfloat16_support():
    from typer.testing import CliRunner

    from nnrun.cli import app
    from nnrun.distribution import cpu_bfloat16

    result = CliRunner().invoke(app, ["check", str(DIABETES), "--set", "training.precision=bfloat16"])
    assert result.exit_code == 0, result.output
    expected = f"has {cpu_bfloat16()}" if cpu_bfloat16() else "has no bfloat16 instructions"
    assert "precision: bfloat16 (Keras policy mixed_bfloat16); this CPU " + expected in result.stderr


# ------------------------------------------------------------ TensorBoard


@pytest.mark.slow
def test_tensorboard_logs_are_written_into_the_run_directory(tmp_path):
    pytest.importorskip("tensorboard", reason="pip install 'nnrun[tensorboard]'")
    result = train_cli(tmp_path, "training.tensorboard=true", "training.epochs=2")
    assert result.exit_code == 0, result.output
    logs = Path(result.stdout.strip().splitlines()[-1]) / "tensorboard"
    import tensorflow as tf

    for split in ("train", "validation"):
        (events,) = (logs / split).glob("events.out.tfevents.*")
        tags: dict[str, int] = {}
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                tags[value.tag] = tags.get(value.tag, 0) + 1
        assert tags.get("epoch_loss") == 2 and tags.get("epoch_accuracy") == 2, tags


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    result = train_cli(tmp_path, "training.tensorboard=true", "training.epochs=1")
    assert result.exit_code == 2
    assert "the tensorboard package is not installed" in result.output and "pip install" in result.output
    assert not any(tmp_path.iterdir())
