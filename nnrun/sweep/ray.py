"""The Ray executor: each sweep trial is a Ray task on a local Ray instance or a Ray cluster.

Ray is an optional extra (``pip install 'nnrun[ray]'``), imported only when a
sweep asks for it, inside the functions here. Each trial asks Ray
for one CPU (or ``gpus_per_trial`` GPUs) and runs ``nnrun.sweep.trial.run_trial``,
the function the local executor runs, on whichever node Ray picks. The trial
writes its run directory into the sweep directory, which on a real cluster
must be on a filesystem every node mounts at the same path; the driver alone
writes ``sweep.json``.

Example:
    ray start --head --port=6379                     # on the head node
    ray start --address=HEAD_IP:6379                 # on every other node
    nnrun sweep configs/diabetes_sweep.yaml --executor ray --address HEAD_IP:6379
"""

from __future__ import annotations

import os
from typing import Any

from nnrun.errors import ConfigError, NnrunError, first_line
from nnrun.sweep.trial import OnResult, OnStart, TrialSpec, lost_result, run_trial

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


def run_on_ray(
    specs: list[TrialSpec],
    *,
    address: str | None,
    gpus_per_trial: float = 0,
    num_cpus: int | None = None,
    on_start: OnStart,
    on_result: OnResult,
) -> None:
    """Run every trial as a Ray task and report each result as it arrives.

    Args:
        address: a running cluster (``HEAD_IP:6379``, or ``auto``); None starts a local
            Ray instance on loopback for this sweep only, stopped at the end.
        gpus_per_trial: GPUs Ray reserves per trial (0: one CPU each).
        num_cpus: CPUs of the local instance (None: all); ignored with ``address``.

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
        KeyboardInterrupt: after cancelling the unfinished trials.
    """
    ray = import_ray()
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
    try:
        task = ray.remote(num_cpus=1, num_gpus=gpus_per_trial, max_retries=0)(run_trial)
        # On Ray one trial has one CPU: cap TensorFlow's threads to it.
        refs = {}
        for spec in specs:
            spec.threads = spec.threads or (None if gpus_per_trial else 1)
            refs[task.remote(spec)] = spec
            on_start(spec)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    on_result(_result(ray, ref, refs[ref]))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
                on_result(lost_result(refs[ref], "interrupted", "the sweep was stopped"))
            raise
    finally:
        ray.shutdown()


def _result(ray: Any, ref: Any, spec: TrialSpec) -> dict[str, Any]:
    try:
        return ray.get(ref)
    except (ray.exceptions.RayError, NnrunError) as exc:  # the worker died or the task could not run
        return lost_result(spec, "failed", f"Ray task failed: {first_line(exc)}")
