"""Sweeps: one config trained many times with some keys varied, each trial an ordinary run directory.

The files, in the order a sweep goes through them::

    space.py        the grid: --grid options and the sweep: section, ranges, expansion, random sampling
    state.py        sweep.json (the grid, every trial's params, status and run directory) and the sweep folder
    orchestrate.py  start, execute and resume a sweep, keeping sweep.json current; the ranked table
    executors.py    where the trials run: this process, a pool of processes, or Ray
    ray.py          the Ray executor (Ray is optional and imported only when a sweep asks for it)
    trial.py        one trial, in whichever process runs it: pre-flight, train, a result dict

Imports go one way: ``orchestrate`` uses the others, ``executors`` uses ``ray``
and ``trial``, ``ray`` uses ``trial``; ``space``, ``state`` and ``trial`` import
nothing from here. Nothing here imports TensorFlow; ``run_trial`` does, in
whichever process runs the trial.
"""

from nnrun.sweep.orchestrate import execute, resume_state, start_sweep
from nnrun.sweep.state import read_state

__all__ = ["execute", "read_state", "resume_state", "start_sweep"]
