"""Sweeps: one config trained many times over a search space, on Optuna; each trial an ordinary run directory.

``command`` is ``nnrun sweep``; ``plan`` checks what a sweep will do; ``orchestrate`` starts it and runs a worker
over ``space``, ``study``, ``state``, ``trial`` (and ``jobs``, ``ray``). ``command`` and ``state`` import neither TensorFlow nor Optuna, so that
``nnrun --help`` and ``nnrun mlflow`` stay fast; the rest is imported when a sweep runs.
"""
