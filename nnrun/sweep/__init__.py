"""Sweeps: one config trained many times over a search space, on Optuna; each trial an ordinary run directory.

The files, in the order a sweep goes through them::

    command.py      the ``nnrun sweep`` Typer command (cli.py adds it)
    space.py        the space: --grid options and the sweep: section, ranges, the Optuna suggest calls
    study.py        the Optuna study: storage, sampler, pruner, the budget, heartbeats and retries
    state.py        sweep.json (the set-up, every trial's params, status, value and run directories)
    orchestrate.py  start a sweep, one worker's ask / train / tell loop, the ranked table
    executors.py    where the trials run: this process, a pool of processes, or Ray
    ray.py          the Ray executor (Ray is optional and imported only when a sweep asks for it)
    trial.py        one trial, in whichever process runs it: train its seeds, report epochs, heartbeat

Imports go one way: ``orchestrate`` uses the others, ``executors`` uses ``ray``
and ``trial``, which use ``study``; ``space`` and ``state`` import nothing from
here. Nothing here imports TensorFlow or Optuna at the top: ``run_trial`` and
the study's functions do, in the process that needs them. This file imports
nothing either, so that ``nnrun --help`` (which loads ``command``) stays fast.
"""

from typing import Any

__all__ = ["read_state", "resume_state", "start_sweep", "work"]


def __getattr__(name: str) -> Any:
    if name == "read_state":
        from nnrun.sweep.state import read_state

        return read_state
    if name in ("resume_state", "start_sweep", "work"):
        from nnrun.sweep import orchestrate

        return getattr(orchestrate, name)
    raise AttributeError(name)
