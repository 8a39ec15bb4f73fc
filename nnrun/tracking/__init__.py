"""Runs into MLflow (``nnrun mlflow sync``): run directories and sweeps written to an MLflow tracking store.

What one run directory becomes (one MLflow run, named after the nnrun run id):

    params     the resolved config, flattened with the keys ``--set`` takes (``model.layers.0.units``)
    metrics    every ``history.csv`` column, one step per epoch; ``metrics.json``'s test values (``test_accuracy``)
    tags       ``nnrun.run_id`` (how a later sync finds the run again), status, seed, dataset, versions, git commit
    artifacts  the run directory's files under the same names (config, run.json, metrics, figures, report,
               ``model.keras``); not ``checkpoints/`` or ``tensorboard/``

A sweep folder becomes a parent run (``nnrun.sweep_id``, the grid as params, ``sweep.json``) with its trials
nested under it (``mlflow.parentRunId``). Syncing again updates the same MLflow runs; nothing is duplicated.

The files, in the order a sync goes through them::

    command.py  ``nnrun mlflow sync``: the Typer sub-app that cli.py mounts (typer only, so ``--help`` stays light)
    targets.py  what to sync (runs, sweeps, runs folders) and whether the server answers: standard library only,
                so these errors come before MLflow is imported, and within seconds
    mapping.py  what a run directory or a sweep becomes in MLflow: params, metrics, tags, artefact names
    client.py   the MLflow side: ``sync`` finds earlier syncs by tag, creates or updates, uploads;
                ``render_sync`` gives the lines the command prints

MLflow is an optional extra (``pip install 'nnrun[mlflow]'``), imported only inside ``sync``. This file
imports nothing, so that mounting the command costs ``nnrun --help`` nothing: import ``sync`` from
``nnrun.tracking.client``.
"""
