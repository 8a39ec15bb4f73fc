"""The catalogue of bad inputs: configs, data files, CLI arguments, and commands on broken or mismatched runs.

Each one must exit with the right code, print one ``Error:`` line that names the
offending key, column or file, print no traceback, and leave no run directory that
claims ``completed`` (nor an evaluation that looks written). The first part trains
nothing; the second needs a trained run and is marked slow.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import yaml
from typer.testing import CliRunner

from nnrun import rundir as rd
from nnrun.backbones import keras_cache_dir
from nnrun.cli import app
from nnrun.datasets import IDX_FILES, idx_bytes

from conftest import ROOT, make_image_folder

runner = CliRunner()


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())


@dataclass
class Case:
    """A config (mutated from a shipped one) or raw args, and what the error must say."""

    id: str
    expected: list[str]
    base: str = "diabetes_mlp"
    mutate: Callable[[dict, Path], None] | None = None
    args: list[str] = field(default_factory=list)  # extra CLI args; "{config}" and "{tmp}" are filled in
    command: str = "train"
    raw_config: str | None = None  # the config file's text, instead of a mutated one
    code: int = 2
    fake_checksums: bool = False  # accept the test's own IDX payloads, to reach the structural checks


def csv_case(id: str, text: str | bytes, expected: list[str], *, dataset: dict | None = None,
             training: dict | None = None, last_units: int | None = None, preprocessing: list | None = None) -> Case:
    """A CSV written to data.csv (label column 'label'), with changes to the diabetes config."""

    def mutate(cfg: dict, tmp: Path) -> None:
        write(tmp / "data.csv", text)
        cfg["dataset"] = {"name": "csv", "path": str(tmp / "data.csv"), "label": "label", **(dataset or {})}
        cfg["training"].update(training or {})
        if last_units is not None:
            cfg["model"]["layers"][-1]["units"] = last_units
        if preprocessing is not None:
            cfg["preprocessing"] = preprocessing

    return Case(id, expected, mutate=mutate)


def rows(header: str, make, n: int = 12) -> str:
    """A CSV of ``n`` rows, ``make(i)`` giving row i's cells."""
    return header + "\n" + "".join(make(i) + "\n" for i in range(n))


MSE = {"loss": "mse", "metrics": ["mae"]}


def idx_case(id: str, breaker: Callable[[Path], None], expected: list[str], fake_checksums: bool = True) -> Case:
    def mutate(cfg: dict, tmp: Path) -> None:
        folder = tmp / "idx"
        folder.mkdir()
        arrays = {"train_images": (5, 28, 28), "train_labels": (5,), "test_images": (3, 28, 28), "test_labels": (3,)}
        import numpy as np

        for key, shape in arrays.items():
            (folder / f"{IDX_FILES[key]}.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(shape, np.uint8))))
        breaker(folder)
        cfg["dataset"]["path"] = str(folder)

    return Case(id, expected, base="mnist_dense32", mutate=mutate, fake_checksums=fake_checksums)


def image_case(id: str, breaker: Callable[[Path], object], expected: list[str], **dataset) -> Case:
    """A tiny generated image folder (three shapes, 4 pictures each), broken by ``breaker``, in configs/mnist_png.yaml."""

    backbone = dataset.pop("backbone", None)

    def mutate(cfg: dict, tmp: Path) -> None:
        folder = make_image_folder(tmp / "shapes", per_class=4)
        breaker(folder)
        settings = {k: v.replace("{shapes}", str(folder)) if isinstance(v, str) else v for k, v in dataset.items()}
        cfg["dataset"] = {"name": "images", "path": str(folder), "image_size": [16, 16], **settings}
        cfg["model"]["layers"][-1]["units"] = 3
        if backbone:
            cfg["preprocessing"] = ["one_hot"]
            cfg["model"]["layers"] = [backbone, "GlobalAveragePooling2D", {"type": "Dense", "units": 3}]

    return Case(id, expected, base="mnist_png", mutate=mutate)


def empty_class(folder: Path) -> None:
    for image in (folder / "square").iterdir():
        image.unlink()
    (folder / "square" / "readme.txt").write_text("no pictures")


def one_class(folder: Path) -> None:
    import shutil

    for shape in ("square", "triangle"):
        shutil.rmtree(folder / shape)


def set_layer(index: int, **values):
    return lambda cfg, tmp: cfg["model"]["layers"][index].update(values)


def set_training(**values):
    return lambda cfg, tmp: cfg["training"].update(values)


CASES = [
    # ---- schema
    Case("unknown-section", ["unknown key 'modle'", "did you mean 'model'"], mutate=lambda c, t: c.update(modle={})),
    Case("unknown-training-key", ["unknown key 'epocs' in training", "did you mean 'epochs'"], mutate=set_training(epocs=3)),
    Case("epochs-zero", ["training.epochs", "greater than or equal to 1"], mutate=set_training(epochs=0)),
    Case("batch-size-text", ["training.batch_size", "valid integer"], mutate=set_training(batch_size="big")),
    Case("dataset-name-typo", ["dataset.name", "did you mean 'mnist'"], mutate=lambda c, t: c["dataset"].update(name="mnst")),
    Case("validation-out-of-range", ["dataset.validation", "less than 1"], mutate=lambda c, t: c["dataset"].update(validation=1.5)),
    Case("unknown-step", ["preprocessing[0].type", "did you mean 'flatten'"], mutate=lambda c, t: c.update(preprocessing=["flaten"])),
    Case("scale-without-factor", ["preprocessing[0].factor is required"], mutate=lambda c, t: c.update(preprocessing=[{"type": "scale"}])),
    Case("checkpoint-choice", ["training.checkpoint"], mutate=set_training(checkpoint="sometimes")),
    Case("no-layers", ["model.layers", "at least 1 item"], mutate=lambda c, t: c.update(model={"layers": []})),
    Case("invalid-yaml", ["invalid YAML", "config.yaml:3"], raw_config="dataset:\n  name: [diabetes\nmodel: {}\n"),
    Case("not-a-mapping", ["must be a mapping"], raw_config="- just\n- a list\n"),
    # ---- Keras names, checked before training
    Case("unknown-layer", ["model.layers[0].type", "keras.layers has no layer 'Dens'", "did you mean 'Dense'"], mutate=set_layer(0, type="Dens")),
    Case("unknown-layer-arg", ["model.layers[0]", "Dense has no argument 'unit'", "did you mean 'units'"],
         mutate=lambda c, t: c["model"]["layers"][0].update(unit=c["model"]["layers"][0].pop("units"))),
    Case("bad-layer-value", ["model.layers[1] (Dropout)", "rate"], base="mnist_mlp", mutate=set_layer(1, rate=1.5)),
    Case("units-zero", ["model.layers[0] (Dense)", "units=0"], mutate=set_layer(0, units=0)),
    Case("unknown-optimizer", ["unknown optimizer 'adamm'", "did you mean 'adam'"], mutate=set_training(optimizer="adamm")),
    Case("unknown-optimizer-unlike-any", ["unknown optimizer 'zzzz'. Valid optimizers: "], mutate=set_training(optimizer="zzzz")),
    Case("unknown-optimizer-arg", ["training.optimizer", "no argument 'lr'", "did you mean"],
         mutate=set_training(optimizer={"type": "adam", "lr": 0.01})),
    Case("unknown-loss", ["training.loss", "unknown loss 'binary_crossentropyy'", "did you mean 'binary_crossentropy'"],
         mutate=set_training(loss="binary_crossentropyy")),
    Case("unknown-metric", ["training.metrics[0]", "unknown metric 'acuracy'", "did you mean"], mutate=set_training(metrics=["acuracy"])),
    Case("unknown-callback", ["training.callbacks[0].type", "did you mean 'EarlyStopping'"],
         mutate=set_training(callbacks=[{"type": "EarlyStoping"}])),
    Case("unknown-callback-arg", ["training.callbacks[0]", "no argument 'patiance'", "did you mean 'patience'"],
         mutate=set_training(callbacks=[{"type": "EarlyStopping", "monitor": "loss", "patiance": 3}])),
    # ---- model and data that don't fit together
    Case("wrong-output-width", ["the last layer gives 7 outputs but the dataset has 10 classes", "model.layers[1].units to 10"],
         base="mnist_dense32", mutate=set_layer(1, units=7), args=["--set", "dataset.limit=100"]),
    Case("conv-on-flat-images", ["model.layers[0] (Conv2D)", "drop the 'flatten' step"], base="fashion_cnn",
         mutate=lambda c, t: c.update(preprocessing=["flatten", {"type": "scale", "factor": 0.1}, "one_hot"])),
    Case("conv-without-channel-axis", ["model.layers[0] (Conv2D)", "add_channel_axis"], base="fashion_cnn",
         mutate=lambda c, t: c.update(preprocessing=[{"type": "scale", "factor": 0.1}, "one_hot"])),
    Case("dense-on-images", ["output has shape (28, 10)", "Flatten"], base="mnist_dense32",
         mutate=lambda c, t: c.update(preprocessing=[{"type": "scale", "factor": 0.1}, "one_hot"])),
    Case("categorical-on-integer-labels", ["categorical_crossentropy needs one-hot labels", "one_hot"], base="mnist_dense32",
         mutate=lambda c, t: c.update(preprocessing=["flatten"])),
    Case("sparse-on-one-hot", ["sparse_categorical_crossentropy needs integer labels"], base="mnist_dense32",
         mutate=set_training(loss="sparse_categorical_crossentropy")),
    Case("binary-loss-ten-classes", ["binary_crossentropy needs one output for two classes"], base="mnist_dense32",
         mutate=lambda c, t: (c.update(preprocessing=["flatten"]), c["training"].update(loss="binary_crossentropy"))),
    Case("monitor-without-validation", ["training.callbacks[0].monitor", "'val_accuracy'", "no validation data"],
         mutate=set_training(callbacks=[{"type": "EarlyStopping", "monitor": "val_accuracy"}])),
    Case("default-monitor-without-validation", ["training.callbacks[0].monitor: 'val_loss' (EarlyStopping's default)",
                                                "no validation data"],  # else it never stops, with a warning only
         mutate=set_training(callbacks=[{"type": "EarlyStopping", "patience": 2}])),
    Case("default-checkpoint-monitor-without-validation", ["'val_loss' (ModelCheckpoint's default)", "no validation data"],
         mutate=set_training(callbacks=[{"type": "ModelCheckpoint", "filepath": "m.keras", "save_best_only": True}])),
    # ---- data files
    csv_case("csv-non-numeric", "a,b,label\n1,2,0\n3,x,1\n", ["data.csv", "column 'b' is numeric (dataset.columns) but row 3 has 'x'"],
             dataset={"columns": {"b": "numeric"}}),
    csv_case("csv-missing-value", "a,b,label\n1,2,0\n3,,1\n", ["data.csv", "missing value at row 3, column 'b'", "dataset.missing"]),
    csv_case("csv-column-count", "a,b,label\n1,2,0\n3,4,1,5\n", ["data.csv", "wrong column count (a ragged row): row 3 has 4 cells"]),
    csv_case("csv-single-class", "a,b,label\n1,2,1\n3,4,1\n5,6,1\n", ["data.csv", "single class"]),
    csv_case("csv-empty", "", ["data.csv", "empty"]),
    csv_case("csv-header-only", "a,b,label\n", ["data.csv", "a header but no rows of data"]),
    # ---- typed CSV data
    csv_case("csv-inf-cell", rows("a,b,label", lambda i: f"{i},{'inf' if i == 4 else i * 2},{i % 2}"),
             ["data.csv", "column 'b' has an infinite value 'inf' at row 6"]),
    csv_case("csv-all-missing-column", rows("a,b,label", lambda i: f"{i},NA,{i % 2}"),
             ["data.csv", "column 'b' is empty: all 12 cells are missing", "dataset.columns.b: ignore"], dataset={"missing": "impute"}),
    csv_case("csv-trailing-comma", "a,b,label,\n" + "".join(f"{i},{i * 2},{i % 2},\n" for i in range(12)),
             ["data.csv: the last column has no name and no values (each line ends with ','?)"]),
    csv_case("csv-other-encoding", "a,b,label\ncafé,1,0\nthé,2,1\n".encode("latin-1"), ["data.csv", "not UTF-8", "Save the file as UTF-8"]),
    csv_case("csv-utf16", "a,b,label\n1,1,0\n2,2,1\n".encode("utf-16"), ["data.csv", "not UTF-8", "UTF-16, by its first bytes"]),
    csv_case("csv-delimiter-mismatch", rows("a;b;label", lambda i: f"{i};{i};{i % 2}"),
             ["data.csv", "looks semicolon-separated", "dataset.delimiter: ';'"]),
    csv_case("csv-ten-thousand-categories", rows("id,b,label", lambda i: f"user{i},{i % 7},{i % 2}", n=10_000),
             ["data.csv", "column 'id' has 10,000 distinct values", "dataset.columns.id: ignore"]),
    csv_case("csv-missing-label", "a,b,label\n1,2,0\n3,4,NA\n5,6,1\n", ["data.csv", "the label column 'label' has 1 missing", "row 3"]),
    csv_case("csv-duplicate-header", "a,a,label\n1,2,0\n3,4,1\n", ["data.csv", "names column 'a' twice"]),
    csv_case("csv-columns-unknown", "a,b,label\n1,2,0\n3,4,1\n", ["dataset.columns.c", "has no column 'c'", "Columns: a, b, label"],
             dataset={"columns": {"c": "categorical"}}),
    csv_case("csv-columns-label", "a,b,label\n1,2,0\n3,4,1\n", ["dataset.columns.label", "is the label"],
             dataset={"columns": {"label": "numeric"}}),
    csv_case("csv-binary-three-values", rows("a,b,label", lambda i: f"{i},{'xyz'[i % 3]},{i % 2}"),
             ["data.csv", "column 'b' is binary (dataset.columns) but has 3 distinct values"], dataset={"columns": {"b": "binary"}}),
    csv_case("csv-drop-leaves-nothing", rows("a,b,label", lambda i: f"{'NA' if i % 2 else i},{i if i % 2 else ''},{i % 2}"),
             ["data.csv", "every row has a missing cell"], dataset={"missing": "drop"}),
    csv_case("csv-continuous-label-with-classification-loss", rows("a,b,label", lambda i: f"{i},{i * 3},{i * 1.37 + 0.5}", n=40),
             ["data.csv", "label column 'label' looks continuous", "training.loss: mse"]),
    csv_case("csv-regression-loss-on-string-label", rows("a,b,label", lambda i: f"{i},{i * 3},{'yes' if i % 2 else 'no'}"),
             ["data.csv", "the label column 'label' holds text", "regression loss"], training=MSE, last_units=1),
    csv_case("csv-regression-with-three-outputs", rows("a,b,label", lambda i: f"{i},{i * 3},{i * 1.5}"),
             ["the last layer gives 3 outputs but a regression predicts one number", "model.layers[2].units to 1"],
             training=MSE, last_units=3),
    csv_case("csv-one-hot-on-a-regression-label", rows("a,b,label", lambda i: f"{i},{i * 3},{i * 1.5}"),
             ["'one_hot'", "regression", "remove 'one_hot' from preprocessing"], training=MSE, preprocessing=["one_hot"]),
    csv_case("csv-regression-task-with-classification-loss", rows("a,b,label", lambda i: f"{i},{i * 3},{i * 1.5}"),
             ["dataset.task is regression but training.loss 'binary_crossentropy'", "mse"], dataset={"task": "regression"}),
    csv_case("csv-stratified-regression", rows("a,b,label", lambda i: f"{i},{i * 3},{i * 1.5}"),
             ["dataset.stratify", "a regression has no classes", "stratify: false"], training=MSE, last_units=1,
             dataset={"stratify": True}),
    csv_case("csv-constant-regression-label", rows("a,b,label", lambda i: f"{i},{i * 3},7.5"),
             ["data.csv", "the label column 'label' is the same number (7.5) in every row"], training=MSE),
    csv_case("csv-no-label-column", "a,b,c\n1,2,0\n3,4,1\n", ["data.csv", "label column 'label' is not in the file"]),
    Case("csv-file-missing", ["dataset.path", "nope.csv", "file not found"],
         mutate=lambda c, t: c.update(dataset={"name": "csv", "path": str(t / "nope.csv")})),
    Case("csv-path-is-a-folder", ["dataset.path", "a folder, not a CSV file; give the file's path"],
         mutate=lambda c, t: c.update(dataset={"name": "csv", "path": str(t)})),
    Case("idx-folder-missing", ["dataset.path", "folder not found"], base="mnist_dense32",
         mutate=lambda c, t: c["dataset"].update(path=str(t / "nowhere"))),
    idx_case("idx-file-missing", lambda f: (f / "t10k-labels-idx1-ubyte.gz").unlink(), ["missing t10k-labels-idx1-ubyte"]),
    idx_case("idx-truncated-gzip", lambda f: (f / "train-images-idx3-ubyte.gz").write_bytes(
        (f / "train-images-idx3-ubyte.gz").read_bytes()[:-20]), ["train-images-idx3-ubyte.gz", "truncated or corrupt gzip"]),
    idx_case("idx-bad-magic", lambda f: (f / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x12\x34\x56\x78abcd")),
             ["train-labels-idx1-ubyte.gz", "not an IDX file"]),
    idx_case("idx-size-mismatch", lambda f: (f / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(gzip.decompress((f / "t10k-images-idx3-ubyte.gz").read_bytes())[:-100])),
             ["t10k-images-idx3-ubyte.gz", "header says shape (3, 28, 28) (2352 bytes of data) but the file holds 2252"]),
    idx_case("idx-checksum", lambda f: None, ["train-images-idx3-ubyte.gz", "checksum mismatch"], fake_checksums=False),
    # ---- CLI arguments
    Case("config-file-missing", ["missing.yaml", "not found"], args=["{tmp}/missing.yaml"], mutate=None, base=""),
    Case("config-file-missing-relative", ["config file nope.yaml not found"], args=["nope.yaml"], base=""),
    Case("set-unknown-layer", ["keras.layers has no layer 'Dens'; did you mean 'Dense'?"],
         args=["--set", "model.layers.0.type=Dens"]),
    Case("set-units-zero", ["model.layers[0] (Dense)", "units=0"], args=["--set", "model.layers.0.units=0"]),
    Case("check-set-unknown-optimizer", ["unknown optimizer 'adamm'; did you mean 'adam'?"], command="check",
         args=["--set", "training.optimizer.type=adamm"]),
    Case("set-unknown-key", ["--set training.epocs", "did you mean 'epochs'"], args=["--set", "training.epocs=3"]),
    Case("set-bad-index", ["--set model.layers[7].units", "list of 3 items"], args=["--set", "model.layers.7.units=3"]),
    Case("set-without-value", ["expected KEY=VALUE"], args=["--set", "training.epochs"]),
    Case("set-wrong-type", ["training.epochs", "valid integer"], args=["--set", "training.epochs=many"]),
    Case("set-fraction-for-a-whole-number", ["training.batch_size: input should be a valid integer: not a number with a "
                                             "fractional part, got 1.5 "], args=["--set", "training.batch_size=1.5"]),
    Case("name-with-slash", ["run.name", "got 'a/b'", "Pass another --name."], args=["--name", "a/b"]),
    Case("name-empty", ["run.name", "got ''", "(given by --name). Pass another --name."], args=["--name", ""]),
    Case("runs-dir-empty", ["run.runs_dir: must name a folder, e.g. runs, got ''", "Pass another --runs-dir."],
         args=["--runs-dir", ""]),  # not the current folder: an unset shell variable, say
    Case("runs-dir-is-a-file", ["runs folder", "cannot create it"], args=["--runs-dir", "{tmp}/file.txt"]),
    Case("no-config", ["give exactly one of CONFIG"], args=[], base=""),
    Case("config-and-resume", ["give exactly one of CONFIG", "--resume"], args=["--resume", "{tmp}"]),
    Case("resume-not-a-run", ["not an nnrun run directory"], args=["--resume", "{tmp}"], base=""),
    Case("resume-missing", ["run directory", "not found"], args=["--resume", "{tmp}/nope"], base=""),
    Case("check-unknown-layer", ["did you mean 'Dense'"], command="check", mutate=set_layer(0, type="dense")),
    Case("check-bad-set", ["did you mean 'epochs'"], command="check", args=["--set", "training.epoch=1"]),
    Case("float16-without-a-gpu", ["training.precision float16 needs a GPU", "precision: bfloat16"],
         args=["--set", "training.precision=float16"]),
    Case("precision-choice", ["training.precision", "'float32', 'bfloat16' or 'float16'"], args=["--set", "training.precision=fp8"]),
    # ---- nnrun sweep: checked before the sweep folder exists
    Case("sweep-bad-search", ["sweep.search: input should be 'grid', 'random' or 'tpe', got 'bayes'", "Pass another --search."], base="diabetes_sweep",
         command="sweep", args=["--search", "bayes"]),
    Case("sweep-name-with-slash", ["run.name", "got 'a/b'", "Pass another --name."], base="diabetes_sweep",
         command="sweep", args=["--name", "a/b"]),
    Case("sweep-set-on-a-grid-key", ["--set training.batch_size=32: the sweep varies training.batch_size over [16, 64]",
                                     "drop the --set"], base="diabetes_sweep", command="sweep",
         args=["--set", "training.batch_size=32"]),  # else every trial replaced it, and sweep.json kept it
    Case("sweep-grid-not-a-mapping", ["sweep.grid: input should be a valid dictionary",
                                      "Fix the file or pass --set sweep.grid=..."], base="diabetes_sweep",
         command="sweep", mutate=lambda c, t: c["sweep"].update(grid=[12, 64])),  # not 'give it a list'
    Case("sweep-grid-value-not-a-list", ["sweep.grid.model.layers.0.units:", "got 12 (",
                                         "Give it a list of values in the file, e.g. [12, 64]"], base="diabetes_sweep",
         command="sweep", mutate=lambda c, t: c["sweep"].update(grid={"model.layers.0.units": 12})),  # not --set: dotted
    Case("sweep-grid-trials-above-its-size", ["--trials 9: the grid has 4 points", "give at most 4",
                                              "--search random or --search tpe"], base="diabetes_sweep",
         command="sweep", args=["--trials", "9"]),  # not 4 trials, silently
    Case("sweep-metric-val-mae", ["--metric 'val_mae': not a metric the compare table has",
                                  "pass validation.mae (its last epoch) or best_validation.mae"], base="diabetes_sweep",
         command="sweep", args=["--metric", "val_mae"]),
    Case("sweep-metric-best-val-of-a-logged-metric", ["--metric 'best_val_AUC': not a metric the compare table has",
                                                      "pass validation.AUC (its last epoch) or best_validation.AUC"],
         base="diabetes_sweep", command="sweep", args=["--metric", "best_val_AUC", "--set", "training.metrics=[AUC]"]),
    Case("sweep-metric-val-of-an-unlogged-metric", ["--metric 'val_auc'", "pass validation.auc (its last epoch) or "
                                                    "best_validation.auc (at the epoch of the lowest val_loss), once "
                                                    "training.metrics has auc."],
         base="diabetes_sweep", command="sweep", args=["--metric", "val_auc"]),  # not 'did you mean best_val_loss'
    Case("sweep-metric-val-of-a-misspelt-logged-metric", ["--metric 'val_precison'", "pass validation.precision (its "
                                                          "last epoch) or best_validation.precision"],
         base="diabetes_sweep", command="sweep", args=["--metric", "val_precison", "--set",
                                                       "training.metrics=[accuracy,precision]"]),  # not val_precision
    Case("sweep-metric-val-rmse", ["--metric 'val_rmse'", "rmse is nnrun's own measure of a regression, taken once, "
                                   "on the test data (test_rmse)"],
         base="penguins_mass", command="sweep", args=["--metric", "val_rmse", "--grid", "training.batch_size=8,16"]),
    Case("sweep-runs-dir-empty", ["run.runs_dir: must name a folder", "Pass another --runs-dir."],
         base="diabetes_sweep", command="sweep", args=["--runs-dir", ""]),
    Case("resume-with-empty-runs-dir", ["--resume continues a run exactly as it was configured"],
         args=["--resume", "{tmp}", "--runs-dir", ""], base=""),
    Case("sweep-bad-prune", ["sweep.prune: input should be 'none', 'median' or 'hyperband', got 'always'"], base="diabetes_sweep",
         command="sweep", args=["--prune", "always"]),
    Case("sweep-metric-not-logged", ["--metric validation.auc: the trials log only loss, accuracy", "add auc to training.metrics"],
         base="diabetes_sweep", command="sweep", args=["--metric", "validation.auc"]),
    Case("sweep-prune-end-only-metric", ["--prune hyperband (sweep.prune) needs a metric logged after every epoch", "--metric test_accuracy"],
         base="diabetes_sweep", command="sweep", args=["--prune", "hyperband", "--metric", "test_accuracy"]),
    Case("sweep-tpe-without-trials", ["--search tpe (sweep.search) needs --trials N (sweep.trials"], base="diabetes_sweep", command="sweep",
         args=["--search", "tpe"]),
    Case("sweep-grid-with-a-range", ["loguniform(1e-4,1e-1) is a range, which --search grid cannot enumerate", "--search tpe"],
         base="diabetes_sweep", command="sweep", args=["--grid", "training.optimizer.learning_rate=loguniform(1e-4,1e-1)"]),
    Case("sweep-jobs-zero", ["--jobs must be >= 1, got 0"], base="diabetes_sweep", command="sweep", args=["--jobs", "0"]),
    Case("sweep-gpus-negative", ["--gpus-per-trial must be a share of one GPU (0.5, say) or a whole number of GPUs, got -1"],
         base="diabetes_sweep", command="sweep", args=["--executor", "ray", "--gpus-per-trial", "-1"]),  # fmt: skip
    Case("sweep-gpus-nan", ["--gpus-per-trial must be a share of one GPU (0.5, say) or a whole number of GPUs, got nan"],
         base="diabetes_sweep", command="sweep", args=["--executor", "ray", "--gpus-per-trial", "nan"]),  # fmt: skip
    Case("sweep-ray-with-jobs", ["--jobs is for --executor local"], base="diabetes_sweep", command="sweep",
         args=["--executor", "ray", "--jobs", "2"]),
    Case("sweep-repeats-zero", ["sweep.repeats: input should be greater than or equal to 1, got 0"], base="diabetes_sweep", command="sweep", args=["--repeats", "0"]),
    Case("sweep-bad-storage", ["--storage nosuchdb://x: cannot open it", "sqlite:////"], base="diabetes_sweep", command="sweep",
         args=["--storage", "nosuchdb://x"]),
    Case("sweep-empty-storage", ["--storage is empty; give an SQLAlchemy URL"], base="diabetes_sweep", command="sweep",
         args=["--storage", ""]),
    Case("sweep-join-not-a-sweep", ["is not a sweep directory (no sweep.json); pass the runs/sweep-... folder a sweep printed."],
         base="", command="sweep", args=["--join", "{tmp}"]),
    Case("sweep-join-with-set-up", ["--join works on a sweep exactly as it was set up; drop --trials (a sweep with other "
                                    "settings is a new sweep: nnrun sweep CONFIG ...)."], base="", command="sweep",
         args=["--join", "{tmp}", "--trials", "3"]),
    Case("sweep-fractions-for-whole-numbers", ["--grid training.batch_size: uniform(8.5,64) draws fractions, and "
                                               "training.batch_size takes whole numbers: use randint(9, 64)."], base="diabetes_sweep", command="sweep",
         args=["--search", "tpe", "--trials", "2", "--grid", "training.batch_size=uniform(8.5,64)"]),
    Case("sweep-prune-without-validation", ["is measured once, at the end. Pass --metric train.accuracy, its value after "
                                            "each epoch."],
         base="diabetes_sweep", command="sweep", args=["--prune", "median", "--metric", "test_accuracy", "--set",
                                                       "dataset.validation=none"]),
    Case("sweep-values-in-brackets", ["--grid training.optimizer.learning_rate: to try each value in [0.1, 0.01], list them "
                                      "without the brackets: --grid training.optimizer.learning_rate=0.1,0.01."],
         base="diabetes_sweep", command="sweep", args=["--grid", "training.optimizer.learning_rate=[0.1,0.01]"]),
    Case("sweep-texts-in-brackets", ["to try each value in [\"mse\", \"a b\"], list them without the brackets: "
                                     "--grid 'training.loss=mse,\"a b\"'."],  # one word for the shell
         base="diabetes_sweep", command="sweep", args=["--grid", "training.loss=[mse,'a b']"]),
    Case("sweep-misspelt-metric-every-trial-would-have", ["training.metrics[1]: unknown metric 'bogus'"],
         base="diabetes_sweep", command="sweep", args=["--set", "training.metrics=[accuracy,bogus]"]),
    Case("sweep-grid-value-no-trial-can-build", ["sweep key model.layers.1.activation value \"reluu\": model.layers[1] "
                                                "(Dense): Could not interpret activation function identifier: reluu.",
                                                "Every trial with that value would fail on this: fix or drop the value."],
         base="diabetes_sweep", command="sweep", args=["--grid", "model.layers.1.activation=relu,reluu"]),
    Case("sweep-grid-value-no-such-data-file", ["sweep key dataset.path value \"configs/data/nope.csv\": dataset.path "
                                                "configs/data/nope.csv: file not found."],
         base="penguins_species", command="sweep", args=["--grid", "dataset.path=configs/data/penguins.csv,configs/data/nope.csv"]),
    Case("sweep-grid-value-without-the-metric", ["sweep key training.metrics value [\"AUC\"]: sweep.metric val_accuracy (best_val_accuracy): "
                                                 "the trials log only loss, AUC, val_loss, val_AUC", "Or drop that value."],
         base="diabetes_sweep", command="sweep", args=["--grid", "training.metrics=[accuracy],[AUC]"]),
    Case("sweep-grid-value-without-validation", ["sweep key dataset.validation value \"none\": sweep.metric val_accuracy: "
                                                 "the trials have no validation data"],
         base="diabetes_sweep", command="check", args=["--set", "sweep.grid={dataset.validation: [0.2, none]}"]),
    Case("sweep-data-file-missing-where-it-starts", ["dataset.path configs/data/nope.csv: file not found. Check the path."],
         base="penguins_species", command="sweep", args=["--set", "dataset.path=configs/data/nope.csv", "--grid",
                                                         "training.batch_size=16,32"]),
    Case("sweep-grid-without-key", ["--grid '=1,2': no key before '='"], base="diabetes_sweep", command="sweep",
         args=["--grid", "=1,2"]),
    Case("sweep-prune-a-loss-measured-at-the-end", ["--metric test.loss is measured once, at the end. Pass --metric validation.loss"],
         base="diabetes_sweep", command="sweep", args=["--prune", "median", "--metric", "test.loss"]),
    # ---- nnrun mlflow sync (an unreachable server is a run case below; more in test_mlflow.py)
    # ---- image folders: wrong before anything trains
    image_case("images-nonexistent-path", lambda f: None, [
        "dataset.path: folder 'no/such/folder' does not exist", "; expected a folder with one sub-folder of images "
        "per class, e.g. no/such/folder/cats/*.jpg. Fix the path in the config."], path="no/such/folder"),
    image_case("images-empty-class-folder", empty_class, [
        "class folder '", "shapes/square' has no images (.jpg, .jpeg, .png, .bmp, .gif); add images to it or remove "
        "the folder."]),
    image_case("images-one-class-only", one_class, [
        "shapes' has one class folder ('circle'); a classifier needs at least two. Add a sub-folder of images for "
        "each other class."]),
    image_case("images-no-class-folders", lambda f: None, [
        "circle' has no sub-folders; expected one sub-folder of images per class", "It holds 4 image files directly, "
        "but no class folders. Move the images into one folder per class."], path="{shapes}/circle"),
    image_case("images-test-path-extra-class", lambda f: (f.parent / "test" / "hexagon").mkdir(parents=True), [
        "dataset.test_path: class folder 'hexagon' is not one of the training folder's classes (circle, square, "
        "triangle); rename or remove it."], test_path="{shapes}/../test"),
    image_case("images-backbone-offline", lambda f: None, [
        "model.layers[0] (MobileNetV2, weights: imagenet): mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5 "
        f"is not in the Keras cache {keras_cache_dir()}/ and nnrun does not download; put the file there (from "
        "https://storage.googleapis.com/", "or use weights: null."], image_size=[96, 96], color_mode="rgb",
        backbone={"type": "MobileNetV2", "weights": "imagenet", "alpha": 0.35}),
    image_case("images-backbone-weights-file-missing", lambda f: None, [
        "model.layers[0].weights: file 'nope.weights.h5' not found; expected 'imagenet', null, or the path of a "
        "weights file"], image_size=[32, 32], backbone={"type": "MobileNetV2", "weights": "nope.weights.h5"}),
    Case("mlflow-sync-not-a-run", ["is not an nnrun run directory or sweep (no run.json or sweep.json in it or below)"],
         command="mlflow", args=["sync", "{tmp}"], base=""),
    Case("mlflow-sync-missing-path", ["nope: not found", "Pass a run directory, a sweep folder"], command="mlflow",
         args=["sync", "{tmp}/nope"], base=""),
]


def assert_one_line_error(result, code: int, expected: list[str]) -> None:
    """Exit ``code``; one ``Error:`` line, the last, holding every expected text; no traceback."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert sum("Error" in line for line in lines) == 1, result.stderr
    for text in expected:
        assert text in lines[-1], f"{text!r} not in {lines[-1]!r}"
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, monkeypatch):
    if case.fake_checksums:
        from nnrun.datasets import idx

        real_read = idx.read_idx
        monkeypatch.setattr(idx, "read_idx", lambda path, expected=None: real_read(path, None))
    (tmp_path / "file.txt").write_text("not a folder")
    runs = tmp_path / "runs"
    args = [case.command]
    if case.raw_config is not None:
        path = tmp_path / "config.yaml"
        path.write_text(case.raw_config)
        args.append(str(path))
    elif case.base:
        config = load(case.base)
        if case.mutate:
            case.mutate(config, tmp_path)
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        args.append(str(path))
    args += [a.replace("{tmp}", str(tmp_path)) for a in case.args]
    if case.command in ("train", "sweep") and not {"--runs-dir", "--resume", "--join"} & set(args):
        args += ["--runs-dir", str(runs)]

    result = runner.invoke(app, args)

    assert_one_line_error(result, case.code, case.expected)
    if case.command == "train":  # before the error, only the echoed --set values
        assert all(line.startswith("override ") for line in result.stderr.strip().splitlines()[:-1]), result.stderr
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())  # no run directory at all


# ------------------------------------------------------- image files that are skipped, or noted, not errors


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk claiming ``width`` x ``height``: what a decompression bomb starts with."""
    import struct
    import zlib

    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + b"\0" * 32


def gray_png(path: Path, size: tuple[int, int]) -> Path:
    from PIL import Image

    Image.new("L", size, 128).save(path)
    return path


#: (id, what to do to the folder (returns the path named in the line), the line `nnrun check` prints with {path}).
IMAGE_NOTES = [
    ("corrupt-jpeg", lambda f: write(f / "circle" / "bad.jpg", (f / "circle" / "circle_001.jpg").read_bytes()[:300]),
     "note: skipped 1 file(s): {path}: not a decodable image (jpeg::Uncompress failed. Invalid JPEG data or crop window)"),
    ("zero-byte-file", lambda f: write(f / "circle" / "empty.png", b""),
     "note: skipped 1 file(s): {path}: an empty file (0 bytes)"),
    ("text-file-named-png", lambda f: write(f / "square" / "notes.png", "these are my notes\n"),
     "note: skipped 1 file(s): {path}: not a decodable image (Unknown image file format. One of JPEG, JPEG XL, PNG, "
     "GIF, BMP, WebP required)"),
    ("very-large-image", lambda f: write(f / "square" / "huge.png", png_header(20000, 10000)),
     "note: skipped 1 file(s): {path}: 20000x10000 pixels, more than the 100 megapixels nnrun decodes; shrink it"),
    ("mixed-grayscale-and-rgb", lambda f: gray_png(f / "triangle" / "gray.png", (20, 20)),
     "note: 1 grayscale image(s) converted to rgb (dataset.color_mode)"),
    ("one-by-one-image", lambda f: gray_png(f / "triangle" / "dot.png", (1, 1)),
     "note: 1 image(s) smaller than 4 pixels on a side were enlarged to 16x16, e.g. {path} (1x1)"),
    ("symlink-loop", lambda f: ((f / "circle" / "loop").symlink_to(f), f / "circle" / "loop")[1],
     "note: skipped 1 link(s) or folder(s) that cannot be read: {path}: a folder link that loops back to {folder}"),
    ("non-image-file", lambda f: write(f / "circle" / "readme.txt", "hello"),
     "note: ignored 1 file(s) without an image extension (.jpg, .jpeg, .png, .bmp, .gif)"),
]


@pytest.mark.parametrize("id, breaker, line", IMAGE_NOTES, ids=[c[0] for c in IMAGE_NOTES])
def test_image_files_are_skipped_and_reported(id, breaker, line, tmp_path: Path):
    """Exit 0 and the one line that names the file; everything else in the folder is still used."""
    folder = make_image_folder(tmp_path / "shapes", per_class=4)
    path = breaker(folder)
    config = load("mnist_png")
    config["dataset"] = {"name": "images", "path": str(folder), "image_size": [16, 16], "color_mode": "rgb"}
    config["model"]["layers"][-1]["units"] = 3
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = runner.invoke(app, ["check", str(tmp_path / "config.yaml")])
    assert result.exit_code == 0, result.output
    assert line.format(path=path, folder=folder) in result.stderr.splitlines(), result.stderr
    assert "Traceback" not in result.output
    total = [row for row in result.stderr.splitlines() if row.startswith("│ total")]
    listed = 12 + (path is not None and path.suffix in (".png", ".jpg") and not path.is_dir())  # counted, not decoded
    assert total and sum(int(cell) for cell in total[0].split("│")[2:4]) == listed, total


# ------------------------------------------------------- commands on a trained run


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return path


def save(path: Path, array) -> Path:
    import numpy as np

    np.save(path, array)
    return path


def zeros(shape, dtype="uint8"):
    import numpy as np

    return np.zeros(shape, dtype)


@dataclass
class RunCase:
    """A command on a private copy of a trained run; ``prepare`` damages it or makes inputs and returns the args."""

    id: str
    run: str  # the conftest fixture: diabetes_run, mnist_run or fashion_run
    prepare: Callable[[Path, Path], list[str]]
    expected: list[str]
    code: int = 2


def damage(action: Callable[[Path], object]) -> Callable[[Path, Path], list[str]]:
    return lambda run, tmp: (action(run), ["evaluate", str(run)])[1]


def predict_input(make: Callable[[Path], Path]) -> Callable[[Path, Path], list[str]]:
    return lambda run, tmp: ["predict", str(run), str(make(tmp))]


def set_validation_none(run: Path) -> None:
    (run / rd.CONFIG).write_text((run / rd.CONFIG).read_text().replace("validation: 0.2", "validation: none"))


def crash(run: Path) -> None:
    """What kill -9 during training leaves: status running, a dead pid, no final model."""
    info = json.loads((run / rd.RUN).read_text())
    (run / rd.RUN).write_text(json.dumps({**info, "status": "running", "pid": 2**22 + 12345}))
    (run / rd.MODEL).unlink()
def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mlflow_sync(run: Path, tmp: Path, uri: str | None = None) -> list[str]:
    return ["mlflow", "sync", str(run), "--tracking-uri", uri or f"sqlite:///{tmp / 'mlflow.db'}"]


def tiny_idx_folder(tmp: Path) -> Path:
    write(tmp / "x-images.idx", idx_bytes(zeros((3, 10, 10))))
    write(tmp / "x-labels.idx", idx_bytes(zeros(3)))
    return tmp


RUN_CASES = [
    # ---- evaluate on a damaged run directory
    RunCase("evaluate-no-model", "diabetes_run", damage(lambda r: (r / rd.MODEL).unlink()), ["no model.keras (run status: completed)"]),
    RunCase("evaluate-corrupt-model", "diabetes_run", damage(lambda r: (r / rd.MODEL).write_bytes(b"not a zip file")),
            ["cannot load the model (not a .keras zip archive (truncated, or another kind of file)). The file is damaged"]),
    RunCase("evaluate-corrupt-preprocessing", "diabetes_run", damage(lambda r: (r / rd.PREPROCESSING).write_text('{"steps": 3')),
            ["preprocessing.json: corrupt JSON"]),
    RunCase("evaluate-malformed-preprocessing", "diabetes_run", damage(lambda r: (r / rd.PREPROCESSING).write_text('{"format": 1}')),
            ["preprocessing.json is malformed"]),
    RunCase("evaluate-no-config", "diabetes_run", damage(lambda r: (r / rd.CONFIG).unlink()), ["no config.yaml"]),
    RunCase("evaluate-invalid-config", "diabetes_run", damage(lambda r: (r / rd.CONFIG).write_text("dataset: {name: imagenet}\n")),
            ["config.yaml is not a valid config"]),
    RunCase("evaluate-run-json-not-object", "diabetes_run", damage(lambda r: (r / rd.RUN).write_text("[1, 2]")),
            ["expected a JSON object"]),
    RunCase("evaluate-not-a-run", "diabetes_run", lambda run, tmp: ["evaluate", str(tmp)],
            ["is not an nnrun run directory (no run.json)"]),
    RunCase("evaluate-bad-split", "diabetes_run", lambda run, tmp: ["evaluate", str(run), "--split", "dev"],
            ["--split must be one of test, validation, train, got 'dev'"]),
    RunCase("evaluate-no-validation-split", "diabetes_run",
            lambda run, tmp: (set_validation_none(run), ["evaluate", str(run), "--split", "validation"])[1],
            ["has no validation split"]),
    RunCase("evaluate-data-nothing-there", "mnist_run", lambda run, tmp: ["evaluate", str(run), "--data", str(tmp / "nothing")],
            ["expected a folder with an IDX images file"]),
    RunCase("evaluate-data-wrong-image-size", "mnist_run", lambda run, tmp: ["evaluate", str(run), "--data", str(tiny_idx_folder(tmp))],
            ["images of shape (10, 10), but the run trained on 28x28 images"]),
    # ---- predict on a tabular run
    RunCase("predict-too-few-columns", "diabetes_run", predict_input(lambda d: write(d / "short.csv", "1,2,3,4,5,6,7\n")),
            ["wrong number of features: 7 columns, but the run trained on 8 features (Pregnancies, Glucose"]),
    RunCase("predict-missing-column", "diabetes_run", predict_input(lambda d: write(d / "named.csv", "Glucose,Age\n1,2\n")),
            ["wrong features: no column 'Pregnancies'"]),
    RunCase("predict-non-numeric", "diabetes_run", predict_input(lambda d: write(d / "cells.csv", "1,2,x,4,5,6,7,8\n")),
            ["non-numeric cell 'x' at row 1, column 3"]),
    RunCase("predict-image-for-tabular", "diabetes_run", predict_input(lambda d: write(d / "photo.png", "not really a PNG")),
            ["is an image, but this run trained on rows of 8 features"]),
    RunCase("predict-bad-npy-shape", "diabetes_run", predict_input(lambda d: save(d / "odd.npy", zeros((3, 5), "float64"))),
            ["array of shape (3, 5) cannot be converted to samples of shape (8,)"]),
    RunCase("predict-missing-file", "diabetes_run", predict_input(lambda d: d / "missing.csv"), ["missing.csv: file not found"]),
    RunCase("predict-unknown-kind", "diabetes_run", predict_input(lambda d: write(d / "data.bin", "garbage")), ["not an IDX file"]),
    # ---- predict on an image run
    RunCase("predict-unreadable-image", "fashion_run", predict_input(lambda d: write(d / "broken.png", "not really a PNG")),
            ["broken.png: cannot read it as an image"]),
    RunCase("predict-npy-shape", "fashion_run", predict_input(lambda d: save(d / "wide.npy", zeros((2, 30, 30)))),
            ["array of shape (2, 30, 30) cannot be converted to samples of shape (28, 28)"]),
    RunCase("predict-idx-labels", "fashion_run", predict_input(lambda d: write(d / "labels-idx1-ubyte", idx_bytes(zeros(4)))),
            ["array of shape (4,) cannot be converted to samples of shape (28, 28)"]),
    RunCase("predict-csv-width", "fashion_run", predict_input(lambda d: write(d / "pixels.csv", "1,2,3\n")),
            ["wrong number of features: 3 columns, but the run trained on 784"]),
    # ---- export
    RunCase("export-unknown-format", "diabetes_run", lambda run, tmp: ["export", str(run), "-f", "pmml", "-o", str(tmp / "m")],
            ["--format must be one of saved_model, onnx, litert, keras, got 'pmml'"]),
    RunCase("export-read-only-folder", "diabetes_run",
            lambda run, tmp: ["export", str(run), "-f", "keras", "-o", "/proc/self/model.keras"],
            ["cannot write in /proc/self", "choose another --output"]),
    RunCase("export-missing-folder", "diabetes_run",
            lambda run, tmp: ["export", str(run), "-f", "onnx", "-o", str(tmp / "nowhere" / "m.onnx")],
            ["does not exist; create it first"]),
    RunCase("export-no-model", "diabetes_run",
            lambda run, tmp: ((run / rd.MODEL).unlink(), ["export", str(run), "-f", "onnx", "-o", str(tmp / "m.onnx")])[1],
            ["no model.keras (run status: completed)"]),
    RunCase("export-crashed-run", "diabetes_run",
            lambda run, tmp: (crash(run), ["export", str(run), "-f", "keras", "-o", str(tmp / "m.keras")])[1],
            ["no model.keras (run status: crashed)", "checkpoints/last.keras"]),
    RunCase("export-existing-output", "diabetes_run",
            lambda run, tmp: ["export", str(run), "-f", "onnx", "-o", str(write(tmp / "m.onnx", "mine"))],
            ["m.onnx already exists; pass --force"]),
    RunCase("export-wrong-suffix", "diabetes_run", lambda run, tmp: ["export", str(run), "-f", "litert", "-o", str(tmp / "m.bin")],
            ["a litert file is named *.tflite", "m.tflite"]),
    RunCase("predict-bad-top-k", "fashion_run", lambda run, tmp: ["predict", str(run), str(write(tmp / "x.csv", "1\n")), "--top-k", "0"],
            ["--top-k must be at least 1, got 0"]),
    # ---- mlflow sync on a run: fails before MLflow is reached, within seconds
    RunCase("mlflow-sync-unreachable", "diabetes_run", lambda run, tmp: mlflow_sync(run, tmp, f"http://127.0.0.1:{closed_port()}"),
            ["MLflow tracking server http://127.0.0.1:", "is unreachable (connection refused)"], code=1),
    RunCase("mlflow-sync-corrupt-run-json", "diabetes_run", lambda run, tmp: ((run / rd.RUN).write_text("{"), mlflow_sync(run, tmp))[1],
            ["run.json: corrupt JSON"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", RUN_CASES, ids=[c.id for c in RUN_CASES])
def test_bad_input_on_a_run(case: RunCase, request, tmp_path: Path):
    import shutil

    source = request.getfixturevalue(case.run)
    run = Path(shutil.copytree(source, tmp_path / "run" / source.name))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    before = {p.name for p in run.iterdir()}
    result = runner.invoke(app, case.prepare(run, inputs))
    assert_one_line_error(result, case.code, case.expected)
    assert not (run / rd.EVALUATION).exists()
    assert {p.name for p in run.iterdir()} <= before  # nothing written, half or whole, beside the run's files
    assert not [p.name for p in inputs.iterdir() if p.name.startswith(".")]  # no export staging left behind


def test_the_catalogue_is_large_enough():
    assert len({c.id for c in CASES}) >= 30 and len({c.id for c in RUN_CASES}) >= 20
    assert len({c.id for c in CASES if c.id.startswith("csv-")}) >= 25  # of which 15+ typed-data cases
