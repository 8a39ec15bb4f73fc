"""The Ray executor: each trial a Ray task running ``run_trial``, on a local Ray instance or a cluster.

Ray is optional (``pip install 'nnrun[ray]'``) and imported only here, when a sweep asks for it. On a cluster,
every node must reach the sweep folder (or the ``--storage`` database) at the same path.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from nnrun.errors import ConfigError, first_line
from nnrun.sweep.trial import TrialSpec, result_of, run_trial, thread_env

INSTALL_HINT = "pip install 'nnrun[ray]' (or: pip install 'ray[default]>=2.9')"
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2  # trials pass only small dicts: keep a local instance's share of memory small
FORWARDED_ENV = ("NNRUN_DATA_DIR", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")  # passed to every node when set here


def import_ray() -> Any:
    """The ``ray`` module; ConfigError with the install hint when it is missing."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed; install it with: {INSTALL_HINT}.") from None
    return ray


class RayPool:
    """As many trials at once as the cluster has CPUs (or GPUs, with ``gpus_per_trial``).

    ``address``: a running cluster (``HEAD_IP:6379``, ``auto``); None starts a local instance on loopback
    (``num_cpus`` CPUs) for this sweep only. ConfigError when Ray is missing or unreachable.
    """

    def __init__(self, *, address: str | None, gpus_per_trial: float = 0, num_cpus: int | None = None) -> None:
        ray = self.ray = import_ray()
        env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        if not gpus_per_trial:
            env.update(thread_env(1))  # one CPU per trial: TensorFlow's threads capped to it
        options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False, "configure_logging": False}
        if address:
            options["address"] = address
        else:  # "local" starts a new instance even if `ray start` left one running; nothing of it listens publicly
            options.update(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                           object_store_memory=LOCAL_OBJECT_STORE_BYTES)  # fmt: skip
        try:
            ray.init(**options)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ConfigError(
                f"--executor ray: cannot connect to {where} ({first_line(exc)}). "
                + ("Start it with `ray start --head` on the head node and pass the address it prints; Ray >= 2.59 "
                   "clusters check a token: run with RAY_AUTH_MODE=token and the head's token (`ray get-auth-token`) "
                   "in ~/.ray/auth_token or RAY_AUTH_TOKEN." if address else "")
            ) from None
        resource = "GPU" if gpus_per_trial else "CPU"
        self.slots = max(1, int(ray.cluster_resources().get(resource, 1) / (gpus_per_trial or 1)))
        self.task = ray.remote(num_cpus=1, num_gpus=gpus_per_trial, max_retries=0)(run_trial)
        self.stopping = threading.Event()
        self.interrupt = signal.signal(signal.SIGINT, self._stop)  # Optuna's threads wait for run(): stop them

    def _stop(self, *args: Any) -> None:
        self.stopping.set()
        signal.default_int_handler(*args)

    def run(self, spec: TrialSpec) -> dict[str, Any]:
        """Run one trial as a Ray task and return its result; Ctrl-C cancels it."""
        ref = self.task.remote(spec)
        while not self.ray.wait([ref], timeout=0.5)[0]:
            if self.stopping.is_set():
                self.ray.cancel(ref, force=True)
                return result_of(spec, "interrupted", "the sweep was stopped")
        try:
            return self.ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - the worker died or the task could not run
            cause = getattr(exc, "cause", None) or exc  # a RayTaskError's own text is the traceback's
            return result_of(spec, "failed", f"Ray task failed: {type(cause).__name__}: {first_line(cause)}")

    def close(self) -> None:
        signal.signal(signal.SIGINT, self.interrupt)
        self.ray.shutdown()
