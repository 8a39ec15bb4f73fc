"""Executors: where the trials of a sweep run, while the worker asks and tells the study.

Each executor has ``slots`` (trials at once), ``submit(spec)`` and ``wait()``, which blocks until
at least one trial has finished and returns their results. ``local`` trains in this process
(``jobs=1``) or in a pool of ``jobs`` spawned processes, each with its share of the CPU threads;
``ray`` (``nnrun.sweep.ray``) sends each trial to a Ray cluster as a task.
"""

from __future__ import annotations

import os
from typing import Any

from nnrun.errors import ConfigError
from nnrun.sweep.ray import RayExecutor, import_ray
from nnrun.sweep.trial import TrialSpec, limit_threads, lost_result, run_trial

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


def create_executor(executor: str, *, jobs: int, address: str | None, gpus_per_trial: float,
                    ray_cpus: int | None) -> Any:
    if executor == "ray":
        return RayExecutor(address=address, gpus_per_trial=gpus_per_trial, num_cpus=ray_cpus)
    return InProcess() if jobs == 1 else Pool(jobs)


class InProcess:
    """One trial at a time in this process; Ctrl-C stops the running trial cleanly."""

    slots = 1

    def __init__(self) -> None:
        self.queue: list[TrialSpec] = []

    def submit(self, spec: TrialSpec) -> None:
        self.queue.append(spec)

    def wait(self) -> list[dict[str, Any]]:
        return [run_trial(self.queue.pop(0))]

    def cancel(self) -> list[dict[str, Any]]:
        return [lost_result(spec, "interrupted", "the sweep was stopped") for spec in self.queue]

    def close(self) -> None:
        pass


def _init_worker(threads: int) -> None:
    import signal

    limit_threads(threads)
    # Idle workers ignore Ctrl-C; a training installs its own handler and stops cleanly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Pool:
    """``jobs`` worker processes (spawned: TensorFlow does not survive fork), each with its share of threads."""

    def __init__(self, jobs: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.slots, self.threads = jobs, default_threads(jobs)
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=(self.threads,))  # fmt: skip
        self.running: dict[Any, TrialSpec] = {}

    def submit(self, spec: TrialSpec) -> None:
        spec.threads = self.threads
        self.running[self.pool.submit(run_trial, spec)] = spec

    def wait(self) -> list[dict[str, Any]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        done, _ = wait(set(self.running), return_when=FIRST_COMPLETED)
        return [self._result(future) for future in done]

    def cancel(self) -> list[dict[str, Any]]:
        # The running trials got the same Ctrl-C (one process group) and are saving their epochs: collect them.
        return [self._result(future) for future in list(self.running)]

    def _result(self, future: Any) -> dict[str, Any]:
        spec = self.running.pop(future)
        try:
            return future.result()
        except Exception as exc:  # noqa: BLE001 - the worker process died (out of memory, killed)
            return lost_result(spec, "failed", f"worker process failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def default_threads(jobs: int) -> int:
    """Each of ``jobs`` parallel trials gets an equal share of this machine's CPUs (at least one)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, jobs))
