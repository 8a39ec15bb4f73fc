"""The Ray executor: each trial a Ray task running ``run_trial`` on a local Ray instance or a cluster.

Ray is optional (``pip install 'nnrun[ray]'``) and imported only here, when a sweep asks for it. On a
cluster, every node must reach the sweep folder (or the ``--storage`` database) at the same path.
"""

from __future__ import annotations

import os
from typing import Any

from nnrun.errors import ConfigError, NnrunError, first_line
from nnrun.sweep.trial import TrialSpec, lost_result, run_trial

INSTALL_HINT = "pip install 'nnrun[ray]' (or: pip install 'ray[default]>=2.9')"
#: Object store of a local instance: trials pass only small dicts, so keep Ray's share of memory small.
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2
#: Environment variables the trials need on every node, passed on when the driver has them set.
FORWARDED_ENV = ("NNRUN_DATA_DIR", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")


def import_ray() -> Any:
    """The ``ray`` module; ConfigError with the install hint when it is missing."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed; install it with: {INSTALL_HINT}.") from None
    return ray


class RayExecutor:
    """As many trials at once as the cluster has CPUs (or GPUs, with ``gpus_per_trial``).

    ``address``: a running cluster (``HEAD_IP:6379``, ``auto``); None starts a local instance on
    loopback (``num_cpus`` CPUs) for this sweep only. ConfigError when Ray is missing or unreachable.
    """

    def __init__(self, *, address: str | None, gpus_per_trial: float = 0, num_cpus: int | None = None) -> None:
        ray = self.ray = import_ray()
        env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False, "configure_logging": False}
        if address:
            options["address"] = address
        else:
            # "local" always starts a new instance, even if `ray start` left one running on this machine.
            # Bind the local instance to loopback: nothing of it should listen on the machine's public address.
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
        self.gpus_per_trial = gpus_per_trial
        self.task = ray.remote(num_cpus=1, num_gpus=gpus_per_trial, max_retries=0)(run_trial)
        self.running: dict[Any, TrialSpec] = {}

    def submit(self, spec: TrialSpec) -> None:
        # On Ray one trial has one CPU: cap TensorFlow's threads to it.
        spec.threads = spec.threads or (None if self.gpus_per_trial else 1)
        self.running[self.task.remote(spec)] = spec

    def wait(self) -> list[dict[str, Any]]:
        done, _ = self.ray.wait(list(self.running), num_returns=1)
        return [self._result(ref) for ref in done]

    def cancel(self) -> list[dict[str, Any]]:
        results = []
        for ref in list(self.running):
            self.ray.cancel(ref, force=True)
            results.append(lost_result(self.running.pop(ref), "interrupted", "the sweep was stopped"))
        return results

    def _result(self, ref: Any) -> dict[str, Any]:
        spec = self.running.pop(ref)
        try:
            return self.ray.get(ref)
        except (self.ray.exceptions.RayError, NnrunError) as exc:  # the worker died or the task could not run
            return lost_result(spec, "failed", f"Ray task failed: {first_line(exc)}")

    def close(self) -> None:
        self.ray.shutdown()
