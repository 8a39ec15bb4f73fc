"""The catalogue of bad inputs: configs, data files and CLI arguments.

Each one must exit with the right code, name the offending key or file, print
no traceback, and leave no run directory that claims ``completed``.
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

from nnrun.cli import app
from nnrun.datasets import IDX_FILES, idx_bytes

from conftest import ROOT

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


def csv_case(id: str, text: str, expected: list[str]) -> Case:
    def mutate(cfg: dict, tmp: Path) -> None:
        (tmp / "data.csv").write_text(text)
        cfg["dataset"] = {"name": "csv", "path": str(tmp / "data.csv"), "label": "label"}

    return Case(id, expected, mutate=mutate)


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
    Case("unknown-optimizer-arg", ["training.optimizer", "no argument 'lr'", "did you mean"],
         mutate=set_training(optimizer={"type": "adam", "lr": 0.01})),
    Case("unknown-loss", ["training.loss", "unknown loss 'binary_crossentropyy'", "did you mean 'binary_crossentropy'"],
         mutate=set_training(loss="binary_crossentropyy")),
    Case("unknown-metric", ["training.metrics[0]", "unknown metric 'acuracy'", "did you mean"], mutate=set_training(metrics=["acuracy"])),
    Case("unknown-callback", ["training.callbacks[0].type", "did you mean 'EarlyStopping'"],
         mutate=set_training(callbacks=[{"type": "EarlyStoping"}])),
    Case("unknown-callback-arg", ["training.callbacks[0]", "no argument 'patiance'", "did you mean 'patience'"],
         mutate=set_training(callbacks=[{"type": "EarlyStopping", "patiance": 3}])),
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
    # ---- data files
    csv_case("csv-non-numeric", "a,b,label\n1,2,0\n3,x,1\n", ["data.csv", "non-numeric cell 'x' at row 3, column 'b'"]),
    csv_case("csv-missing-value", "a,b,label\n1,2,0\n3,,1\n", ["data.csv", "missing value at row 3, column 'b'"]),
    csv_case("csv-column-count", "a,b,label\n1,2,0\n3,4,1,5\n", ["data.csv", "wrong column count"]),
    csv_case("csv-single-class", "a,b,label\n1,2,1\n3,4,1\n5,6,1\n", ["data.csv", "single class"]),
    csv_case("csv-empty", "", ["data.csv", "empty"]),
    csv_case("csv-no-label-column", "a,b,c\n1,2,0\n3,4,1\n", ["data.csv", "label column 'label' is not in the file"]),
    Case("csv-file-missing", ["dataset.path", "nope.csv", "file not found"],
         mutate=lambda c, t: c.update(dataset={"name": "csv", "path": str(t / "nope.csv")})),
    Case("idx-folder-missing", ["dataset.path", "folder not found"], base="mnist_dense32",
         mutate=lambda c, t: c["dataset"].update(path=str(t / "nowhere"))),
    idx_case("idx-file-missing", lambda f: (f / "t10k-labels-idx1-ubyte.gz").unlink(), ["missing t10k-labels-idx1-ubyte"]),
    idx_case("idx-truncated-gzip", lambda f: (f / "train-images-idx3-ubyte.gz").write_bytes(
        (f / "train-images-idx3-ubyte.gz").read_bytes()[:-20]), ["train-images-idx3-ubyte.gz", "truncated or corrupt gzip"]),
    idx_case("idx-bad-magic", lambda f: (f / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x12\x34\x56\x78abcd")),
             ["train-labels-idx1-ubyte.gz", "not an IDX file"]),
    idx_case("idx-size-mismatch", lambda f: (f / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(gzip.decompress((f / "t10k-images-idx3-ubyte.gz").read_bytes())[:-100])), ["t10k-images-idx3-ubyte.gz", "header says shape"]),
    idx_case("idx-checksum", lambda f: None, ["train-images-idx3-ubyte.gz", "checksum mismatch"], fake_checksums=False),
    # ---- CLI arguments
    Case("config-file-missing", ["missing.yaml", "not found"], args=["{tmp}/missing.yaml"], mutate=None, base=""),
    Case("set-unknown-key", ["--set training.epocs", "did you mean 'epochs'"], args=["--set", "training.epocs=3"]),
    Case("set-bad-index", ["--set model.layers[7].units", "list of 3 items"], args=["--set", "model.layers.7.units=3"]),
    Case("set-without-value", ["expected KEY=VALUE"], args=["--set", "training.epochs"]),
    Case("set-wrong-type", ["training.epochs", "valid integer"], args=["--set", "training.epochs=many"]),
    Case("name-with-slash", ["run.name"], args=["--name", "a/b"]),
    Case("runs-dir-is-a-file", ["runs folder", "cannot create it"], args=["--runs-dir", "{tmp}/file.txt"]),
    Case("no-config", ["give exactly one of CONFIG"], args=[], base=""),
    Case("config-and-resume", ["give exactly one of CONFIG", "--resume"], args=["--resume", "{tmp}"]),
    Case("resume-not-a-run", ["not an nnrun run directory"], args=["--resume", "{tmp}"], base=""),
    Case("resume-missing", ["run directory", "not found"], args=["--resume", "{tmp}/nope"], base=""),
    Case("check-unknown-layer", ["did you mean 'Dense'"], command="check", mutate=set_layer(0, type="dense")),
    Case("check-bad-set", ["did you mean 'epochs'"], command="check", args=["--set", "training.epoch=1"]),
]


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
    if case.command == "train" and "--runs-dir" not in args and "--resume" not in args:
        args += ["--runs-dir", str(runs)]

    result = runner.invoke(app, args)

    assert result.exit_code == case.code, result.output
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: "), result.stderr
    for text in case.expected:
        assert text in error, f"{text!r} not in {error!r}"
    assert "Traceback" not in result.output
    completed = [p for p in runs.rglob("run.json") if json.loads(p.read_text()).get("status") == "completed"]
    assert not completed, completed


def test_the_catalogue_is_large_enough():
    assert len({c.id for c in CASES}) >= 30
