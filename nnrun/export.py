"""Export: a trained run as one artefact that takes raw inputs and applies the run's preprocessing inside.

The run's fitted ``preprocessing.json`` becomes Keras layers in front of its model (``scale``
a ``Rescaling``, ``standardize`` a ``Rescaling`` by the training std around the training mean,
``flatten`` / ``reshape`` / ``add_channel_axis`` a ``Reshape``), so the artefact takes what
the dataset gives (uint8 pixels, or the CSV's feature columns as float32) and returns class
probabilities (``[1 - p, p]`` for one sigmoid output) or the regression target. Keras's own
``Model.export`` does the format work:

- ``saved_model``: TensorFlow SavedModel in TF Serving's layout, ``OUT/1/saved_model.pb``;
- ``onnx``: through tf2onnx; ``litert``: a ``.tflite`` file (both: ``pip install 'nnrun[export]'``);
- ``keras``: a ``.keras`` file of the whole model.

Beside it, ``nnrun-export.json`` (saved_model) or ``OUT.json`` says what goes in and what comes
out. ``check`` reloads the artefact in its own runtime (``tf.saved_model.load``, onnxruntime,
the LiteRT interpreter, Keras) and compares it with the run's own predictions on up to 256 test
samples. Everything is written beside the target first and moved into place only after the check:
a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nnrun import __version__
from nnrun.errors import ConfigError, DataError, NnrunError, first_line

FORMATS = ("saved_model", "onnx", "litert", "keras")
SUFFIXES = {"onnx": ".onnx", "litert": ".tflite", "keras": ".keras"}
KERAS_FORMATS = {"saved_model": "tf_saved_model", "onnx": "onnx", "litert": "litert"}
#: Largest difference from ``nnrun predict`` that ``check`` accepts: absolute for probabilities, relative to
#: the value (when above 1) for a regression. Every format here computes in float32 (LiteRT without
#: quantization), so one tolerance serves all; measured differences are ~1e-7.
TOLERANCE = 1e-4
CHECK_SAMPLES = 256
INSTALL_HINT = "pip install 'nnrun[export]' (or: pip install tf2onnx onnx onnxruntime ai-edge-litert)"
SERVING_VERSION = "1"
DESCRIPTION = "nnrun-export.json"


@dataclass
class Exported:
    path: Path  # the artefact (a SavedModel folder's base, or a file)
    description: Path  # the JSON beside it
    checked_samples: int
    max_difference: float | None


def export_run(run_path: str | Path, fmt: str, output: str | Path, *, force: bool = False,
               check: bool = True) -> Exported:
    """Export a run to ``output`` in ``fmt``.

    Raises:
        ConfigError: an unknown format, an output that exists without ``force``, a folder that cannot be written.
        RunDirError: not a completed run with a model.
        NnrunError: the format cannot express the model, a converter is missing, or the check fails.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}.")
    output = Path(output).expanduser()
    if fmt in SUFFIXES and output.suffix != SUFFIXES[fmt]:
        raise ConfigError(f"--output {output}: a {fmt} file is named *{SUFFIXES[fmt]}; e.g. --output "
                          f"{output.with_suffix(SUFFIXES[fmt]).name}.")
    description = output / DESCRIPTION if fmt == "saved_model" else output.with_name(output.name + ".json")
    _check_output(output, description, force, Path(run_path))
    _check_converter(fmt)

    from nnrun.trained import load_trained

    trained = load_trained(run_path)
    text = [c["name"] for c in trained.signature.get("columns", []) if c["type"] != "numeric"]
    if text and fmt in ("onnx", "litert"):
        raise ConfigError(f"--format {fmt} takes no text inputs, but column '{text[0]}' of this typed CSV run is "
                          f"read as text ({len(text)} such columns: categorical or binary); export --format saved_model "
                          "or keras, which look the words up inside the model.")
    model = build_serving_model(trained)
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as tmp:
        staged = Path(tmp) / (SERVING_VERSION if fmt == "saved_model" else output.name)
        _write(model, fmt, staged)
        samples, difference = _check(trained, fmt, staged) if check else (0, None)
        staged_description = Path(tmp) / description.name
        staged_description.write_text(json.dumps(describe(trained, model, fmt, difference, samples), indent=2) + "\n")
        _move_into_place(fmt, staged, staged_description, output, description, force)
    return Exported(output, description, samples, difference)


def _check_output(output: Path, description: Path, force: bool, run: Path) -> None:
    """ConfigError for an output that exists (without ``force``), that ``force`` must not replace (the run, a folder
    that holds it, a folder no export wrote), or whose folder cannot be written."""
    target, run = output.resolve(), run.resolve()
    if target == run or target in run.parents:
        what = "the run directory itself" if target == run else f"a folder that holds the run directory {run}"
        raise ConfigError(f"--output {output} is {what}; choose a path outside it, e.g. --output {run.name}-export.")
    if force and output.is_dir() and not output.is_symlink() and not (output / DESCRIPTION).is_file():
        raise ConfigError(f"--output {output} is a folder that no nnrun export wrote (it holds no {DESCRIPTION}), and "
                          "--force replaces only an earlier export; choose another --output, or remove it yourself.")
    if (output.exists() or description.exists()) and not force:
        existing = output if output.exists() else description
        raise ConfigError(f"{existing} already exists; pass --force to replace it, or choose another --output.")
    parent = output.parent
    if not parent.is_dir():
        raise ConfigError(f"--output {output}: the folder {parent} does not exist; create it first.")
    try:  # create something, rather than ask os.access: root passes every permission check it asks
        os.rmdir(tempfile.mkdtemp(prefix=".nnrun-export-probe.", dir=parent))
    except OSError as exc:
        raise ConfigError(f"--output {output}: cannot write in {parent} ({exc.strerror}); choose another --output.") from None


def _check_converter(fmt: str) -> None:
    import importlib.util

    needed = {"onnx": ("tf2onnx", "onnx", "onnxruntime"), "litert": ("ai_edge_litert",)}.get(fmt, ())
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"--format {fmt} needs {', '.join(missing)}, which is not installed: {INSTALL_HINT}.")


# ------------------------------------------------------------------ the model with its preprocessing


def preprocessing_layers(pipeline: Any, sample_shape: tuple[int, ...]) -> list[Any]:
    """The fitted feature steps of ``pipeline`` as Keras layers (label steps such as one_hot are left out)."""
    from nnrun.tf import import_keras

    keras = import_keras()
    layers: list[Any] = []
    shape = tuple(sample_shape)
    for step in pipeline.steps:
        if step.on_labels or step.type == "encode_columns":  # encode_columns: the typed inputs, see typed_inputs
            continue
        if step.type == "flatten":
            shape = (int(np.prod(shape)),)
            layers.append(keras.layers.Reshape(shape, name="flatten"))
        elif step.type == "reshape":
            target = list(step.target_shape)
            if -1 in target:
                known = int(np.prod([d for d in target if d != -1]))
                target[target.index(-1)] = int(np.prod(shape)) // known
            shape = tuple(target)
            layers.append(keras.layers.Reshape(shape, name="reshape"))
        elif step.type == "add_channel_axis":
            shape = (*shape, 1)
            layers.append(keras.layers.Reshape(shape, name="add_channel_axis"))
        elif step.type == "scale":
            layers.append(keras.layers.Rescaling(step.factor, name="scale"))
        elif step.type == "standardize":  # (x - mean) / std as x * (1/std) + (-mean/std): constants every format keeps
            mean, std = _standardization(step, shape)
            layers.append(keras.layers.Rescaling(scale=(1.0 / std).tolist(), offset=(-mean / std).tolist(),
                                                 name="standardize"))
        elif step.type == "cast" and step.dtype == "float32":
            continue  # the artefact casts its input to float32 first
        else:
            raise NnrunError(f"the preprocessing step '{step.type}' has no Keras layer for export.")
    return layers


def _standardization(step: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std for every input column; columns the step leaves alone get 0 and 1."""
    if step.columns_ is None:
        return np.asarray(step.mean_, dtype=np.float64), np.asarray(step.std_, dtype=np.float64)
    mean, std = np.zeros(shape[-1]), np.ones(shape[-1])
    mean[step.columns_], std[step.columns_] = step.mean_, step.std_
    return mean, std


def build_serving_model(trained: Any) -> Any:
    """raw input -> cast to float32 -> preprocessing layers -> the run's model -> probabilities or values."""
    from nnrun.tf import import_keras

    keras = import_keras()
    signature = trained.signature
    if trained.typed:
        raw, x = typed_inputs(trained.pipeline.steps[0])
        shape = (int(x.shape[-1]),)
    else:
        name = "image" if trained.image else "features"
        raw = keras.Input(tuple(signature["sample_shape"]), dtype=signature["sample_dtype"], name=name)
        x, shape = keras.ops.cast(raw, "float32"), tuple(signature["sample_shape"])
    for layer in preprocessing_layers(trained.pipeline, shape):
        x = layer(x)
    out = trained.model(x, training=False)  # augmentation layers (RandomFlip...) are for training only
    if not trained.regression and out.shape[-1] == 1:  # one sigmoid output -> [1 - p, p], as nnrun predict shows it
        out = keras.layers.Concatenate(name="class_probabilities")([1.0 - out, out])
    model = keras.Model(raw, out, name="serving")
    if not trained.typed:
        model(np.zeros((1, *signature["sample_shape"]), dtype=signature["sample_dtype"]))  # the converters want it called
    return model


def missing_spellings() -> set[str]:
    """Every spelling of a missing cell that training accepts (``NA``, ``nA``, ``NaN``, ``null``, ``?``, ``""``...).

    Training lower-cases a cell before comparing it with ``MISSING``; a lookup table cannot, so it lists
    every upper/lower-case form of each (short) word.
    """
    from itertools import product

    from nnrun.datasets.table import MISSING

    return {"".join(chars) for word in MISSING for chars in product(*({c.lower(), c.upper()} for c in word))}


def input_names(columns: list[str]) -> dict[str, str]:
    """Each column's name as a TensorFlow input name (letters, digits, ``_``, ``.``, ``-``), unique: ``_2`` if taken."""
    out: dict[str, str] = {}
    for column in columns:
        name = base = re.sub(r"[^A-Za-z0-9_.-]", "_", column) or "column"
        n = 1
        while name in out.values():
            n += 1
            name = f"{base}_{n}"
        out[column] = name
    return out


def typed_inputs(encoder: Any) -> tuple[dict[str, Any], Any]:
    """One input per column of a typed CSV, encoded as ``encode_columns`` does, inside the model.

    Numeric columns are float32 ``(n, 1)`` with NaN for a missing cell (the training median when the
    run imputes). Text columns are strings ``(n, 1)``: a ``StringLookup`` over the training values and
    the missing-cell spellings, then a fixed matrix that puts each value in its one-hot slot, unseen
    values in the out-of-vocabulary slot and missing cells in the most frequent value's slot.
    """
    from nnrun.tf import import_keras

    keras = import_keras()
    inputs, blocks = {}, []
    names = input_names([c["name"] for c in encoder.columns])
    for column, values, fill in zip(encoder.columns, encoder.values_, encoder.fill_):
        name = names[column["name"]]
        if column["type"] == "numeric":
            inputs[name] = keras.Input((1,), dtype="float32", name=name)
            # NaN: the training median, also where the run did not impute (nnrun predict would refuse the row)
            blocks.append(keras.ops.where(keras.ops.isnan(inputs[name]), float(fill), inputs[name]))
            continue
        inputs[name] = keras.Input((1,), dtype="string", name=name)
        spellings = sorted(missing_spellings() - set(values))
        lookup = keras.layers.StringLookup(vocabulary=[*values, *spellings], num_oov_indices=1, output_mode="one_hot",
                                           name=f"{name}_lookup")
        categorical = column["type"] == "categorical"
        width = len(values) + 1 if categorical else 1
        matrix = np.zeros((1 + len(values) + len(spellings), width), dtype=np.float32)
        fill_at = values.index(fill)
        for i in range(len(values)):
            matrix[1 + i, i if categorical else 0] = 1.0 if categorical else float(i)
        for k in range(len(spellings)):  # a missing cell: the training split's most frequent value
            matrix[1 + len(values) + k, fill_at if categorical else 0] = 1.0 if categorical else float(fill_at)
        matrix[0, len(values) if categorical else 0] = 1.0 if categorical else float(fill_at)  # unseen value
        slots = keras.layers.Dense(width, use_bias=False, trainable=False, name=f"{name}_slots")
        blocks.append(slots(lookup(inputs[name])))
        slots.set_weights([matrix])
    return inputs, keras.layers.Concatenate(name="encode_columns")(blocks) if len(blocks) > 1 else blocks[0]


def describe(trained: Any, model: Any, fmt: str, difference: float | None, samples: int) -> dict[str, Any]:
    """What goes in and what comes out, for whoever loads the artefact."""
    signature = trained.signature
    if trained.typed:
        names = input_names([c["name"] for c in signature["columns"]])
        inputs = [{"name": names[c["name"]], "column": c["name"], "shape": [None, 1],
                   "dtype": "float32" if c["type"] == "numeric" else "string",
                   "meaning": f"the column's cells ({c['type']}); a missing cell: "
                              + ("NaN" if c["type"] == "numeric" else "'NA'")} for c in signature["columns"]]
    else:
        meaning = ("raw pixels as the dataset gives them, 0-255" if trained.image
                   else f"the CSV's feature columns, in this order: {', '.join(signature['feature_names'])}")
        inputs = [{"name": t.name.split(":")[0], "dtype": str(t.dtype), "shape": [None, *signature["sample_shape"]],
                   "meaning": meaning} for t in model.inputs]
    outputs = (
        {"meaning": f"the predicted {signature.get('label')}", "shape": [None, 1], "target": signature.get("label")}
        if trained.regression
        else {"meaning": "class probabilities", "shape": [None, len(trained.class_names)],
              "class_names": list(trained.class_names)}
    )  # fmt: skip
    return {
        "format": fmt,
        "inputs": inputs,
        "outputs": outputs,
        "preprocessing": [s.type for s in trained.pipeline.steps if not s.on_labels],
        "run": trained.run.id,
        "nnrun_version": __version__,
        "check": {"samples": samples, "max_abs_difference": difference, "tolerance": TOLERANCE} if samples else None,
    }


# ------------------------------------------------------------------ writing and checking


def _write(model: Any, fmt: str, path: Path) -> None:
    try:
        if fmt == "keras":
            model.save(path)
        else:
            model.export(str(path), format=KERAS_FORMATS[fmt], verbose=False)
    except Exception as exc:  # noqa: BLE001 (converters raise anything: the layer and format go in the message)
        layers = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in model.layers)
        raise NnrunError(f"--format {fmt} cannot express this model ({type(exc).__name__}: {first_line(exc)}); its layers: "
                         f"{layers}. Try --format saved_model or keras.") from None


def _check(trained: Any, fmt: str, path: Path) -> tuple[int, float]:
    """Reload ``path`` in its own runtime; the largest difference from the run's own predictions on test samples."""
    from nnrun.trained import load_run_dataset

    try:
        data = load_run_dataset(trained, only="test")
    except DataError as exc:
        raise DataError(f"--check compares the export with the run on its test samples, but: {exc} "
                        "Make the data available, or pass --no-check.") from None
    x_raw = np.asarray(data.x_test[:CHECK_SAMPLES])
    if not trained.typed:
        x_raw = x_raw.astype(trained.signature["sample_dtype"])
    expected = trained.predict(x_raw)  # as nnrun predict computes it
    try:
        got = np.asarray(_run_artefact(fmt, path, artefact_inputs(trained, x_raw)), dtype=np.float64)
        got = got.reshape(expected.shape)
    except Exception as exc:  # noqa: BLE001 (each runtime raises its own errors)
        raise NnrunError(f"--check: the {fmt} export does not run in its own runtime ({type(exc).__name__}: "
                         f"{first_line(exc)}); nothing was written.") from None
    # probabilities: absolute; a regression's values (grams, dollars): relative to their size, at least 1
    difference = float((np.abs(got - expected) / np.maximum(1.0, np.abs(expected))).max())
    if not difference <= TOLERANCE:
        raise NnrunError(f"--check: the {fmt} export differs from nnrun predict by {difference:.3g} on {len(x_raw)} "
                         f"test samples (tolerance {TOLERANCE}); nothing was written.")
    return len(x_raw), difference


def artefact_inputs(trained: Any, x_raw: np.ndarray) -> Any:
    """Raw samples as the artefact takes them: the array itself, or a typed CSV's columns one by one."""
    if not trained.typed:
        return x_raw
    out = {}
    names = input_names([c["name"] for c in trained.signature["columns"]])
    for j, column in enumerate(trained.signature["columns"]):
        cells, name = x_raw[:, j], names[column["name"]]
        if column["type"] == "numeric":
            out[name] = np.array([[np.nan if c is None else float(c)] for c in cells], np.float32)
        else:
            out[name] = np.array([["" if c is None else str(c)] for c in cells])  # "" as pandas writes a missing cell
    return out


def _run_artefact(fmt: str, path: Path, x: Any) -> np.ndarray:
    if fmt in ("saved_model", "keras"):
        import tensorflow as tf

        tensors = {k: tf.constant(v) for k, v in x.items()} if isinstance(x, dict) else tf.constant(x)
        if fmt == "keras":
            from nnrun.tf import import_keras

            return np.asarray(import_keras().models.load_model(path)(tensors))
        loaded = tf.saved_model.load(str(path))  # kept in a name: its variables die with it
        return loaded.serve(tensors).numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensor = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(tensor["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(tensor["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def _move_into_place(fmt: str, staged: Path, staged_description: Path, output: Path, description: Path,
                     force: bool) -> None:
    """Renames only: an old output (``--force``) is first moved into the staging folder, deleted with it."""
    scratch = staged.parent
    if fmt == "saved_model":
        folder = scratch / "serving"
        folder.mkdir()
        os.replace(staged, folder / SERVING_VERSION)
        os.replace(staged_description, folder / DESCRIPTION)
        moves = [(folder, output)]
    else:
        moves = [(staged, output), (staged_description, description)]
    for new, target in moves:
        if force and (target.exists() or target.is_symlink()):
            os.replace(target, scratch / f"replaced-{target.name}")
        os.replace(new, target)
