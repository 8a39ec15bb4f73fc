"""nnrun export: each format reloaded in its own runtime gives nnrun predict's answers from raw inputs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnrun.cli import app

from conftest import ROOT, train_config

pytestmark = pytest.mark.slow  # the tests export trained runs (the last one, about names, runs with them)
runner = CliRunner()
TRAINING_FIXTURES = {"standardized_run"}  # species_run is added below


@pytest.fixture(scope="module")
def standardized_run(tmp_path_factory) -> Path:
    """The diabetes MLP with standardize and one sigmoid output (a binary task on CSV columns)."""
    runs = tmp_path_factory.mktemp("standardized")
    return train_config(ROOT / "configs" / "diabetes_standardized.yaml", runs, ["training.epochs=3"]).run_dir


def nnrun_predict(run: Path, inputs: np.ndarray, tmp_path: Path) -> np.ndarray:
    """``nnrun predict`` on raw samples saved as .npy: every class's probability, in class order."""
    np.save(tmp_path / "inputs.npy", inputs)
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "inputs.npy"), "--output", "-"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    return np.array([[float(v) for v in row[4:]] for row in rows[1:]])


def run_artefact(fmt: str, path: Path, x) -> np.ndarray:
    """The artefact in its own runtime, with none of nnrun's code (``x``: an array, or a dict of columns)."""
    if fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path / "1"))
        return loaded.serve({k: tf.constant(v) for k, v in x.items()} if isinstance(x, dict) else x).numpy()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        tensor = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(tensor["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(tensor["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    import keras
    import tensorflow as tf

    if isinstance(x, dict):  # string inputs: called directly, as predict() takes no numpy strings
        return np.asarray(keras.models.load_model(path)({k: tf.constant(v) for k, v in x.items()}))
    return keras.models.load_model(path).predict(x, verbose=0)


OUTPUTS = {"saved_model": "model", "onnx": "model.onnx", "litert": "model.tflite", "keras": "model.keras"}


def raw_test_samples(run: Path, count: int) -> np.ndarray:
    from nnrun.trained import load_run_dataset, load_trained

    trained = load_trained(run, model=False)
    return np.asarray(load_run_dataset(trained).x_test[:count]).astype(trained.signature["sample_dtype"])


@pytest.mark.parametrize("fmt", list(OUTPUTS))
@pytest.mark.parametrize("kind", ["mlp", "cnn", "csv"])
def test_every_format_takes_raw_inputs_and_answers_like_nnrun_predict(kind, fmt, request, tmp_path):
    run = request.getfixturevalue({"mlp": "mnist_run", "cnn": "fashion_run", "csv": "standardized_run"}[kind])
    out = tmp_path / OUTPUTS[fmt]
    result = runner.invoke(app, ["export", str(run), "--format", fmt, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out) and "matches nnrun predict on" in result.stderr

    description = json.loads((out / "nnrun-export.json" if fmt == "saved_model" else Path(f"{out}.json")).read_text())
    assert description["run"] == run.name and description["format"] == fmt
    assert description["check"]["max_abs_difference"] <= 1e-4
    x = raw_test_samples(run, 32)
    assert description["inputs"][0]["dtype"] == str(x.dtype) and description["inputs"][0]["shape"] == [None, *x.shape[1:]]
    expected = nnrun_predict(run, x, tmp_path)
    assert description["outputs"]["shape"] == [None, expected.shape[1]]
    got = np.asarray(run_artefact(fmt, out, x), dtype=np.float64)
    np.testing.assert_allclose(got, expected, atol=1e-4)  # the CSV holds 6 decimals
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_an_image_export_takes_uint8_pixels_and_class_names_come_along(mnist_run, tmp_path):
    out = tmp_path / "digits.onnx"
    assert runner.invoke(app, ["export", str(mnist_run), "-f", "onnx", "-o", str(out)]).exit_code == 0
    description = json.loads(Path(f"{out}.json").read_text())
    assert description["inputs"][0]["name"] == "image" and description["inputs"][0]["dtype"] == "uint8"
    assert description["outputs"]["class_names"] == [str(d) for d in range(10)]
    assert description["preprocessing"] == ["flatten", "scale"]


def test_force_replaces_and_no_check_skips_the_comparison(standardized_run, tmp_path):
    out = tmp_path / "model.keras"
    assert runner.invoke(app, ["export", str(standardized_run), "-f", "keras", "-o", str(out), "--no-check"]).exit_code == 0
    assert json.loads(Path(f"{out}.json").read_text())["check"] is None
    again = runner.invoke(app, ["export", str(standardized_run), "-f", "keras", "-o", str(out), "--force"])
    assert again.exit_code == 0 and json.loads(Path(f"{out}.json").read_text())["check"]["samples"] == 192


@pytest.fixture(scope="module")
def species_run(tmp_path_factory) -> Path:
    return train_config(ROOT / "configs" / "penguins_species.yaml", tmp_path_factory.mktemp("species"),
                        ["training.epochs=3"]).run_dir


TRAINING_FIXTURES.add("species_run")


@pytest.mark.parametrize("fmt", ["saved_model", "keras"])
def test_a_typed_csv_run_exports_with_text_columns_looked_up_inside(species_run, fmt, tmp_path):
    out = tmp_path / OUTPUTS[fmt]
    result = runner.invoke(app, ["export", str(species_run), "-f", fmt, "-o", str(out)])
    assert result.exit_code == 0, result.output
    description = json.loads((out / "nnrun-export.json" if fmt == "saved_model" else Path(f"{out}.json")).read_text())
    kinds = {i["column"]: i["dtype"] for i in description["inputs"]}
    assert kinds == {"island": "string", "bill_length_mm": "float32", "bill_depth_mm": "float32",
                     "flipper_length_mm": "float32", "body_mass_g": "float32", "sex": "string"}
    rows = [["Torgersen", "39.1", "18.7", "181", "3750", "male"], ["Atlantis", "46", "15", "215", "5000", "female"],
            ["Dream", None, "17.5", "190", "3700", None], ["Biscoe", "50", "16", None, "5200", "NA"]]
    header = "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex\n"
    (tmp_path / "new.csv").write_text(header + "".join(",".join("NA" if c is None else c for c in r) + "\n" for r in rows))
    cli = runner.invoke(app, ["predict", str(species_run), str(tmp_path / "new.csv"), "-o", "-"])
    expected = np.array([[float(v) for v in row[4:]] for row in list(csv.reader(io.StringIO(cli.stdout)))[1:]])
    # missing cells spelled as pandas writes them ("") and in any case ("nA"), as training reads them
    feed = {"island": [["Torgersen"], ["Atlantis"], ["Dream"], ["Biscoe"]], "sex": [["male"], ["female"], [""], ["nA"]]}
    numbers = np.array([[np.nan if c is None else float(c) for c in r[1:5]] for r in rows], dtype=np.float32)
    for j, name in enumerate(["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]):
        feed[name] = numbers[:, j : j + 1]
    # an unseen island ('Atlantis') and missing cells: the artefact encodes them as nnrun predict does
    np.testing.assert_allclose(run_artefact(fmt, out, {k: np.asarray(v) for k, v in feed.items()}), expected, atol=1e-4)


def test_force_never_replaces_the_run_or_a_folder_no_export_wrote(standardized_run, tmp_path):
    photos = tmp_path / "photos"
    (photos / "cat").mkdir(parents=True)
    (photos / "cat" / "1.png").write_bytes(b"not really")
    for out, expected in ((standardized_run, "is the run directory itself"),
                          (standardized_run.parent, "is a folder that holds the run directory"),
                          (photos, "is a folder that no nnrun export wrote (it holds no nnrun-export.json)")):
        result = runner.invoke(app, ["export", str(standardized_run), "-f", "saved_model", "-o", str(out), "--force"])
        assert result.exit_code == 2 and expected in result.stderr, result.output
    assert (standardized_run / "model.keras").is_file() and (photos / "cat" / "1.png").is_file()  # all still there


def test_force_replaces_an_output_of_the_other_kind(standardized_run, tmp_path):
    out = tmp_path / "model"
    out.write_text("a file where the SavedModel folder goes")
    result = runner.invoke(app, ["export", str(standardized_run), "-f", "saved_model", "-o", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert (out / "1" / "saved_model.pb").is_file() and (out / "nnrun-export.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing staged or replaced is left


def test_onnx_and_litert_refuse_text_columns_before_anything_is_written(species_run, tmp_path):
    for fmt, name in (("onnx", "m.onnx"), ("litert", "m.tflite")):
        result = runner.invoke(app, ["export", str(species_run), "-f", fmt, "-o", str(tmp_path / name)])
        assert result.exit_code == 2 and f"--format {fmt} takes no text inputs, but column 'island'" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("columns, expected", [
    (["Mass (g)", "Mass [g]", "age"], ["Mass__g_", "Mass__g__2", "age"]),
    (["a b", "a_b", "a-b"], ["a_b", "a_b_2", "a-b"]),
    (["", "é"], ["column", "_"]),
])
def test_column_names_become_unique_tensorflow_input_names(columns, expected):
    from nnrun.export import input_names

    assert list(input_names(columns).values()) == expected
