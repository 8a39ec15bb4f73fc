"""``nnrun check``: everything ``train`` checks first, shown, with nothing trained and nothing written.

``check_config`` validates the config's schema, then prepares the run as training would
(data, preprocessing, model, loss, metrics, callbacks) and returns what ``nnrun check``
prints: the resolved config, the typed CSV's columns, the data shapes after each step,
the model summary. A schema error is raised by the config loader before this runs, so
it costs no TensorFlow import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_config(config: Any, path: Path) -> list[Any]:
    """Rich renderables for a resolved ``RunConfig``; raises the first problem found, as ``train`` would."""
    from rich.syntax import Syntax
    from rich.text import Text

    out: list[Any] = [f"[green]✓[/] {path}: schema valid",
                      Syntax(config.to_yaml(), "yaml", theme="ansi_dark", background_color="default")]
    if config.sweep is not None:  # its space and metric before TensorFlow loads (then Keras's names), as nnrun sweep
        out.append(sweep_line(config))

    from nnrun.training import model_summary, prepare

    images, sample = config.dataset.name == "images", None
    if images:  # counted by listing; only a sample (as --smoke takes) is decoded to check the model
        overview, sample = image_overview(config)
        out.extend(overview)
    # No XLA probe: it trains; check shows its cached timings only.
    prepared = prepare(config, smoke=images, dataset=sample, probe=False)
    data = prepared.dataset
    if data.columns:
        out.append(columns_table(data))
    out.extend(f"[yellow]note:[/] {note}" for note in data.notes)
    out.append(_table("data shapes after each preprocessing step", ("step", "x (train)", "y (train)"),
                      [(step, str(x), str(y)) for step, x, y in prepared.shapes]))
    out.append(Text(model_summary(prepared.model)))
    out.append(precision_line(config, prepared.model))
    out.append(prepared.jit.describe() if not (images and config.training.jit_compile == "auto") else
               'XLA (jit_compile "auto"): decided when nnrun train starts (the probe times the decoded images; '
               "check decodes a sample only)")
    out.append(f"[green]✓[/] {path}: data, model, loss, metrics and callbacks fit together "
               f"(steps_per_execution {prepared.steps_per_execution})")
    return out


def sweep_line(config: Any) -> str:
    """The sweep that the config's ``sweep:`` section describes, checked as ``nnrun sweep`` checks it first: its
    schema, space and metric (``plan``, before TensorFlow loads), then Keras's names and the data in each value."""
    from nnrun.sweep.plan import plan
    from nnrun.sweep.space import check_fixed

    if not config.sweep.grid:  # the space comes from nnrun sweep's --grid options
        return "[yellow]note:[/] the sweep: section has no grid; nnrun sweep checks it with the --grid options it is given"
    sweep = plan(config)
    check_fixed(sweep["base_config"], sweep["grid"])
    extras = [f"{sweep['prune']} pruning" if sweep["prune"] != "none" else "",
              f"{sweep['repeats']} seeds each" if sweep["repeats"] > 1 else ""]
    return (f"[green]✓[/] sweep: {sweep['mode']} search, {sweep['budget']} trials over {', '.join(sweep['grid'])}; "
            f"ranked by {sweep['metric']} ({'higher' if sweep['direction'] == 'maximize' else 'lower'} is better){''.join(f', {e}' for e in extras if e)}")


def image_overview(config: Any) -> tuple[list[Any], Any]:
    """An image folder's classes, files per class and split, image size and class imbalance, from listing alone;
    and the sample of it that ``check`` decodes (the folder is listed once)."""
    import numpy as np

    from nnrun.datasets import LOADERS, SMOKE_TEST, SMOKE_TRAIN, decode_dataset, make_splits

    listed = LOADERS["images"](config.dataset, config.training.loss)
    data = make_splits(listed, config.dataset)
    splits = [("train", data.y_train), ("validation", data.y_val), ("test", data.y_test)]
    splits = [(name, y) for name, y in splits if y is not None and (name != "validation" or y is not data.y_test)]
    counts = {name: np.bincount(y, minlength=data.num_classes) for name, y in splits}
    rows = [(c, *(f"{counts[n][i]:,}" for n, _ in splits)) for i, c in enumerate(data.class_names)]
    rows.append(("total", *(f"{len(y):,}" for _, y in splits)))
    headings = ("class", *(n for n, _ in splits))
    table = _table(f"{data.num_classes} classes in {data.source}", headings, rows, right=headings[1:])
    train = counts["train"]
    height, width = config.dataset.image_size
    largest, smallest = int(np.argmax(train)), int(np.argmin(train))
    ratio = train[largest] / max(train[smallest], 1)
    line = (f"image size {height}x{width} {config.dataset.color_mode}"
            f"{', centre-cropped to that shape' if config.dataset.crop_to_aspect_ratio else ''}; class imbalance "
            f"(train): {ratio:.2f}x, largest '{data.class_names[largest]}' {train[largest]:,}, smallest "
            f"'{data.class_names[smallest]}' {train[smallest]:,}")
    if config.dataset.validation == "test":
        line += "; validation: the test split"
    sample = make_splits(listed, config.dataset, smoke=True)
    decoding = f"checking the model on a sample of the images (decoded: at most {SMOKE_TRAIN} train, {SMOKE_TEST} test)"
    return [table, line, decoding], decode_dataset(sample, sample.image)


def precision_line(config: Any, model: Any) -> str:
    """The precision in use, whether this CPU computes bfloat16 natively, and a suggestion where it pays."""
    from nnrun.distribution import cpu_bfloat16, gpu_count

    found = cpu_bfloat16()
    line = (f"precision: {config.training.precision} (Keras policy {model.dtype_policy.name}); this CPU "
            + (f"has {found}" if found else "has no bfloat16 instructions (no AMX or AVX512-BF16)"))
    if config.training.precision == "float32" and (found or gpu_count()):
        line += "; training.precision: bfloat16 may train faster here (check accuracy: it rounds more)"
    return line


def columns_table(data: Any) -> Any:
    """A typed CSV's columns: type, distinct and missing counts, so that nothing is guessed silently."""
    from nnrun.datasets.table import column_summary

    table = _table(f"columns (label '{data.label.get('label')}': {data.task})", ("column", "type", "distinct", "missing"),
                   column_summary(data.columns), right=("distinct", "missing"))
    table.title_justify = "left"
    return table


def _table(title: str, headings: tuple[str, ...], rows: list[tuple[str, ...]], right: tuple[str, ...] = ()) -> Any:
    from rich.table import Table

    table = Table(title=title, header_style="bold")
    for heading in headings:
        table.add_column(heading, justify="right" if heading in right else "left")
    for row in rows:
        table.add_row(*row)
    return table
