"""Sweeps: one config trained many times over a search space, on Optuna; each trial an ordinary run directory.

``command`` is ``nnrun sweep``; ``orchestrate`` starts a sweep and runs a worker over ``space``, ``study``,
``state``, ``trial`` (and ``ray``). Nothing here imports TensorFlow or Optuna at the top, and this file imports
nothing, so that ``nnrun --help`` stays fast.
"""

from typing import Any

__all__ = ["read_state", "resume_state", "start_sweep", "work"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(name)
    from nnrun.sweep import orchestrate

    return getattr(orchestrate, name)
