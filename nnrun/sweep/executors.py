"""Executors: where the trials of a sweep run.

``local`` trains them in this process one after the other (``jobs=1``) or in a
pool of ``jobs`` processes, each limited to its share of the CPU threads;
``ray`` (``nnrun.sweep.ray``) sends each trial to a Ray cluster as a task.
Every executor calls ``on_start`` before a trial and ``on_result`` with what
``run_trial`` returned; the caller keeps ``sweep.json`` current in them.
"""

from __future__ import annotations

import os
from typing import Any

from nnrun.errors import ConfigError
from nnrun.sweep.ray import import_ray, run_on_ray
from nnrun.sweep.trial import OnResult, OnStart, TrialSpec, limit_threads, lost_result, run_trial

EXECUTORS = ("local", "ray")


def check_executor(executor: str, *, jobs: int, address: str | None, gpus_per_trial: float) -> None:
    """Raise ConfigError for options that do not fit together, or for Ray missing when it is asked for."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}.")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}.")
    if executor == "local" and (address or gpus_per_trial):
        raise ConfigError("--address and --gpus-per-trial need --executor ray.")
    if executor == "ray" and jobs > 1:
        raise ConfigError("--jobs is for --executor local; Ray runs as many trials at once as its cluster has CPUs (or GPUs).")
    if executor == "ray":
        import_ray()  # the install hint, before the sweep is marked running


def run_trials(
    specs: list[TrialSpec],
    *,
    executor: str,
    jobs: int,
    address: str | None,
    gpus_per_trial: float,
    ray_cpus: int | None,
    on_start: OnStart,
    on_result: OnResult,
) -> None:
    """Run ``specs`` on the executor that ``check_executor`` accepted.

    Raises:
        KeyboardInterrupt: Ctrl-C, after every executor has reported its running trials.
    """
    if executor == "ray":
        run_on_ray(specs, address=address, gpus_per_trial=gpus_per_trial, num_cpus=ray_cpus,
                   on_start=on_start, on_result=on_result)  # fmt: skip
    elif jobs == 1:
        run_local(specs, on_start, on_result)
    else:
        run_pool(specs, jobs, on_start, on_result)


def run_local(specs: list[TrialSpec], on_start: OnStart, on_result: OnResult) -> None:
    """One trial after the other in this process; Ctrl-C stops the running trial cleanly and ends the sweep."""
    for spec in specs:
        on_start(spec)
        result = run_trial(spec)
        on_result(result)
        if result["status"] == "interrupted":
            raise KeyboardInterrupt


def _init_worker(threads: int) -> None:
    import signal

    limit_threads(threads)
    # Idle workers ignore Ctrl-C; a training installs its own handler and stops cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_pool(specs: list[TrialSpec], jobs: int, on_start: OnStart, on_result: OnResult) -> None:
    """``jobs`` worker processes (spawned: TensorFlow does not survive fork), each with its share of threads.

    At most ``jobs`` trials are submitted at a time, so a trial is ``running`` only while it runs.
    """
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = (specs[0].threads or 1) if specs else 1
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(threads,))  # fmt: skip
    queue = list(specs)
    running: dict[Any, TrialSpec] = {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                spec = queue.pop(0)
                on_start(spec)
                running[pool.submit(run_trial, spec)] = spec
            done, _ = wait(set(running), return_when=FIRST_COMPLETED)
            for future in done:
                on_result(_future_result(future, running.pop(future)))
    except KeyboardInterrupt:
        # The running trials got the same Ctrl-C (one process group) and are saving their epochs: collect them.
        for future, spec in running.items():
            on_result(_future_result(future, spec))
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _future_result(future: Any, spec: TrialSpec) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - the worker process died (out of memory, killed)
        return lost_result(spec, "failed", f"worker process failed: {type(exc).__name__}: {exc}")


def default_threads(jobs: int) -> int:
    """Each of ``jobs`` parallel trials gets an equal share of this machine's CPUs (at least one)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, jobs))
