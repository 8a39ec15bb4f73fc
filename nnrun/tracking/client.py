"""The MLflow side of a sync: find what earlier syncs wrote, create or update, upload; and what the CLI prints.

Idempotent by construction: each MLflow run carries the nnrun id as a tag (``nnrun.run_id``, or
``nnrun.sweep_id`` for a sweep's parent run), found with ``search_runs`` before anything is written. On an
update, params already there are kept (MLflow never changes a param), metric points are added only for the
steps MLflow lacks (a run synced while it trained gains its later epochs), tags and status are written again,
and a file is uploaded only when its size or modification time differs from the last upload's (the tag
``nnrun.artifacts`` keeps them, written after the uploads; an artefact of the same name is replaced).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.errors import ConfigError, NnrunError, RunDirError, first_line
from nnrun.sweep.state import read_state
from nnrun.tracking import mapping as mp
from nnrun.tracking.targets import (
    DEFAULT_EXPERIMENT,
    check_reachable,
    find_targets,
    http_limits,
    import_mlflow,
    resolve_tracking_uri,
)


@dataclass
class Synced:
    """One MLflow run written by a sync."""

    path: Path
    kind: str  # "run" or "sweep"
    run_id: str  # MLflow's
    created: bool
    status: str  # nnrun's
    parent_id: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class SyncResult:
    tracking_uri: str
    experiment: str
    experiment_id: str
    synced: list[Synced]
    notes: list[str]


def sync(paths: list[str | Path], *, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> SyncResult:
    """Write every run and sweep under ``paths`` to MLflow, creating or updating one MLflow run each.

    Args:
        paths: run directories, sweep folders or runs folders.
        tracking_uri: a server (``http://127.0.0.1:5000``) or a store MLflow opens itself (``sqlite:///x.db``);
            None: ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``.
        experiment: the MLflow experiment, created when missing.

    Raises:
        RunDirError: a path is not a run, sweep or runs folder, or a run's files are corrupt.
        ConfigError: MLflow is not installed, it refuses the tracking URI, or the experiment is deleted.
        NnrunError: the tracking server does not answer, or refuses a request.

    Example:
        >>> sync(["runs/sweep-20261123-104442-diabetes_sweep"], tracking_uri="http://127.0.0.1:5000")
    """
    uri = resolve_tracking_uri(tracking_uri)
    targets, notes = find_targets(paths)
    check_reachable(uri)
    import_mlflow()
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with http_limits():
        try:
            client = MlflowClient(tracking_uri=uri)
            experiment_id = _experiment_id(client, experiment, local_artifact_root(uri))
        except MlflowException as exc:
            raise ConfigError(f"--tracking-uri {uri}: {first_line(exc)}") from None
        writer = _Writer(client, experiment_id)
        synced: list[Synced] = []
        damaged: list[RunDirError] = []
        try:
            for target in targets:
                try:
                    synced += writer.sweep(target.path) if target.kind == "sweep" else [writer.run(rd.RunDir(target.path))]
                except RunDirError as exc:  # a damaged run among many: the others are synced, it is named
                    damaged.append(exc)
                    notes.append(f"skipped {target.path}: {exc}")
        except MlflowException as exc:
            raise NnrunError(f"MLflow at {uri}: {first_line(exc)} ({len(synced)} runs synced before; "
                             "syncing again continues without duplicates).") from None
    if damaged and not synced:  # the one run given, or every run, is damaged: an error, not a sync of nothing
        raise damaged[0]
    return SyncResult(uri, experiment, experiment_id, synced, notes)


def render_sync(result: SyncResult) -> list[str]:
    """The lines to print (rich markup): one per MLflow run, trials indented under their sweep; then where to look."""
    from rich.markup import escape

    lines = [f"[yellow]note:[/] {escape(note)}" for note in result.notes]
    for item in result.synced:
        indent = "  " if item.parent_id else ""
        lines.append(f"{indent}{'created' if item.created else 'updated'} {item.kind} {item.run_id} ({item.status}) "
                     f"<- [cyan]{escape(str(item.path))}[/]")
        lines += [f"{indent}  [dim]note:[/] {escape(note)}" for note in item.notes]
    created = sum(item.created for item in result.synced)
    lines.append(f"{len(result.synced)} MLflow runs ({created} new) in experiment '{escape(result.experiment)}' "
                 f"at {escape(result.tracking_uri)}")
    if result.tracking_uri.startswith(("http://", "https://")):
        lines.append(f"open {result.tracking_uri.rstrip('/')}/#/experiments/{result.experiment_id}")
    else:
        lines.append(f"view them: mlflow ui --backend-store-uri {escape(result.tracking_uri)}")
    return lines


def local_artifact_root(tracking_uri: str) -> str | None:
    """For a sqlite store, ``mlruns/`` beside the database file (MLflow would use ``./mlruns`` wherever the
    first sync happened to run); None for a server, which decides itself."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri == f"{prefix}:memory:":
        return None
    return (Path(tracking_uri[len(prefix):]).expanduser().absolute().parent / "mlruns").as_uri()


def _experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name, artifact_location=artifact_location)
    if found.lifecycle_stage == "deleted":
        raise ConfigError(f"MLflow experiment '{name}' is deleted; restore it (mlflow experiments restore "
                          f"--experiment-id {found.experiment_id}) or pass --experiment with another name.")
    return found.experiment_id


class _Writer:
    """Writes runs and sweeps into one experiment, finding earlier syncs by their nnrun id tag."""

    def __init__(self, client: Any, experiment_id: str):
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

        self.client = client
        self.experiment_id = experiment_id
        self.param_limit = MAX_PARAM_VAL_LENGTH

    def run(self, run: rd.RunDir, parent_id: str | None = None) -> Synced:
        info = run.read_run()
        status = rd.effective_status(info, run.path)
        config = info["config"] if isinstance(info.get("config"), dict) else run.read_config()
        metrics = run.read_metrics() if run.file(rd.METRICS).is_file() else {}
        history = run.read_history()  # every file read before the MLflow run is made: a corrupt one makes none
        params, notes = mp.run_params(config, self.param_limit)
        tags = mp.run_tags(info, status, run.path)
        if parent_id:
            tags[mp.PARENT_TAG] = parent_id
        mlflow_run, created = self._open(mp.RUN_ID_TAG, mp.run_id(info, run.path), info.get("started"), tags)
        logged = mlflow_run.data.params
        notes += [f"param {k!r} is {logged[k]!r} in MLflow and {v!r} here; MLflow keeps the first (params never change)"
                  for k, v in params.items() if k in logged and logged[k] != v]
        points = self._missing(mlflow_run, mp.run_metrics(info, history, metrics))
        self._log(mlflow_run, params, tags, points)
        uploaded = json.loads(mlflow_run.data.tags.get(mp.ARTIFACTS_TAG) or "{}")
        present = {name: _stamp(run.file(name)) for name in mp.ARTIFACTS if run.file(name).is_file()}
        for name, stamp in present.items():
            if uploaded.get(name) != stamp:  # new or changed since the last sync (report.html, a resumed run's model)
                self.client.log_artifact(mlflow_run.info.run_id, str(run.file(name)))
        self.client.set_tag(mlflow_run.info.run_id, mp.ARTIFACTS_TAG, json.dumps(present, separators=(",", ":")))
        if not run.file(rd.MODEL).is_file():
            notes.append(f"no {rd.MODEL}: synced without a model")
        self._set_status(mlflow_run, status, info.get("finished"))
        return Synced(run.path, "run", mlflow_run.info.run_id, created, status, parent_id, notes)

    def sweep(self, sweep_dir: Path) -> list[Synced]:
        state = read_state(sweep_dir)
        status = mp.sweep_status(state)
        tags = mp.sweep_tags(state, status, sweep_dir)
        parent, created = self._open(mp.SWEEP_ID_TAG, tags[mp.SWEEP_ID_TAG], state.started, tags)
        self._log(parent, mp.sweep_params(state), tags, [])
        self.client.log_artifact(parent.info.run_id, str(sweep_dir / rd.SWEEP))
        synced = [Synced(sweep_dir, "sweep", parent.info.run_id, created, status)]
        for trial in state.trials:
            for relative in [*trial.previous_run_dirs, *(trial.run_dirs or [trial.run_dir])]:
                if not relative:
                    continue
                try:
                    synced.append(self.run(rd.open_run(sweep_dir / relative), parent.info.run_id))
                except RunDirError as exc:
                    synced[0].notes.append(f"trial {trial.index} not synced: {exc}")
        self._set_status(parent, status, state.finished)
        return synced

    def _open(self, tag: str, value: str, started: str | None, tags: dict[str, str]) -> tuple[Any, bool]:
        """The MLflow run an earlier sync made for ``value`` (the oldest, if several), or a new one."""
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{tag}` = {_quoted(value)}",
                                        order_by=["attributes.start_time ASC"], max_results=10)
        if found:
            return found[0], False
        return self.client.create_run(self.experiment_id, start_time=mp.ms(started), run_name=value, tags=tags), True

    def _log(self, mlflow_run: Any, params: dict[str, str], tags: dict[str, str], points: list[mp.Point]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        self.client.log_batch(
            mlflow_run.info.run_id,
            metrics=[Metric(key, value, timestamp, step) for key, value, timestamp, step in points],
            params=[Param(k, v) for k, v in params.items() if k not in mlflow_run.data.params],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )

    def _missing(self, mlflow_run: Any, points: list[mp.Point]) -> list[mp.Point]:
        """The points whose (key, step) MLflow does not have yet."""
        known = mlflow_run.data.metrics
        steps = {key: {m.step for m in self.client.get_metric_history(mlflow_run.info.run_id, key)}
                 for key in {p[0] for p in points} if key in known}
        return [p for p in points if p[3] not in steps.get(p[0], ())]

    def _set_status(self, mlflow_run: Any, status: str, finished: str | None) -> None:
        target = mp.MLFLOW_STATUS.get(status, "FAILED")
        if target != "RUNNING":
            self.client.set_terminated(mlflow_run.info.run_id, target, end_time=mp.ms(finished))
        elif mlflow_run.info.status != "RUNNING":  # synced when it had stopped, running again (resumed)
            self.client.update_run(mlflow_run.info.run_id, status="RUNNING")


def _stamp(path: Path) -> str:
    """``SIZE:MTIME_NS``: what tells a file changed since its upload, as rsync tells it, without reading it."""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _quoted(value: str) -> str:
    """``value`` as a string literal of MLflow's search syntax."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise RunDirError(f"the run id {value!r} holds both kinds of quote, which MLflow's search cannot match; rename the folder.")
