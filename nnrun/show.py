"""``nnrun show``: one run at a glance, its facts, config, metrics, evaluations, model summary and files.

Like ``nnrun compare``, it reads only the run's small files and never imports
TensorFlow, numpy or pandas.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.compare import STATUS_STYLES, format_duration, metrics_table


def show_run(path: str | Path) -> list[Any]:
    """Rich renderables for one run: status and facts, the config, metrics, evaluations, summary, files.

    Raises:
        RunDirError: not a run directory, or a corrupt ``run.json``.
    """
    from rich.panel import Panel
    from rich.syntax import Syntax
    from rich.table import Table
    from rich.text import Text

    run = rd.open_run(path)
    info = run.read_run()
    status = rd.effective_status(info, run.path)
    out: list[Any] = [f"[bold]{run.id}[/]  [{STATUS_STYLES.get(status, 'bold')}]{status}[/]"]
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim")
    facts.add_column()
    for label, value in _facts(info, status):
        facts.add_row(label, Text(value))
    out.append(facts)

    notes: list[str] = []
    if run.file(rd.CONFIG).is_file():
        text = run.file(rd.CONFIG).read_text(errors="replace")
        out.append(Panel(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"),
                         title=rd.CONFIG, title_align="left", expand=False))  # fmt: skip
    else:
        notes.append(f"no {rd.CONFIG}")
    metrics = _read(run.file(rd.METRICS), notes)
    if status == "completed" and not run.file(rd.METRICS).is_file():
        notes.append(f"no {rd.METRICS}, though the run completed (deleted?): nnrun evaluate {run.path} measures it again")
    if metrics:
        best = metrics.get("best_epoch")
        monitor = "val_loss" if metrics.get("best_validation") else "loss"  # the best validation row's epoch
        out.append(metrics_table(metrics, caption=f"best epoch {best} of {metrics.get('epochs_run')} (lowest {monitor})"
                                 if best else None))  # fmt: skip
    for evaluation in sorted(run.path.glob(rd.evaluation_files("*")["json"])):
        result = _read(evaluation, notes)
        if result:
            out.append(_evaluation_line(evaluation.name, result))
    if run.file(rd.SUMMARY).is_file():  # already laid out by Keras: printed as it is, never re-wrapped
        out.append(f"[bold]{rd.SUMMARY}[/]")
        out.append(Text(run.file(rd.SUMMARY).read_text(errors="replace").rstrip(), no_wrap=True, overflow="crop"))
    files = Table(title="files", header_style="bold", title_justify="left")
    files.add_column("file")
    files.add_column("size", justify="right")
    for file in sorted(p for p in run.path.rglob("*") if p.is_file()):
        files.add_row(str(file.relative_to(run.path)), _size(file.stat().st_size))
    out.append(files)
    out.extend(f"[yellow]note:[/] {n}" for n in notes)
    return out


def _facts(info: dict[str, Any], status: str) -> list[tuple[str, str]]:
    model = info.get("model") if isinstance(info.get("model"), dict) else {}
    versions = info.get("versions") if isinstance(info.get("versions"), dict) else {}
    facts = [
        ("name", info.get("name")),
        ("dataset", info.get("dataset")),
        ("started", (info.get("started") or "").replace("T", " ")),
        ("finished", (info.get("finished") or "").replace("T", " ")),
        ("duration", format_duration(info["duration_s"]) if isinstance(info.get("duration_s"), (int, float)) else None),
        ("epochs run", info.get("epochs_run")),
        ("model", f"{model.get('layers')}, {model['params']:,} parameters" if model.get("params") is not None else None),
        ("seed", info.get("seed")),
        ("config file", info.get("config_file")),
        ("host", f"{info.get('host')}" + (f" (pid {info.get('pid')})" if status in ("running", "crashed") else "")),
        ("git commit", info.get("git_commit")),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("command", shlex.join(info["argv"]) if isinstance(info.get("argv"), list) else None),
        ("pruned" if status == "pruned" else "error", info.get("error")),  # a pruned run's reason is no error
    ]
    if status == "crashed":
        facts.append(("note", f"{rd.RUN} says running, but its process is gone: the run crashed."))
    return [(label, str(value)) for label, value in facts if value not in (None, "", "None")]


def _read(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return rd.read_json(path)
    except rd.RunDirError as exc:
        notes.append(str(exc))
        return {}


def _evaluation_line(name: str, result: dict[str, Any]) -> str:
    parts = [f"{k} {v:.4f}" for k, v in (result.get("metrics") or {}).items() if isinstance(v, (int, float))]
    for key, label in (("macro_f1", "macro F1"), ("weighted_f1", "weighted F1")):
        if isinstance(result.get(key), (int, float)):
            parts.append(f"{label} {result[key]:.4f}")
    auc = (result.get("binary") or {}).get("roc_auc")
    if isinstance(auc, (int, float)):
        parts.append(f"ROC AUC {auc:.4f}")
    return f"[bold]{name}[/] ({result.get('split', '?')}, {result.get('samples', '?')} samples): " + "   ".join(parts)


def _size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
