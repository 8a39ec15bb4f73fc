"""Typed CSVs: column types, missing cells, string labels, regression; end to end on the shipped penguins data."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from nnrun.cli import app
from nnrun.datasets.table import read_table, resolve_task
from nnrun.errors import DataError
from nnrun.metrics import regression_report
from nnrun.preprocessing import EncodeColumns, Pipeline, Standardize

from conftest import ROOT, train_config

runner = CliRunner()
PENGUINS = ROOT / "configs" / "data" / "penguins.csv"


def table_config(**changes) -> SimpleNamespace:
    base = dict(label="label", features=None, header=True, delimiter=",", task="auto", columns={}, missing="error",
                max_categories=1000)
    return SimpleNamespace(**{**base, **changes})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


MIXED = (
    "age,plan,smoker,flag,region_code,note,label\n"
    "31,basic,yes,0,12,a,gold\n"
    "45,pro,no,1,7,b,silver\n"
    "29,team,yes,1,12,c,gold\n"
    "52,basic,no,0,33,d,bronze\n"
    "38,pro,no,1,7,e,silver\n"
)


# ------------------------------------------------------------------ reading and typing (no training)


def test_every_column_type_is_inferred_or_declared(tmp_path):
    table = read_table(write(tmp_path, MIXED), table_config(columns={"region_code": "categorical", "note": "ignore"}),
                       loss="categorical_crossentropy")
    types = {c["name"]: (c["type"], c["distinct"], c["missing"]) for c in table.columns}
    assert types == {"age": ("numeric", 5, 0), "plan": ("categorical", 3, 0), "smoker": ("binary", 2, 0),
                     "flag": ("numeric", 2, 0), "region_code": ("categorical", 3, 0)}  # numbers stay numbers
    assert table.feature_names == ("age", "plan", "smoker", "flag", "region_code") and table.ignored == ("note",)
    assert table.typed and table.x.dtype == object and table.x[0].tolist() == ["31", "basic", "yes", "0", "12"]
    assert table.task == "classification" and table.class_names == ("bronze", "gold", "silver")  # sorted strings
    assert table.y.tolist() == [1, 2, 1, 0, 2]


def test_a_plain_numeric_table_stays_the_tutorials_float32_array():
    diabetes = ROOT / "nnrun" / "datasets" / "data" / "diabetes.csv"
    table = read_table(diabetes, table_config(label="Outcome"), loss="binary_crossentropy")
    tutorial = np.loadtxt(diabetes, delimiter=",", skiprows=1)  # the tutorials' own reading
    assert not table.typed and table.x.dtype == np.float32
    assert np.array_equal(table.x, tutorial[:, :8].astype(np.float32)) and table.y.tolist() == tutorial[:, 8].tolist()
    assert table.class_names == ("0", "1")


@pytest.mark.parametrize("strategy, rows, typed", [("drop", 3, False), ("impute", 5, True)])
def test_missing_cells_drop_or_impute(tmp_path, strategy, rows, typed):
    text = "a,b,label\n1,10,x\n2,NA,y\n3,30,y\n,40,y\n5,50,x\n"
    table = read_table(write(tmp_path, text), table_config(missing=strategy), loss="binary_crossentropy")
    assert len(table.x) == rows and table.typed is typed
    assert [c["missing"] for c in table.columns] == [1, 1]  # counted as the file has them
    if strategy == "drop":
        assert table.x.tolist() == [[1, 10], [3, 30], [5, 50]] and "dropped 2 of 5 rows" in table.notes[0]
    else:
        assert table.x[1].tolist() == ["2", None] and table.x[3].tolist() == [None, "40"]
    with pytest.raises(DataError, match="missing value at row 3, column 'b'"):
        read_table(write(tmp_path, text), table_config(missing="error"), loss="binary_crossentropy")


def test_imputation_and_vocabularies_come_from_the_training_rows_only():
    columns = [{"name": "n", "type": "numeric"}, {"name": "c", "type": "categorical"},
               {"name": "s", "type": "binary", "values": ["f", "m"]}]
    train = np.array([["1", "red", "f"], ["3", "red", "f"], ["10", "blue", None], [None, "red", "f"]], dtype=object)
    encoder = EncodeColumns(columns, impute=True).fit(train)
    assert encoder.fill_ == [3.0, "red", "f"]  # median of 1, 3, 10; most frequent colour and sex
    test = np.array([["NA", "green", "m"], ["2", None, "f"]], dtype=object)
    out = encoder.transform(test)
    # n | c: blue, red, other | s
    assert out.tolist() == [[3.0, 0, 0, 1, 1], [2.0, 0, 1, 0, 0]]
    assert encoder.unseen_ == {"c": 1} and encoder.numeric_columns_ == [0]
    with pytest.raises(DataError, match="column 's' had two values in training \\(f, m\\), got 'x'"):
        encoder.transform(np.array([["1", "red", "x"]], dtype=object))
    with pytest.raises(DataError, match="column 'n': missing value"):
        EncodeColumns(columns, impute=False).fit(train).transform(test)


def test_whole_numbers_written_as_floats_are_the_same_category_and_empty_training_columns_are_named():
    encoder = EncodeColumns([{"name": "code", "type": "categorical"}]).fit(np.array([["12"], ["7"], ["12"]], dtype=object))
    assert encoder.transform(np.array([["12.0"], ["7"], ["007"]], dtype=object)).tolist() == [
        [1, 0, 0], [0, 1, 0], [0, 0, 1]]  # 12.0 is 12 (pandas writes it so after a NaN); 007 is another code
    with pytest.raises(DataError, match="column 'code': every cell of the training split is missing"):
        EncodeColumns([{"name": "code", "type": "categorical"}], impute=True).fit(np.array([[None], [None]], dtype=object))


def test_standardize_after_encoding_leaves_one_hot_columns_alone():
    columns = [{"name": "n", "type": "numeric"}, {"name": "c", "type": "categorical"}]
    pipeline = Pipeline([EncodeColumns(columns), Standardize()])
    x, _ = pipeline.fit_transform(np.array([["1", "a"], ["3", "b"], ["5", "a"]], dtype=object), np.zeros(3))
    assert x[:, 0].tolist() == pytest.approx([-1.2247449, 0.0, 1.2247449])
    assert x[:, 1:].tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    restored = Pipeline.from_dict(json.loads(json.dumps(pipeline.to_dict())))  # as preprocessing.json
    assert np.array_equal(restored.transform(np.array([["3", "zzz"]], dtype=object))[0], [[0.0, 0, 0, 1]])
    assert restored.notes() == ["column 'c': 1 value(s) never seen in training, encoded as 'other' (the out-of-vocabulary slot)"]


def test_task_auto_follows_the_loss_and_regression_labels_stay_numbers(tmp_path):
    assert resolve_task("auto", "mse") == "regression" and resolve_task("auto", "huber") == "regression"
    assert resolve_task("auto", "categorical_crossentropy") == "classification"
    assert resolve_task("classification", "mse") == "classification"
    text = "a,b,label\n1,2,10.5\n2,3,11.25\n3,1,9.0\n"
    table = read_table(write(tmp_path, text), table_config(), loss="mse")
    assert table.task == "regression" and table.class_names == () and table.y.dtype == np.float32
    assert table.y.tolist() == [10.5, 11.25, 9.0]


def test_many_categories_warn_and_an_identifier_is_an_error(tmp_path):
    text = "city,label\n" + "".join(f"c{i % 60},{i % 2}\n" for i in range(300))
    table = read_table(write(tmp_path, text), table_config(), loss="binary_crossentropy")
    assert "column 'city' has 60 categories: 61 one-hot inputs" in table.notes[0]
    with pytest.raises(DataError, match="column 'city' has 60 distinct values .* dataset.max_categories \\(50\\)"):
        read_table(write(tmp_path, text), table_config(max_categories=50), loss="binary_crossentropy")


def test_a_typo_among_numbers_is_asked_about_not_turned_into_categories(tmp_path):
    rows = [f"{40 + i % 9},{i % 2}" for i in range(40)]
    rows[11] = "unknown,1"  # one cell of 40: a typo, or a marker nnrun does not know
    text = "flipper,label\n" + "\n".join(rows) + "\n"
    with pytest.raises(DataError, match="column 'flipper' holds numbers but 'unknown' at row 13 \\(1 of 40 cells are "
                       "not numbers\\).*dataset.columns.flipper: categorical"):  # fmt: skip
        read_table(write(tmp_path, text), table_config(), loss="binary_crossentropy")
    declared = read_table(write(tmp_path, text), table_config(columns={"flipper": "categorical"}), loss="binary_crossentropy")
    assert declared.columns[0]["type"] == "categorical"  # as asked
    words = "size,label\n" + "".join(f"{['S', 'M', 'L', '10'][i % 4]},{i % 2}\n" for i in range(40))  # text, mostly
    assert read_table(write(tmp_path, words), table_config(), loss="binary_crossentropy").columns[0]["type"] == "categorical"


def test_regression_metrics_against_hand_computed_values():
    y, predicted = np.array([3.0, -0.5, 2.0, 7.0]), np.array([2.5, 0.0, 2.0, 8.0])
    report = regression_report(y, predicted)
    # residuals 0.5, -0.5, 0, -1; mean of y 2.875; total sum of squares 29.1875
    assert report["mae"] == pytest.approx(0.5)
    assert report["rmse"] == pytest.approx(np.sqrt(1.5 / 4))
    assert report["r2"] == pytest.approx(1 - 1.5 / 29.1875)


def test_check_prints_every_columns_type():
    result = runner.invoke(app, ["check", str(ROOT / "configs" / "penguins_species.yaml")])
    assert result.exit_code == 0, result.output
    for row in ("island", "categorical", "sex", "binary", "bill_length_mm", "numeric", "label 'species'"):
        assert row in result.stderr


# ------------------------------------------------------------------ end to end (trains)


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]], columns: list[str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def predicted(result) -> list[list[str]]:
    assert result.exit_code == 0, result.output
    return list(csv.reader(io.StringIO(result.stdout)))


@pytest.fixture(scope="module")
def species_run(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("species")
    return train_config(ROOT / "configs" / "penguins_species.yaml", runs, ["training.epochs=8"]).run_dir


@pytest.fixture(scope="module")
def mass_run(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("mass")
    return train_config(ROOT / "configs" / "penguins_mass.yaml", runs, ["training.epochs=15"]).run_dir


TRAINING_FIXTURES = {"species_run", "mass_run"}


@pytest.mark.slow
def test_species_predict_takes_string_columns_in_any_order_with_or_without_the_label(species_run, tmp_path):
    rows = rows_of(PENGUINS)[:6]
    with_label = predicted(runner.invoke(app, ["predict", str(species_run), str(
        write_rows(tmp_path / "a.csv", rows, list(rows[0]))), "-o", "-"]))
    shuffled = ["sex", "flipper_length_mm", "island", "body_mass_g", "bill_depth_mm", "bill_length_mm"]
    without = predicted(runner.invoke(app, ["predict", str(species_run), str(
        write_rows(tmp_path / "b.csv", rows, shuffled)), "-o", "-"]))
    assert [r[1:] for r in with_label] == [r[1:] for r in without] and len(without) == 7
    assert without[0][:2] == ["input", "predicted"] and without[0][4:] == ["Adelie", "Chinstrap", "Gentoo"]
    assert all(r[1] in ("Adelie", "Chinstrap", "Gentoo") for r in without[1:])
    assert rows[3]["sex"] == "NA"  # a missing cell is imputed, as in training (missing: impute)


@pytest.mark.slow
def test_unseen_categories_are_counted_at_predict_and_evaluate(species_run, tmp_path):
    rows = rows_of(PENGUINS)[:10]
    for row in rows[:3]:
        row["island"] = "Atlantis"
    data = write_rows(tmp_path / "new.csv", rows, list(rows[0]))
    result = runner.invoke(app, ["predict", str(species_run), str(data)])
    assert result.exit_code == 0 and "column 'island': 3 value(s) never seen in training" in result.stderr
    evaluation = runner.invoke(app, ["evaluate", str(species_run), "--data", str(data), "--json"])
    assert evaluation.exit_code == 0, evaluation.output
    report = json.loads(evaluation.stdout)
    assert report["samples"] == 10 and report["notes"] == [
        "column 'island': 3 value(s) never seen in training, encoded as 'other' (the out-of-vocabulary slot)"]
    rows[1]["bill_length_mm"] = "long"  # text in a numeric column: the error names the file and line
    data = write_rows(tmp_path / "typo.csv", rows, list(rows[0]))
    result = runner.invoke(app, ["predict", str(species_run), str(data)])
    assert result.exit_code == 2 and "typo.csv:3: column 'bill_length_mm' is numeric, got 'long'" in result.stderr


@pytest.mark.slow
def test_species_saved_and_reloaded_gives_the_same_predictions_and_metrics(species_run, tmp_path):
    from nnrun.trained import load_run_dataset, load_trained

    trained = load_trained(species_run)
    data = load_run_dataset(trained)
    x, _ = trained.pipeline.transform(data.x_test)
    in_process = trained.model.predict(x, verbose=0)
    test_rows = [dict(zip(trained.signature["feature_names"], row)) for row in data.x_test]
    for row in test_rows:
        row.update({k: "NA" for k, v in row.items() if v is None})
    path = write_rows(tmp_path / "test.csv", test_rows, list(reversed(trained.signature["feature_names"])))
    from_cli = predicted(runner.invoke(app, ["predict", str(species_run), str(path), "-o", "-"]))
    probabilities = np.array([[float(v) for v in r[4:]] for r in from_cli[1:]])
    np.testing.assert_allclose(probabilities, in_process, atol=1e-6)
    evaluation = runner.invoke(app, ["evaluate", str(species_run), "--json"])
    assert json.loads(evaluation.stdout)["reproduces_training"]["within_tolerance"] is True
    table = runner.invoke(app, ["compare", str(species_run.parent), "--format", "csv"])
    assert table.exit_code == 0 and "test_accuracy" in table.stdout.splitlines()[0]
    report = runner.invoke(app, ["report", str(species_run)])
    assert report.exit_code == 0 and "Confusion matrix" in (species_run / "report.html").read_text()


@pytest.mark.slow
def test_regression_end_to_end_in_grams(mass_run, tmp_path):
    metrics = json.loads((mass_run / "metrics.json").read_text())["test"]
    assert set(metrics) >= {"loss", "mae", "rmse", "r2"}
    info = json.loads((mass_run / "run.json").read_text())["signature"]
    assert info["task"] == "regression" and info["class_names"] == [] and info["label"] == "body_mass_g"

    from nnrun.trained import load_run_dataset, load_trained

    trained = load_trained(mass_run)
    data = load_run_dataset(trained)
    assert trained.model.layers[-1].name == "label_scaling"  # the model turns the standardized output into grams
    test_rows = [dict(zip(trained.signature["feature_names"], row)) for row in data.x_test]
    path = write_rows(tmp_path / "test.csv", test_rows, trained.signature["feature_names"])
    rows = predicted(runner.invoke(app, ["predict", str(mass_run), str(path), "-o", "-"]))
    assert rows[0] == ["input", "predicted body_mass_g"]
    values = np.array([float(r[1]) for r in rows[1:]])
    assert 2000 < values.mean() < 7000  # grams, not standardized units
    by_hand = regression_report(data.y_test, values)  # 6 significant digits in the CSV
    assert by_hand["r2"] == pytest.approx(metrics["r2"], abs=1e-4)
    assert by_hand["mae"] == pytest.approx(metrics["mae"], rel=1e-4)

    result = runner.invoke(app, ["evaluate", str(mass_run)])
    assert result.exit_code == 0 and "r2" in result.stderr and "MAE and RMSE are in its own units" in result.stderr
    assert (mass_run / "predictions.png").is_file() and not (mass_run / "confusion_matrix.png").exists()
    table = runner.invoke(app, ["compare", str(mass_run.parent), "--format", "csv"])
    header = table.stdout.splitlines()[0].split(",")
    assert "test_r2" in header and "test_mae" in header and "test_accuracy" not in header
    report = runner.invoke(app, ["report", str(mass_run)])
    assert report.exit_code == 0 and "Predictions against the truth" in (mass_run / "report.html").read_text()


@pytest.mark.slow
def test_a_numeric_regression_run_predicts_and_evaluates_with_its_csv_gone(tmp_path):
    """A regression's signature has no class names; it is still the run's own (no training CSV needed)."""
    rows = [f"{i % 7},{(i * 3) % 11},{i % 5},{2.5 * (i % 7) + (i * 3) % 11 + 0.1 * (i % 5)}" for i in range(120)]
    data = tmp_path / "data" / "numbers.csv"
    data.parent.mkdir()
    data.write_text("a,b,note,y\n" + "\n".join(rows) + "\n")
    config = {"dataset": {"name": "csv", "path": str(data), "label": "y", "columns": {"note": "ignore"}},
              "preprocessing": ["standardize"],
              "model": {"layers": [{"type": "Dense", "units": 8, "activation": "relu"}, {"type": "Dense", "units": 1}]},
              "training": {"loss": "mse", "metrics": ["mae"], "epochs": 3, "batch_size": 16}}
    import yaml

    (tmp_path / "numbers.yaml").write_text(yaml.safe_dump(config))
    run = train_config(tmp_path / "numbers.yaml", tmp_path / "runs").run_dir
    labelled = tmp_path / "labelled.csv"
    labelled.write_text("note,b,a,y\n1,3,2,8.0\n2,5,4,15.2\n")
    (tmp_path / "new.csv").write_text("b,a\n3,2\n5,4\n")
    data.unlink()
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "new.csv"), "-o", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "input,predicted y" and len(result.stdout.splitlines()) == 3
    evaluation = runner.invoke(app, ["evaluate", str(run), "--data", str(labelled), "--json"])
    assert evaluation.exit_code == 0, evaluation.output
    assert json.loads(evaluation.stdout)["samples"] == 2 and "r2" in json.loads(evaluation.stdout)["metrics"]


def test_new_rows_are_matched_by_name_duplicates_refused_and_header_less_runs_read_by_position(tmp_path):
    from nnrun.datasets.table import read_new_rows

    signature = {"feature_names": ["a", "b"], "label": "y", "ignored_columns": ["note"], "delimiter": ","}
    (tmp_path / "in.csv").write_text("note,b,y,a\nx,2,1,1\nz,4,0,NA\n")
    x, labels, lines = read_new_rows(tmp_path / "in.csv", signature)
    assert x.tolist() == [["1", "2"], [None, "4"]] and labels == ["1", "0"] and lines == [2, 3]
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataError, match="names column 'a' twice"):
        read_new_rows(tmp_path / "dup.csv", signature)
    (tmp_path / "semi.csv").write_text("b;a\n2;1\n")  # saved by a spreadsheet set to another locale
    with pytest.raises(DataError, match="one column only, but the line holds semicolons: the file looks "
                       "semicolon-separated, and the run read ','-separated files"):  # fmt: skip
        read_new_rows(tmp_path / "semi.csv", signature)
    (tmp_path / "in.tsv").write_text("b\ta\n2\t1\n")
    assert read_new_rows(tmp_path / "in.tsv", signature)[0].tolist() == [["1", "2"]]
    positional = {"feature_names": ["0", "2"], "label": "1", "ignored_columns": [], "header": False, "delimiter": ";"}
    (tmp_path / "plain.csv").write_text("5;yes;7\n6;no;8\n")
    x, labels, _ = read_new_rows(tmp_path / "plain.csv", positional)
    assert x.tolist() == [["5", "7"], ["6", "8"]] and labels == ["yes", "no"]
