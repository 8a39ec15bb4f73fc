"""The Ray executor: the sweep's workers as Ray tasks, on a local Ray instance or a cluster.

Each task is one worker (``orchestrate.work``, as ``--join`` runs it): it asks the study for trials, trains them on
its node, tells the results and beats for them, so a node that dies loses only its trials, which the other workers
retry. Ray is optional (``pip install 'nnrun[ray]'``) and imported only here, when a sweep asks for it. On a
cluster, every node must reach the sweep folder (or the ``--storage`` database) at the same path.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape

from nnrun.errors import ConfigError, DataChanged, NnrunError, first_line
from nnrun.sweep.trial import thread_env

INSTALL_HINT = "pip install 'nnrun[ray]' (or: pip install 'ray[default]>=2.9')"
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2  # the tasks return nothing: keep a local instance's share of memory small
LOG_GRACE_S = 1.5  # ray-project/ray#31931: lines a task printed just before it ended are lost if shutdown comes first
FORWARDED_ENV = ("NNRUN_DATA_DIR", "KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")  # passed to every node when set here


def import_ray() -> Any:
    """The ``ray`` module; ConfigError with the install hint when it is missing."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # Ray would merge the workers' similar lines into one
    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # its workers' prefixes uncoloured in a log file or a pipe
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray needs Ray, which is not installed; install it with: {INSTALL_HINT}.") from None
    return ray


def check_address(address: str) -> None:
    """ConfigError when nothing listens at a cluster's ``HOST:PORT`` (Ray itself would retry for many minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():  # auto, or a form Ray reads: Ray's own error
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"--address {address}: nothing answers there ({exc.strerror or exc}); start the cluster with "
                          "`ray start --head` on its head node and pass the address it prints.") from None


def run_workers(sweep_dir: Path, *, address: str | None, gpus_per_trial: float = 0, num_cpus: int | None = None,
                echo: Callable[[str], None]) -> None:
    """As many workers as the cluster has CPUs (or GPUs, with ``gpus_per_trial``), until the budget is spent.

    ``address``: a running cluster (``HEAD_IP:6379``, ``auto``); None starts a local instance on loopback
    (``num_cpus`` CPUs) for this sweep only. Their lines come to this console, each marked with its worker.

    Raises:
        ConfigError: Ray is missing or unreachable.
        NnrunError: every worker stopped.
        KeyboardInterrupt: Ctrl-C; the workers were stopped, each telling its trial interrupted.
    """
    ray = import_ray()
    env = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
    if not gpus_per_trial:
        env.update(thread_env(1))  # one CPU per worker: TensorFlow's threads capped to it
    options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "configure_logging": False}
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
    refs, stopped = [], []
    try:
        have = ray.cluster_resources().get("GPU" if gpus_per_trial else "CPU", 0)
        most = max((n["Resources"].get("GPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
        if gpus_per_trial > most:  # a trial runs on one node: else Ray would wait for such a node for ever
            raise ConfigError(f"--gpus-per-trial {gpus_per_trial:g}: no node of the Ray cluster has that many GPUs (the "
                              f"most on one: {most:g}); start its nodes with their GPUs (ray start --num-gpus N), ask "
                              "for fewer, or leave --gpus-per-trial out to train on CPUs.")
        slots = max(1, int(have / (gpus_per_trial or 1)))
        worker = ray.remote(num_cpus=1, num_gpus=gpus_per_trial, max_retries=0)(sweep_worker)
        refs = [worker.remote(str(sweep_dir), os.getcwd()) for _ in range(slots)]
        for ref in refs:
            try:
                ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died, or failed outside its trials
                cause = getattr(exc, "cause", None) or exc  # a RayTaskError's own text is the traceback's
                if f"{cause}" not in map(str, stopped):  # the data changed, say: every worker stops on it
                    echo(f"[red]a Ray worker stopped[/]: {escape(f'{type(cause).__name__}: {first_line(cause)}')}")
                stopped.append(cause)
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref)  # a KeyboardInterrupt in each worker: it tells its trial interrupted
        ray.wait(refs, num_returns=len(refs), timeout=60)  # then Ray stops them; their trials go stale and are retried
        raise
    finally:
        time.sleep(LOG_GRACE_S)  # the workers' last lines, still on their way here (Ray drops them at shutdown)
        ray.shutdown()
    if stopped and len(stopped) == len(refs):  # the others, if any, went on until the budget was spent
        if isinstance(stopped[0], DataChanged):  # its own error says what to do
            raise stopped[0]
        raise NnrunError(f"every Ray worker stopped ({type(stopped[0]).__name__}: {first_line(stopped[0])}); can each "
                         f"node reach {sweep_dir}?")


def sweep_worker(sweep_dir: str, cwd: str) -> None:
    """One Ray task: a worker on the sweep's study, as ``nnrun sweep --join SWEEP_DIR`` is."""
    from nnrun.console import make_console
    from nnrun.sweep.orchestrate import work
    from nnrun.sweep.plan import check_data
    from nnrun.sweep.state import read_state

    if Path(cwd).is_dir():
        os.chdir(cwd)  # relative dataset paths, as on the machine that started the sweep
    console, state = make_console(), read_state(sweep_dir)
    try:
        check_data(state, Path(sweep_dir))  # a node with other data under the same path
        work(sweep_dir, state, executor="ray task", echo=lambda line: console.print(line, soft_wrap=True))
    finally:
        sys.stderr.flush()  # to the log file Ray passes on: its last lines too
