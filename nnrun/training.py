"""Training: prepare data and model, compile, ``fit`` with Keras callbacks, write the run directory.

The flow of ``train``:

1. ``prepare``: load the dataset, fit preprocessing on the training split,
   build the model on the preprocessed input shape, resolve the optimizer,
   loss, metrics and callbacks by their Keras names, and check that model,
   labels and loss fit together. Nothing is written yet: a bad config fails
   here, before any run directory exists.
2. Create the run directory, write ``config.yaml``, ``run.json`` (running),
   ``preprocessing.json`` and ``summary.txt``.
3. ``model.fit`` with our callbacks (progress, ``history.csv``, checkpoints,
   clean stop on Ctrl-C / SIGTERM) plus the config's Keras callbacks.
4. Evaluate on the test split, save ``model.keras``, ``metrics.json`` and
   ``curves.png``, and mark the run ``completed``.
"""

from __future__ import annotations

import math
import os
import random
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from nnrun import rundir as rd
from nnrun.atomic import atomic_path, write_json_atomic, write_text_atomic
from nnrun.backbones import input_scale
from nnrun.backbones import register as register_layers
from nnrun.callbacks import StopFlag, make_run_callbacks, restore_seed_generator_states, stop_on_signals
from nnrun.config import RunConfig
from nnrun.console import Reporter
from nnrun.datasets import Dataset, load_dataset
from nnrun.distribution import tensorboard_callback
from nnrun.errors import NnrunError, RunDirError, RunInterrupted, first_line
from nnrun.keras_names import check_loss, check_metrics, create_callbacks, create_optimizer
from nnrun.metrics import summarize_metrics
from nnrun.models import build_model, check_compatibility, layer_summary
from nnrun.preprocessing import EncodeColumns, Pipeline

#: Batch size for evaluation and prediction: large batches are faster and the
#: mean loss does not depend on it beyond float rounding. ``evaluate`` uses the
#: same value so that it reproduces ``metrics.json``.
EVAL_BATCH_SIZE = 256  # 1024 was no faster and cost the CNN 350 MB more peak memory

#: Aim for this many samples per call into the compiled graph when
#: ``steps_per_execution`` is ``auto`` (see ``auto_steps_per_execution``).
AUTO_SAMPLES_PER_EXECUTION = 4096


@dataclass
class Prepared:
    """Everything ``fit`` needs, made without writing anything."""

    config: RunConfig
    dataset: Dataset
    pipeline: Pipeline
    model: Any
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    steps_per_execution: int
    shapes: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    jit: Any = None  # nnrun.xla.JitChoice; None for a resumed run (its checkpoint keeps the setting)

    @property
    def validation_data(self) -> tuple[np.ndarray, np.ndarray] | None:
        return None if self.x_val is None else (self.x_val, self.y_val)


# ------------------------------------------------------------------ prepare


def auto_steps_per_execution(n_train: int, batch_size: int) -> int:
    """Batches per call into the compiled graph: about AUTO_SAMPLES_PER_EXECUTION samples, at most an epoch."""
    steps_per_epoch = max(1, math.ceil(n_train / batch_size))
    return max(1, min(steps_per_epoch, AUTO_SAMPLES_PER_EXECUTION // batch_size))


def prepare(config: RunConfig, *, smoke: bool = False, dataset: Dataset | None = None, probe: bool = True) -> Prepared:
    """Load data, fit preprocessing, build and compile the model; write nothing.

    Raises:
        ConfigError / DataError: anything wrong with the config, the data or their fit.
    """
    from nnrun.tf import import_keras

    keras = import_keras()
    keras.utils.set_random_seed(config.run.seed)
    data = dataset or load_dataset(config.dataset, smoke=smoke, loss=config.training.loss)
    if config.dataset.validation == "test" and any(c.kwargs().get("restore_best_weights") for c in config.training.callbacks):
        data.notes.append("the test split is also the validation data and a callback keeps the best epoch on it "
                          "(restore_best_weights), so the test figures are chosen on the test set. Hold out part of "
                          "train instead: dataset.validation: 0.1.")
    pipeline = Pipeline.from_config(config.preprocessing)
    if data.typed:  # a typed CSV's raw cells become numbers first, with state learned on the training split
        pipeline.steps.insert(0, EncodeColumns(data.columns, impute=data.impute))
    sample = min(len(data.x_train), 8)
    x_train, y_train = pipeline.fit_transform(data.x_train, data.y_train)
    shapes = _shapes(pipeline, data, sample)
    x_test, y_test = pipeline.transform(data.x_test, data.y_test)
    x_val = y_val = None
    if data.x_val is not None:
        x_val, y_val = pipeline.transform(data.x_val, data.y_val)

    from nnrun.distribution import model_scope

    spe = config.training.steps_per_execution
    if spe == "auto":  # one step per call under a strategy (nnrun.distribution.MIRRORED_LIMITS)
        spe = 1 if config.distribution.strategy != "none" else auto_steps_per_execution(len(x_train), config.training.batch_size)
    extra_layers = label_scaling_layers(config, data, y_train)

    def build(jit: bool) -> Any:
        # Variables are made inside the tf.distribute strategy's scope and dtype policy (nnrun.distribution).
        with model_scope(config) as layers:
            # Build on the preprocessed shape; names are checked before any layer is made.
            model = build_model(layers + extra_layers, x_train.shape[1:], name=config.run.name or "model",
                                input_scale=input_scale(config))
            check_compatibility(model, y_train, data.num_classes, config, pipeline.label_encoding, x_val is not None,
                                task=data.task)
            optimizer = create_optimizer(config.training.optimizer)
            check_loss(config.training.loss)
            check_metrics(config.training.metrics)
            create_callbacks(config.training.callbacks)  # checked now; fresh instances are made for fit
            model.compile(optimizer=optimizer, loss=config.training.loss, metrics=list(config.training.metrics),
                          steps_per_execution=spe, jit_compile=jit)
        return model

    from nnrun import xla

    rng = random.getstate(), np.random.get_state()
    jit = xla.choose(config, x_train, y_train, spe, build, smoke=smoke, probe=probe)
    if jit.probed:  # start the real model from the seed exactly as it would have without the probe's models
        keras.backend.clear_session()
        keras.utils.set_random_seed(config.run.seed)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
    model = build(jit.enabled)
    return Prepared(config, data, pipeline, model, x_train, y_train, x_test, y_test, x_val, y_val, spe, shapes, jit)


def label_scaling_layers(config: RunConfig, data: Dataset, y_train: np.ndarray) -> list[dict[str, Any]]:
    """``label_scaling: standardize``: a last ``Rescaling`` layer, so the network learns the standardized label.

    The layer multiplies by the training label's std and adds its mean, so the model's output, its loss,
    its metrics and every prediction stay in the label's own units, and the model carries the scaling.
    """
    if not data.regression or getattr(config.dataset, "label_scaling", "none") != "standardize":
        return []
    y = np.asarray(y_train, dtype=np.float64)
    return [{"type": "Rescaling", "scale": float(y.std() or 1.0), "offset": float(y.mean()), "name": "label_scaling",
             "dtype": "float32"}]  # in float32 whatever the precision: bfloat16 keeps ~3 digits of grams


def _shapes(pipeline: Pipeline, data: Dataset, n: int) -> list[tuple[str, tuple, tuple]]:
    """Shapes after each step, with the full number of samples shown."""
    rows = pipeline.shapes(data.x_train[:n], data.y_train[:n])
    total = len(data.x_train)
    return [(step, (total, *x[1:]), (total, *y[1:])) for step, x, y in rows]


def model_summary(model: Any) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda text, *args, **kwargs: lines.append(text), line_length=80)
    return "\n".join(lines).rstrip() + "\n"


def evaluate_arrays(model: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """``model.evaluate`` as a dict, with the batch size ``nnrun evaluate`` uses too."""
    values = model.evaluate(x, y, batch_size=EVAL_BATCH_SIZE, verbose=0, return_dict=True)
    return {k: float(v) for k, v in values.items()}


# ------------------------------------------------------------------ train


@dataclass
class TrainResult:
    run_dir: Path
    status: str
    metrics: dict[str, Any]
    duration_s: float
    stopped: str | None = None  # a signal that came in the last epoch: the run completed, the caller may stop too


def train(
    config: RunConfig,
    *,
    reporter: Reporter,
    argv: list[str],
    now: Callable[[], datetime] = datetime.now,
    smoke: bool = False,
    config_path: str | None = None,
    prepared: Prepared | None = None,
    pruning: Any = None,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Train one config into a new run directory and return where it went (``pruning``: see ``fit_run``; ``extra``:
    more ``run.json`` keys, such as a sweep's ``trial``).

    Raises:
        ConfigError / DataError: before the run directory exists.
        RunInterrupted: after a clean stop on a signal (run.json says ``interrupted``).
        NnrunError: a failure during training (run.json says ``failed``).
    """
    started = now()
    rd.check_runs_dir(config.run.runs_dir)  # before the data, the model and any XLA probe
    prepared = prepared or prepare(config, smoke=smoke)
    model = prepared.model
    params = int(model.count_params())
    run = rd.RunDir(rd.create_run_dir(config.run.runs_dir, config.run.name, started))
    try:
        reporter.attach_log(run.file(rd.LOG))
        run.start(
            name=config.run.name, seed=config.run.seed, argv=argv, now=started, config_path=config_path,
            extra={
                "smoke": smoke,
                "dataset": config.dataset.name,
                "model": {"params": params, "layers": layer_summary(config.model.layers)},
                "steps_per_execution": prepared.steps_per_execution,
                "jit_compile": bool(model.jit_compile),
                "jit_probe": prepared.jit.as_json() if prepared.jit else None,  # nnrun.xla: the decision and timings
                "precision": model.dtype_policy.name,
                "epochs_target": 1 if smoke else config.training.epochs,
                "config": config.to_dict(),  # = config.yaml, for readers of many runs (compare)
                "signature": input_signature(prepared),
                **(extra or {}),
            },
        )  # fmt: skip
        run.write_config(config.to_yaml())
        write_json_atomic(run.file(rd.PREPROCESSING), prepared.pipeline.to_dict())
        summary = model_summary(model)
        write_text_atomic(run.file(rd.SUMMARY), summary)
    except OSError as exc:
        _fail_setup(run, now, exc)
    reporter.print(
        f"[bold]nnrun[/] training [cyan]{config.run.name}[/] on {config.dataset.name}: "
        f"{len(prepared.x_train)} train, {0 if prepared.x_val is None else len(prepared.x_val)} validation, "
        f"{len(prepared.x_test)} test samples; {params:,} parameters; "
        + (f"1 epoch [yellow](smoke; the config's {config.training.epochs})[/]" if smoke else f"{config.training.epochs} epochs"),
        soft_wrap=True,  # one line in a log or a pipe, as the lines below
    )
    if prepared.jit and prepared.jit.setting == "auto":
        reporter.print(prepared.jit.describe(), soft_wrap=True)
    for note in prepared.dataset.notes:  # dropped rows, many categories: said once more where the run is logged
        reporter.print(f"[yellow]note:[/] {note}", soft_wrap=True)
    reporter.log_only(summary)
    return fit_run(run, prepared, reporter=reporter, now=now, epochs=1 if smoke else config.training.epochs,
                   pruning=pruning)


def input_signature(prepared: Prepared) -> dict[str, Any]:
    """The run's input signature: what one raw sample is, the class names, and the learning rate used.

    ``predict``, ``show`` and ``compare`` read it from ``run.json`` instead of the training data.
    """
    learning_rate = float(np.asarray(prepared.model.optimizer.learning_rate))
    return {**prepared.dataset.signature(), "learning_rate": learning_rate}


def _fail_setup(run: rd.RunDir, now: Callable[[], datetime], exc: OSError) -> None:
    message = f"cannot write the run directory {run.path}: {exc.strerror or exc}. Check free space and permissions."
    if exc.filename and not Path(exc.filename).absolute().is_relative_to(run.path.absolute()):
        message = (f"cannot write {exc.filename}: {exc.strerror or exc}. It is outside the run directory: a path the "
                   "config gives (a filename in training.callbacks, say)? Fix that path.")
    try:
        run.finish("failed", now=now(), error=message)
    except Exception:
        pass  # the disk may be full: run.json then still says running, shown as crashed
    raise RunDirError(message) from None


def fit_run(
    run: rd.RunDir,
    prepared: Prepared,
    *,
    reporter: Reporter,
    now: Callable[[], datetime] = datetime.now,
    epochs: int,
    history: list[dict] | None = None,
    pruning: Any = None,
) -> TrainResult:
    """Fit into an existing run directory (from epoch ``len(history)``), evaluate and finish it.

    ``pruning``: a sweep's callback (``callbacks.make_pruning_callback``); when it stops the fit,
    the run ends ``pruned`` after that epoch, without the test evaluation or the final model.
    """
    forbid = os.environ.get("NNRUN_FORBID_TRAINING")
    if forbid:  # the test suite's fast layer: training there is a mistake, reported through this file
        Path(forbid).write_text(f"fit of {run.path}\n")
        raise NnrunError(f"training is switched off here (NNRUN_FORBID_TRAINING={forbid}).")
    config, model = prepared.config, prepared.model
    t0 = time.perf_counter()
    stop = StopFlag()
    validation = prepared.x_val is not None
    callbacks = make_run_callbacks(run, config, validation=validation, reporter=reporter, stop=stop, history=history)
    try:
        callbacks += create_callbacks(config.training.callbacks)
        callbacks += tensorboard_callback(run.path, config) + ([pruning] if pruning is not None else [])
        fit_started = time.perf_counter()
        with stop_on_signals(stop, reporter):
            model.fit(
                prepared.x_train, prepared.y_train,
                validation_data=prepared.validation_data,
                epochs=epochs, initial_epoch=len(history or []),
                batch_size=config.training.batch_size, shuffle=config.training.shuffle,
                # the final test evaluation's batch size: fewer steps per pass, and one traced function for both
                validation_batch_size=EVAL_BATCH_SIZE,
                callbacks=callbacks, verbose=0,
            )  # fmt: skip
            stop.when = "once the run is saved"  # the test evaluation, the model file, the plot
            fit_s = round(time.perf_counter() - fit_started, 3)  # the whole fit() call, as bench/ times plain Keras
            rows = callbacks[0].rows
            if stop.requested and len(rows) < epochs:  # a stop during the last epoch still completes the run
                raise RunInterrupted(
                    f"{stop.signal}: stopped after {len(rows)} completed epoch(s); history and checkpoint kept in "
                    f"{run.path}.", resume=f"nnrun sweep --resume {shlex.quote(str(run.path.parent))}"
                    if (run.path.parent / rd.SWEEP).is_file() else f"nnrun train --resume {run.path}",  # a trial's
                )  # fmt: skip
            if pruning is not None and pruning.reason:
                run.finish("pruned", now=now(), error=pruning.reason, epochs_run=len(rows))
                reporter.print(f"[magenta]{pruning.reason}[/]; run directory: [cyan]{run.path}[/]", soft_wrap=True)
                return TrainResult(run.path, "pruned", {}, time.perf_counter() - t0)
            test = evaluate_arrays(model, prepared.x_test, prepared.y_test)
            if prepared.dataset.regression:  # MAE, RMSE and R² of the test split, in the label's units
                from nnrun.metrics import regression_report

                predicted = model.predict(prepared.x_test, batch_size=EVAL_BATCH_SIZE, verbose=0)
                test.update(regression_report(prepared.y_test, predicted))
            metrics = summarize_metrics(rows, test, validation)
            with atomic_path(run.file(rd.MODEL)) as tmp:
                model.save(tmp)
            from nnrun.plots import plot_curves

            plot_curves(rows, run.file(rd.CURVES), title=config.run.name)
            run.write_metrics(metrics)
            info = run.finish("completed", now=now(), epochs_run=len(rows), fit_s=fit_s, **{k: v for k, v in metrics.items() if k == "diverged_epoch"})
            _print_result(reporter, run, metrics, info["duration_s"])
            return TrainResult(run.path, "completed", metrics, time.perf_counter() - t0, stop.signal)
    except RunInterrupted as exc:
        run.finish("interrupted", now=now(), error=str(exc), epochs_run=len(callbacks[0].rows))
        raise
    except KeyboardInterrupt:
        run.finish("interrupted", now=now(), error="KeyboardInterrupt: stopped at once", epochs_run=len(callbacks[0].rows))
        raise RunInterrupted(f"stopped at once; the completed epochs' files are in {run.path}.") from None
    except NnrunError as exc:
        run.finish("failed", now=now(), error=str(exc))
        raise
    except OSError as exc:
        _fail_setup(run, now, exc)
        raise  # unreachable: _fail_setup raises
    except Exception as exc:
        error = f"{type(exc).__name__}: {first_line(exc) if str(exc).strip() else ''}"
        try:
            run.finish("failed", now=now(), error=error)
        except Exception:
            pass
        raise NnrunError(f"training failed: {error} (run directory {run.path}, status failed).") from exc
    finally:
        reporter.close()


def resume(path: str | Path, *, reporter: Reporter, argv: list[str],
           now: Callable[[], datetime] = datetime.now, pruning: Any = None) -> TrainResult:
    """Continue an interrupted or crashed run from its last completed epoch, in the same directory.

    The model and optimizer state come from ``checkpoints/last.keras``, the
    preprocessing from ``preprocessing.json`` (not refitted), and the random layers' seed
    generators from ``checkpoints/last.json``, so the result matches a run that never stopped.

    Raises:
        RunDirError: the run is complete, still running, or has no checkpoint.
    """
    run = rd.open_run(path)
    info = run.claim_to_resume()
    try:
        prepared, rows, epochs = _reload(run, info)
    except BaseException:
        run.release()  # not resumed: another process may try
        raise
    done = len(rows)
    run.mark_resumed(info, from_epoch=done, argv=argv, now=now())
    reporter.attach_log(run.file(rd.LOG))
    reporter.print(f"[bold]nnrun[/] resuming [cyan]{run.path}[/] at epoch {done + 1}/{epochs}")
    return fit_run(run, prepared, reporter=reporter, now=now, epochs=epochs, history=rows, pruning=pruning)


def _reload(run: rd.RunDir, info: dict[str, Any]) -> tuple[Prepared, list[dict], int]:
    """The run's data, fitted pipeline and last checkpoint; its history up to that epoch; and its epochs."""
    from nnrun.config import validate_config
    from nnrun.tf import import_keras

    config = validate_config(run.read_config(), source=str(run.file(rd.CONFIG)))
    state = rd.read_json(run.file(rd.LAST_CHECKPOINT_STATE))
    rows = run.read_history()[: int(state["epoch"])]
    epochs = int(info.get("epochs_target") or (1 if info.get("smoke") else config.training.epochs))
    # All epochs done: stopped during its last one; fit then runs no epoch and the run is evaluated and finished.
    keras = import_keras()
    keras.utils.set_random_seed(config.run.seed)
    data = load_dataset(config.dataset, smoke=bool(info.get("smoke")), loss=config.training.loss)
    pipeline = Pipeline.from_dict(rd.read_json(run.file(rd.PREPROCESSING)))
    x_train, y_train = pipeline.transform(data.x_train, data.y_train)
    x_test, y_test = pipeline.transform(data.x_test, data.y_test)
    x_val = y_val = None
    if data.x_val is not None:
        x_val, y_val = pipeline.transform(data.x_val, data.y_val)
    register_layers()
    try:
        model = keras.models.load_model(run.file(rd.LAST_CHECKPOINT))
    except Exception as exc:  # noqa: BLE001 - Keras says "File not found" for a file that is there but no .keras zip
        from nnrun.trained import keras_load_error

        raise RunDirError(f"{run.file(rd.LAST_CHECKPOINT)}: cannot load the checkpoint ({keras_load_error(exc)}): the file is "
                          f"damaged, so the run cannot resume. Train it again: nnrun train --rerun {run.path}") from None
    restore_seed_generator_states(model, state.get("seed_generators"))
    prepared = Prepared(config, data, pipeline, model, x_train, y_train, x_test, y_test, x_val, y_val,
                        int(model.steps_per_execution))
    return prepared, rows, epochs


def _print_result(reporter: Reporter, run: rd.RunDir, metrics: dict, duration: float) -> None:
    from nnrun.compare import metrics_table

    reporter.print(metrics_table(metrics, title="result", splits=("train", "validation", "test")))
    reporter.print(
        f"epochs run: {metrics['epochs_run']} (lowest {'val_loss' if metrics['best_validation'] else 'loss'}: epoch "
        f"{metrics['best_epoch']})   duration: {duration:.1f}s   "
        f"run directory: [cyan]{run.path}[/]",
        soft_wrap=True,
    )
