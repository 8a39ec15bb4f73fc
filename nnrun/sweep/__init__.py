"""Sweeps: one config trained many times over a search space, on Optuna; each trial an ordinary run directory.

``command`` is ``nnrun sweep``; ``orchestrate`` starts a sweep and runs a worker over ``space``, ``study``,
``state``, ``trial`` (and ``ray``). Nothing here imports TensorFlow or Optuna at the top, so that ``nnrun --help``
stays fast.
"""
