"""``training.jit_compile: auto``: XLA where it measures faster, on this machine, for this model.

Whether XLA (Keras's ``jit_compile``) pays depends on the CPU more than on the
model. On the development machine's AMD EPYC it made the Dense-only MNIST
models between 13% faster and 14% slower per epoch and Conv2D 2x slower; on an
Intel Xeon with AMX it made mnist_dense512 1.5-2x faster. So nnrun does not
guess. Before a run long enough to matter, ``choose`` trains the real model on a
slice of the real training data for a few executions each way, alternately, and
keeps the faster:

1. Without XLA: one traced warm-up pass, then timed passes. Their speed gives
   the run's estimated training time. Under ``PROBE_MIN_TRAIN_S`` the run stays
   without XLA: its compile (about a second) could not pay.
2. With XLA: a compiling pass (its extra time is XLA's compile cost), then timed
   passes; a close call gets a second round of both, alternated.
3. XLA is kept when it is at least ``MIN_GAIN`` faster per step and the time it
   saves over the run's steps exceeds its compile cost.

The timings are cached per machine (CPU model and flags), model, input shape,
precision, optimizer, loss, metrics, batch size, steps per execution and
TensorFlow / Keras versions, in ``~/.cache/nnrun/xla-probe.json`` (or
``$NNRUN_CACHE_DIR``; ``off`` turns the cache off), so a config pays the probe
once per machine. ``run.json`` records the decision and both timings under
``jit_probe``; ``nnrun check`` shows the cached ones.

The probe builds and trains throwaway models. ``training.prepare`` then resets
Keras and the random generators to where they were, so that the real model
starts exactly as it would have without the probe.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: Runs estimated to train for less than this many seconds are not probed.
PROBE_MIN_TRAIN_S = float(os.environ.get("NNRUN_XLA_PROBE_MIN_S", 20.0))
#: XLA must be at least this much faster per step.
MIN_GAIN = 0.10
#: Seconds one timed probe pass should take (it is at most one call into the compiled graph).
PASS_S = 0.3
CACHE_FILE = "xla-probe.json"
#: Part of the cache key: a changed way of measuring measures again.
PROBE_VERSION = 2


@dataclass
class JitChoice:
    """What ``jit_compile`` is for this run, and why."""

    setting: bool | str
    enabled: bool
    reason: str
    plain_ms: float | None = None  # ms per training step (one batch) without XLA
    xla_ms: float | None = None
    xla_compile_s: float | None = None  # XLA's first pass minus a timed one
    probe_s: float = 0.0  # what measuring cost this run (0 when cached or not probed)
    estimated_train_s: float | None = None
    cached: bool = False
    measured: str | None = None  # when the timings were taken
    key: str | None = None

    @property
    def probed(self) -> bool:
        """True when this process built and trained probe models (Keras state must be reset)."""
        return self.probe_s > 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: the decision, the timings and the probe's cost."""
        state = "on" if self.enabled else "off"
        line = f"XLA (jit_compile {json.dumps(self.setting)}): {state}, {self.reason}"
        if self.plain_ms is not None and self.xla_ms is not None:
            line += f"; {self.xla_ms:.2f} ms/step with XLA, {self.plain_ms:.2f} without"
            if self.xla_compile_s is not None:
                line += f", compile {self.xla_compile_s:.1f} s"
        elif self.plain_ms is not None:
            line += f"; {self.plain_ms:.2f} ms/step without XLA"
        if self.cached:
            line += f" (cached probe of {self.measured})"
        elif self.probed:
            line += f" (probe took {self.probe_s:.1f} s, cached for the next run)"
        return line


def choose(config: Any, x: np.ndarray, y: np.ndarray, spe: int, build: Callable[[bool], Any], *,
           smoke: bool = False, probe: bool = True) -> JitChoice:
    """The ``jit_compile`` for this run. ``build(jit)`` returns a fresh compiled model.

    With ``probe=False`` (``nnrun check``) nothing is trained: the cached timings decide, if any.
    """
    setting = config.training.jit_compile
    if isinstance(setting, bool):
        return JitChoice(setting, setting, "as set in training.jit_compile")
    if config.distribution.strategy != "none":
        return JitChoice(setting, False, "not under a tf.distribute strategy (distribution.MIRRORED_LIMITS)")
    if smoke:
        return JitChoice(setting, False, "not measured for a --smoke run")
    batch = config.training.batch_size
    total_steps = math.ceil(len(x) / batch) * config.training.epochs
    key = cache_key(config, x.shape[1:], spe)
    entry = read_cache().get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("plain_ms"), (int, float)):
        entry = None  # none, or damaged by hand: measured again
    if entry and (entry.get("xla_ms") is not None or _estimate_s(entry["plain_ms"], total_steps) < PROBE_MIN_TRAIN_S):
        choice = decide(setting, entry["plain_ms"], entry.get("xla_ms"), entry.get("xla_compile_s"), total_steps)
        choice.cached, choice.measured, choice.key = True, entry.get("measured"), key
        return choice
    if not probe:
        return JitChoice(setting, False, "not measured on this machine yet: the first run longer than about "
                         f"{PROBE_MIN_TRAIN_S:.0f} s times a few steps each way and keeps the faster", key=key)
    started = time.perf_counter()
    plain = build(False)  # raises the config's pre-flight errors before anything trains
    refuse_if_forbidden()
    timings = measure(plain, build, x, y, batch, spe, total_steps)
    choice = decide(setting, timings["plain_ms"], timings.get("xla_ms"), timings.get("xla_compile_s"), total_steps)
    choice.probe_s = time.perf_counter() - started
    choice.key, choice.measured = key, datetime.now().isoformat(timespec="seconds")
    write_cache(key, {**timings, "measured": choice.measured})
    return choice


def decide(setting: bool | str, plain_ms: float, xla_ms: float | None, compile_s: float | None,
           total_steps: int) -> JitChoice:
    """Keep XLA when it is MIN_GAIN faster per step and repays its compile over this run's steps."""
    estimate = _estimate_s(plain_ms, total_steps)
    common = dict(plain_ms=plain_ms, xla_ms=xla_ms, xla_compile_s=compile_s, estimated_train_s=round(estimate, 1))
    if xla_ms is None or estimate < PROBE_MIN_TRAIN_S:
        return JitChoice(setting, False, f"about {estimate:.0f} s of training: too short for XLA's compile to pay",
                         **common)
    saved = (plain_ms - xla_ms) / 1000 * total_steps - (compile_s or 0.0)
    if xla_ms <= plain_ms * (1 - MIN_GAIN) and saved > 0:
        return JitChoice(setting, True, f"faster here by {1 - xla_ms / plain_ms:.0%} per step, "
                         f"about {saved:.0f} s saved over {total_steps} steps", **common)
    return JitChoice(setting, False, f"not faster here ({xla_ms / plain_ms:.2f}x the time per step)", **common)


def _estimate_s(plain_ms: float, total_steps: int) -> float:
    return plain_ms / 1000 * total_steps


def measure(plain: Any, build: Callable[[bool], Any], x: np.ndarray, y: np.ndarray, batch: int, spe: int,
            total_steps: int) -> dict[str, float | None]:
    """Time training steps of fresh models without and with XLA. Returns ms per step.

    A pass is one ``fit`` epoch over a slice of full batches, at most one call into the compiled graph
    (``spe`` steps). Without XLA: a tracing pass, a short pass that sizes the timed ones to about
    PASS_S seconds, and 3 timed passes. With XLA: a compiling pass and two short passes (~50 ms, at least 2
    steps), compared with the same passes without XLA; a clear loser (more than 1.5x slower,
    as Conv2D under XLA on some CPUs: 4-7x) stops there.
    Otherwise 3 timed passes like the others, and a close call (within 20%) a second, alternated round.
    """
    def head(steps: int) -> tuple[np.ndarray, np.ndarray, int]:
        n = min(len(x) // batch, steps) * batch or len(x)  # full batches: a partial one would recompile XLA
        return x[:n], y[:n], math.ceil(n / batch)

    def per_step(times: list[float], steps: int) -> float:
        return statistics.median(times) / steps

    xs, ys, small = head(min(spe, 8))
    _passes(plain, xs, ys, batch, 1)  # traces the graph
    step_s = min(_passes(plain, xs, ys, batch, 2)) / small
    xt, yt, _ = head(max(2, min(small, math.ceil(0.05 / max(step_s, 1e-6)))))  # ~50 ms: the quick comparison
    xf, yf, steps = head(max(small, min(spe, math.ceil(PASS_S / max(step_s, 1e-6)))))
    plain_times = _passes(plain, xf, yf, batch, 3)
    plain_ms = per_step(plain_times, steps) * 1000
    if _estimate_s(plain_ms, total_steps) < PROBE_MIN_TRAIN_S:
        return {"plain_ms": round(plain_ms, 4), "xla_ms": None, "xla_compile_s": None}
    plain_tiny = _passes(plain, xt, yt, batch, 2)
    xla = build(True)
    first = _passes(xla, xt, yt, batch, 1)  # compiles
    xla_tiny = _passes(xla, xt, yt, batch, 2)
    compile_s = max(0.0, first[0] - min(xla_tiny))
    if min(xla_tiny) > 1.5 * min(plain_tiny):  # clearly slower: no need to time it longer
        return {"plain_ms": round(plain_ms, 4), "xla_ms": round(min(xla_tiny) / min(plain_tiny) * plain_ms, 4),
                "xla_compile_s": round(compile_s, 3)}
    xla_times = _passes(xla, xf, yf, batch, 3)
    if 0.8 < per_step(xla_times, steps) / per_step(plain_times, steps) < 1.2:  # close: alternate once more
        plain_times += _passes(plain, xf, yf, batch, 3)
        xla_times += _passes(xla, xf, yf, batch, 3)
    return {"plain_ms": round(per_step(plain_times, steps) * 1000, 4),
            "xla_ms": round(per_step(xla_times, steps) * 1000, 4), "xla_compile_s": round(compile_s, 3)}


def _passes(model: Any, x: np.ndarray, y: np.ndarray, batch: int, passes: int) -> list[float]:
    """Seconds of each pass over (x, y), as ``fit`` epochs timed by a callback."""
    from nnrun.tf import import_keras

    times: list[float] = []

    class Timer(import_keras().callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(x, y, batch_size=batch, epochs=passes, shuffle=False, verbose=0, callbacks=[Timer()])
    return times


def refuse_if_forbidden() -> None:
    """The test suite's fast layer switches training off (``NNRUN_FORBID_TRAINING``); the probe trains."""
    from nnrun.errors import NnrunError

    forbid = os.environ.get("NNRUN_FORBID_TRAINING")
    if forbid:
        Path(forbid).write_text("XLA probe (training.jit_compile: auto)\n")
        raise NnrunError(f"training is switched off here (NNRUN_FORBID_TRAINING={forbid}).")


# ------------------------------------------------------------------- cache


def cpu_identity() -> dict[str, str]:
    """CPU model name and a hash of its flags (/proc/cpuinfo), or the platform's processor string."""
    model = flags = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return {"cpu": model, "flags": hashlib.sha256(flags.encode()).hexdigest()[:12]}


def cache_key(config: Any, input_shape: tuple, spe: int) -> str:
    """What the speed of a training step depends on."""
    from nnrun.tf import import_keras

    keras = import_keras()
    import tensorflow as tf

    training = config.to_dict()["training"]
    optimizer = training["optimizer"]
    parts = {
        "probe": PROBE_VERSION, **cpu_identity(), "gpus": len(tf.config.list_physical_devices("GPU")),
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "layers": config.to_dict()["model"]["layers"], "input_shape": list(input_shape),
        "precision": [training.get("precision"), training.get("mixed_precision")],
        "optimizer": optimizer.get("type") if isinstance(optimizer, dict) else optimizer,
        "loss": training["loss"], "metrics": training["metrics"],
        "batch_size": training["batch_size"], "steps_per_execution": spe,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cache_path() -> Path | None:
    from nnrun.datasets.idx import cache_home

    home = cache_home()
    return None if home is None else home / CACHE_FILE


def read_cache() -> dict[str, Any]:
    path = cache_path()
    try:
        data = json.loads(path.read_text()) if path else {}
    except (OSError, ValueError):
        return {}  # missing or damaged: measured again, and rewritten
    return data if isinstance(data, dict) else {}


def write_cache(key: str, entry: dict[str, Any]) -> None:
    path = cache_path()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {**read_cache(), key: entry}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the probe simply runs again next time
