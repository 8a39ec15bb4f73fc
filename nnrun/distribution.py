"""Devices and numerics for training: a ``tf.distribute`` strategy, the mixed-precision policy, TensorBoard.

``training.prepare`` builds and compiles the model inside ``model_scope``:

- ``distribution.strategy: none`` (default): Keras's default, one device.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over all local GPUs, or the
  ``distribution.devices`` listed. ``training.batch_size`` stays the global
  batch: each of N replicas gets ``batch_size / N`` samples per step, and the
  gradients are averaged over the whole batch, as on one device. Under a
  strategy, 'auto' means ``steps_per_execution: 1`` and ``jit_compile: auto`` means off
  (``MIRRORED_LIMITS``); larger values are rejected.
- ``multi_worker`` is rejected: ``MultiWorkerMirroredStrategy`` fails inside
  Keras 3's ``fit`` (see ``MULTI_WORKER_ERROR``). For many machines, run many
  trials on Ray: ``nnrun sweep --executor ray``.

``training.tensorboard: true`` adds Keras's TensorBoard callback, logging into
``<run>/tensorboard``; it is checked here with the rest, before training.

``training.mixed_precision: true`` sets Keras's ``mixed_float16`` policy when
a GPU is present, and keeps the last layer in float32 so that the outputs and
the loss stay float32. On CPU, float16 math is emulated and slow: nnrun
warns and keeps float32.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Iterator

from nnrun.config import RunConfig
from nnrun.errors import ConfigError

MIXED_POLICY = "mixed_float16"
BFLOAT16_POLICY = "mixed_bfloat16"

MULTI_WORKER_ERROR = (
    "distribution.strategy: 'multi_worker' is not supported: tf.distribute.MultiWorkerMirroredStrategy fails in "
    "Keras 3's fit with \"Attempt to convert a value (PerReplica:...) with an unsupported type\" "
    "(keras-team/keras#20585, #20329; tensorflow/tensorflow#72388). For more trials on more machines use "
    "`nnrun sweep --executor ray --address HEAD:6379`; for several GPUs on one machine use strategy: mirrored."
)


#: Measured with Keras 3.15 / TF 2.21 on two logical CPU devices: under MirroredStrategy, ``fit`` fails with
#: "InvalidArgumentError: You must feed a value for placeholder tensor ..." as soon as steps_per_execution > 1
#: or jit_compile is true, and trains with 1 and false. 'auto' resolves to those under a strategy.
MIRRORED_LIMITS = "steps_per_execution > 1 and jit_compile: true make Keras 3's fit fail under MirroredStrategy"


def check_distribution(config: RunConfig) -> None:
    """Reject what cannot work, before TensorFlow starts. Raises ConfigError."""
    section = config.distribution
    if section.strategy == "multi_worker":
        raise ConfigError(MULTI_WORKER_ERROR)
    if section.strategy == "mirrored":
        spe, jit = config.training.steps_per_execution, config.training.jit_compile
        if spe != "auto" and spe > 1:
            raise ConfigError(
                f"training.steps_per_execution is {spe} but distribution.strategy is mirrored: {MIRRORED_LIMITS} "
                "(\"You must feed a value for placeholder tensor\"). Set it to 1 or 'auto'."
            )
        if jit is True:
            raise ConfigError(
                f"training.jit_compile is true but distribution.strategy is mirrored: {MIRRORED_LIMITS}. "
                "Set it to false or auto (the default, off under a strategy)."
            )
    if section.devices and section.strategy != "mirrored":
        raise ConfigError(
            f"distribution.devices lists devices but distribution.strategy is {section.strategy!r}; "
            "set strategy: mirrored, or remove devices."
        )


def _warn(text: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False).print(f"[yellow]Warning:[/] {escape(text)}", soft_wrap=True)


def gpu_count() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def create_strategy(config: RunConfig) -> Any:
    """The ``tf.distribute`` strategy the config asks for, or None for ``none``.

    Raises:
        ConfigError: multi_worker, or a listed device this machine does not have.
    """
    check_distribution(config)
    section = config.distribution
    if section.strategy == "none":
        return None
    import tensorflow as tf

    devices = section.devices
    if devices:
        available = tf.config.list_logical_devices()
        specs = [(d.name, tf.DeviceSpec.from_string(d.name)) for d in available]
        resolved = []
        for i, text in enumerate(devices):
            try:
                wanted = tf.DeviceSpec.from_string(text if text.startswith("/") else f"/{text}")
            except ValueError:
                wanted = None
            match = next(
                (name for name, spec in specs if wanted is not None and wanted.device_type
                 and spec.device_type == wanted.device_type.upper() and spec.device_index == (wanted.device_index or 0)),
                None,
            )  # fmt: skip
            if match is None:
                raise ConfigError(
                    f"distribution.devices[{i}]: no device {text!r} on this machine; it has "
                    f"{', '.join(n for n, _ in specs)}. Remove it, or leave devices out to use every GPU."
                )
            resolved.append(match)
        return tf.distribute.MirroredStrategy(devices=resolved)
    if gpu_count() == 0:
        _warn("distribution.strategy mirrored: no GPU found; training on the CPU as one replica (as with 'none').")
    return tf.distribute.MirroredStrategy()


def precision_policy(config: RunConfig, gpus: int | None = None) -> str | None:
    """The Keras dtype policy for ``training.precision`` (None: float32).

    ``bfloat16`` runs anywhere. ``float16`` needs a GPU: asked for by name on a CPU it is an error;
    the older ``mixed_precision: true`` only warns there and keeps float32, as it always did.
    """
    precision = config.training.precision
    if precision == "bfloat16":
        return BFLOAT16_POLICY
    if precision == "float32" and not config.training.mixed_precision:
        return None
    gpus = gpu_count() if gpus is None else gpus
    if gpus == 0:
        if precision == "float16":
            raise ConfigError("training.precision float16 needs a GPU (float16 math is emulated, slowly, on CPUs) and "
                              f"none was found; use precision: bfloat16 on this CPU{bfloat16_hint()}, or float32.")
        _warn(
            "training.mixed_precision: no GPU found; mixed_float16 only pays off on GPUs (float16 math is emulated, "
            "slowly, on CPUs), so this run keeps float32."
        )
        return None
    return MIXED_POLICY


def cpu_bfloat16() -> str | None:
    """The CPU's bfloat16 instructions (``AMX-BF16``, ``AVX512-BF16``), or None where it has neither."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    except OSError:
        return None
    found = [name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")) if flag in flags]
    return ", ".join(found) or None


def bfloat16_hint() -> str:
    found = cpu_bfloat16()
    return f" (it has {found})" if found else " (it has no AMX or AVX512-BF16: bfloat16 is emulated there, and slower)"


def float32_outputs(layers: list[Any]) -> list[dict[str, Any]]:
    """The layer list with ``dtype: float32`` on the last layer (unless set), so outputs and loss stay float32."""
    specs = [item.model_dump() if hasattr(item, "model_dump") else dict(item) for item in layers]
    specs[-1].setdefault("dtype", "float32")
    return specs


@contextmanager
def model_scope(config: RunConfig, *, gpus: int | None = None) -> Iterator[list[Any]]:
    """Build and compile the model inside this: it enters the strategy's scope and sets the dtype policy.

    Yields the layer list to build (the last layer pinned to float32 under mixed precision). The global
    dtype policy is restored on exit, so the next model built in this process is unaffected.

    Example:
        >>> with model_scope(config) as layers:
        ...     model = build_model(layers, input_shape)
        ...     model.compile(...)
    """
    check_tensorboard(config)
    strategy = create_strategy(config)
    policy = precision_policy(config, gpus)
    layers: list[Any] = list(config.model.layers)
    if policy is None:
        with strategy.scope() if strategy is not None else nullcontext():
            yield layers
        return
    from nnrun.tf import import_keras

    keras = import_keras()
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        with strategy.scope() if strategy is not None else nullcontext():
            yield float32_outputs(layers)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def check_tensorboard(config: RunConfig) -> None:
    """Keras's TensorBoard callback needs the ``tensorboard`` package to write summaries; say so before training."""
    import importlib.util

    if config.training.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(
            "training.tensorboard is true but the tensorboard package is not installed; "
            "install it with: pip install 'nnrun[tensorboard]' (or pip install tensorboard), or set training.tensorboard: false."
        )


def tensorboard_callback(run_path: Any, config: RunConfig) -> list[Any]:
    """``keras.callbacks.TensorBoard`` writing into ``<run>/tensorboard`` when ``training.tensorboard`` is on."""
    if not config.training.tensorboard:
        return []
    from nnrun.tf import import_keras

    return [import_keras().callbacks.TensorBoard(log_dir=str(run_path / TENSORBOARD), histogram_freq=0, write_graph=False)]


#: The run directory's TensorBoard log folder (``tensorboard --logdir runs/<id>/tensorboard``).
TENSORBOARD = "tensorboard"
