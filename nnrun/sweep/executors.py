"""Where a worker's trials run: ``slots`` at once, ``submit(spec)``, ``wait()`` for finished results, ``cancel()``.

``InProcess`` trains in this process (``--jobs N`` adds N - 1 ``--join`` workers, see ``orchestrate.work``);
``RayExecutor`` (``nnrun.sweep.ray``) sends each trial to a Ray cluster as a task.
"""

from __future__ import annotations

import os
from typing import Any

from nnrun.errors import ConfigError
from nnrun.sweep.ray import RayExecutor, import_ray
from nnrun.sweep.trial import TrialSpec, lost_result, run_trial

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


def create_executor(executor: str, *, address: str | None, gpus_per_trial: float, ray_cpus: int | None,
                    threads: int | None) -> Any:
    if executor == "ray":
        return RayExecutor(address=address, gpus_per_trial=gpus_per_trial, num_cpus=ray_cpus)
    return InProcess(threads)


class InProcess:
    """One trial at a time in this process; Ctrl-C stops the running trial cleanly."""

    slots = 1

    def __init__(self, threads: int | None = None) -> None:
        self.queue: list[TrialSpec] = []
        self.threads = threads

    def submit(self, spec: TrialSpec) -> None:
        spec.threads = self.threads
        self.queue.append(spec)

    def wait(self) -> list[dict[str, Any]]:
        return [run_trial(self.queue.pop(0))]

    def cancel(self) -> list[dict[str, Any]]:
        return [lost_result(spec, "interrupted", "the sweep was stopped") for spec in self.queue]

    def close(self) -> None:
        pass


def default_threads(jobs: int) -> int:
    """Each of ``jobs`` parallel trials gets an equal share of this machine's CPUs (at least one)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, jobs))
