"""What a run directory or a sweep becomes in MLflow: params, metrics, tags and the files to upload.

Plain values in, plain values out (no MLflow calls), so the choices here are testable without a server.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.compare.records import flatten
from nnrun.sweep.state import SweepState

RUN_ID_TAG = "nnrun.run_id"
SWEEP_ID_TAG = "nnrun.sweep_id"
PARENT_TAG = "mlflow.parentRunId"
ARTIFACTS_TAG = "nnrun.artifacts"  # {file: "SIZE:MTIME_NS"} as last uploaded: an unchanged file is not sent again
#: nnrun status -> MLflow status. A crashed run (its process gone without a word) is KILLED, like an interrupted one.
MLFLOW_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "failed": "FAILED", "interrupted": "KILLED", "crashed": "KILLED",
                 "running": "RUNNING"}
#: The run directory's files uploaded as artefacts, when present (the test split's evaluation files included).
ARTIFACTS = (rd.CONFIG, rd.RUN, rd.METRICS, rd.HISTORY, rd.SUMMARY, rd.PREPROCESSING, rd.LOG, rd.CURVES,
             *rd.evaluation_files().values(), rd.REPORT, rd.MODEL)
#: A tag value within every MLflow version's limit (5,000 characters before 2.?, 8,000 now).
TAG_VALUE_LIMIT = 5000
_BAD_NAME = re.compile(r"[^/\w.\- :]")  # what MLflow refuses in a param, metric or tag name
Point = tuple[str, float, int, int]  # a metric: key, value, timestamp (ms), step


def mlflow_name(key: str) -> str:
    """A config key as MLflow takes it: list indices as ``--set`` writes them (``layers[0]`` -> ``layers.0``),
    and ``_`` for the characters MLflow refuses (brackets, parentheses, ...)."""
    return _BAD_NAME.sub("_", re.sub(r"\[(\d+)\]", r".\1", key))


def param_value(value: Any) -> str:
    """A config value as YAML would write it inline (``true``, ``null``, ``["accuracy"]``), so that a param's key
    and value paste back into ``--set KEY=VALUE``."""
    if isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value, default=str)


def run_params(config: dict[str, Any], limit: int) -> tuple[dict[str, str], list[str]]:
    """The flattened config as params (``model.layers.0.units`` -> ``"64"``), and notes on what was changed.

    A value longer than ``limit`` (MLflow's limit: 6,000 characters in MLflow 3) is cut; ``config.yaml``
    among the artefacts keeps it whole.
    """
    params: dict[str, str] = {}
    notes: list[str] = []
    for key, value in flatten(config):
        name = mlflow_name(key)
        if name != re.sub(r"\[(\d+)\]", r".\1", key):
            notes.append(f"param {key!r} is named {name!r} in MLflow, which refuses some characters in names")
        text = param_value(value)
        if len(text) > limit:
            notes.append(f"param {name!r} is {len(text):,} characters long; cut to MLflow's limit of {limit:,}")
            text = text[:limit]
        params[name] = text
    return params, notes


def run_tags(info: dict[str, Any], status: str, path: Path) -> dict[str, str]:
    """Tags from ``run.json``: the nnrun id and status, seed, dataset, host, error, versions and git commit."""
    commit = info.get("git_commit")
    tags = {
        RUN_ID_TAG: run_id(info, path), "nnrun.kind": "run", "nnrun.name": info.get("name"), "nnrun.status": status,
        "nnrun.seed": info.get("seed"), "nnrun.dataset": info.get("dataset") or (info.get("signature") or {}).get("dataset"),
        "nnrun.host": info.get("host"), "nnrun.path": str(path.resolve()), "nnrun.error": info.get("error"),
        "nnrun.git_commit": commit, "mlflow.source.git.commit": commit, "mlflow.source.name": "nnrun",
    }  # fmt: skip
    for library, version in (info.get("versions") or {}).items():
        tags[f"nnrun.version.{mlflow_name(library)}"] = version
    return {k: cut(str(v)) for k, v in tags.items() if v is not None}


def run_id(info: dict[str, Any], path: Path) -> str:
    """The nnrun run id: ``run.json``'s, else the folder's name."""
    return str(info.get("id") or path.name)


def run_metrics(info: dict[str, Any], history: list[dict[str, Any]], metrics: dict[str, Any]) -> list[Point]:
    """Every ``history.csv`` cell (step: the epoch) and ``metrics.json``'s test values (``test_loss``, step: the
    last epoch). Timestamps come from the run's own clock (start + the epochs' ``time_s``), not the sync's."""
    start = ms(info.get("started")) or 0
    points: list[Point] = []
    elapsed = 0.0
    for number, row in enumerate(history, start=1):
        elapsed += row.get("time_s") or 0.0
        step = int(row.get("epoch", number))
        points += [(mlflow_name(k), float(v), start + int(elapsed * 1000), step) for k, v in row.items() if k != "epoch"]
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    end = ms(info.get("finished")) or start + int(elapsed * 1000)
    last = int(metrics.get("epochs_run") or len(history))
    points += [(f"test_{mlflow_name(k)}", float(v), end, last) for k, v in test.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return points


def sweep_status(state: SweepState) -> str:
    """The sweep's status; ``crashed`` when it says running but its process is gone (as for a run)."""
    return rd.effective_status({"status": state.status, "host": state.host, "pid": state.pid})


def sweep_params(state: SweepState) -> dict[str, str]:
    """The sweep's set-up (MLflow params never change, so not how far it got): search, metric, budget, sampler seed,
    pruner, repeats, and every key's values."""
    params = {"sweep.mode": state.mode, "sweep.metric": state.metric, "sweep.budget": str(state.budget),
              "sweep.seed": str(state.seed), "sweep.prune": state.prune, "sweep.repeats": str(state.repeats)}
    for key, values in (state.grid or {}).items():
        params[f"sweep.grid.{mlflow_name(key)}"] = cut(param_value(values), 500)
    return params


def sweep_tags(state: SweepState, status: str, path: Path) -> dict[str, str]:
    return {SWEEP_ID_TAG: state.id or path.name, "nnrun.kind": "sweep", "nnrun.name": state.name,
            "nnrun.status": status, "nnrun.metric": state.metric, "nnrun.path": str(path.resolve())}


def cut(text: str, limit: int = TAG_VALUE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ms(iso: str | None) -> int | None:
    """An ISO time from run.json or sweep.json in milliseconds since the epoch, as MLflow counts."""
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except (TypeError, ValueError):
        return None
