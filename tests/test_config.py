"""Config validation and --set overrides: no TensorFlow needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nnrun.config import RunConfig, apply_override, load_config, parse_override
from nnrun.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def base() -> dict:
    return yaml.safe_load((ROOT / "configs" / "mnist_mlp.yaml").read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert isinstance(config, RunConfig)
    assert config.run.name == path.stem
    assert config.model.layers


def test_defaults_are_filled_in(tmp_path):
    config = load_config(write(tmp_path, {"dataset": {"name": "diabetes"}, "model": {"layers": [{"type": "Dense", "units": 1}]}}))
    resolved = config.to_dict()
    assert resolved["training"]["epochs"] == 10
    assert resolved["training"]["batch_size"] == 32
    assert resolved["training"]["optimizer"] == {"type": "adam", "learning_rate": None}
    assert resolved["dataset"]["test_split"] == 0.25 and resolved["dataset"]["split_seed"] == 87
    assert resolved["run"] == {"name": "config", "seed": 42, "runs_dir": "runs"}
    # The resolved config validates again to itself (what the run directory stores is loadable).
    assert RunConfig.model_validate(resolved).to_dict() == resolved


def test_scale_accepts_fractions():
    config = load_config(ROOT / "configs" / "mnist_mlp.yaml")
    assert config.preprocessing[1].factor == pytest.approx(1 / 255)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d["training"].update(epocs=3), "unknown key 'epocs' in training; did you mean 'epochs'?"),
        (lambda d: d["training"].update(epochs=0), "training.epochs: input should be greater than or equal to 1"),
        (lambda d: d["dataset"].update(name="mnst"), "did you mean 'mnist'?"),
        (lambda d: d["dataset"].update(validation=1.5), "dataset.validation"),
        (lambda d: d["model"]["layers"][1].update(rate="x"), None),  # layer kwargs are checked by Keras later
        (lambda d: d.update(modle={}), "unknown key 'modle' in the top level; did you mean 'model'?"),
        (lambda d: d["preprocessing"].append("flaten"), "preprocessing[3].type must be one of"),
        (lambda d: d["preprocessing"].append({"type": "scale"}), "preprocessing[3].factor is required"),
        (lambda d: d["training"].update(checkpoint="sometimes"), "training.checkpoint"),
        (lambda d: d.pop("model"), "model is required but missing"),
        (lambda d: d["run"].update(name="a/b") if "run" in d else d.update(run={"name": "a/b"}), "run.name"),
    ],
)
def test_schema_errors_name_the_key(tmp_path, mutate, expected):
    data = base()
    mutate(data)
    path = write(tmp_path, data)
    if expected is None:
        load_config(path)
        return
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_error_gives_the_yaml_line(tmp_path):
    path = write(tmp_path, "dataset:\n  name: mnist\nmodel:\n  layers:\n    - {type: Dense, units: 10}\ntraining:\n  epochs: -1\n")
    with pytest.raises(ConfigError, match=r"config.yaml:7\)"):
        load_config(path)


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = write(tmp_path, "dataset: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_apply_and_echo():
    echo: list[str] = []
    config = load_config(
        ROOT / "configs" / "mnist_mlp.yaml",
        ["model.layers.0.units=64", "training.optimizer.learning_rate=0.01", "model.layers[-1].activation=relu",
         "dataset.validation=0.1", "training.metrics=[accuracy, auc]"],
        echo=echo,
    )
    assert config.model.layers[0].units == 64
    assert config.training.optimizer.learning_rate == 0.01
    assert config.model.layers[-1].activation == "relu"
    assert config.dataset.validation == 0.1
    assert config.training.metrics == ["accuracy", "auc"]
    assert echo[0] == "model.layers[0].units: 512 -> 64"
    assert len(echo) == 5


def test_set_adds_a_column_to_dataset_columns_as_the_csv_errors_suggest():
    """'Set dataset.columns.X: ignore' works with --set too: the mapping's keys are the CSV's column names."""
    config = load_config(ROOT / "configs" / "penguins_species.yaml", ["dataset.columns.island=ignore"])
    assert config.dataset.columns == {"year": "ignore", "island": "ignore"}
    with pytest.raises(ConfigError, match="dataset.columns.island: input should be 'numeric', 'categorical'"):
        load_config(ROOT / "configs" / "penguins_species.yaml", ["dataset.columns.island=bogus"])


def test_an_override_reaches_into_a_short_form_an_earlier_one_set():
    config = load_config(ROOT / "configs" / "mnist_mlp.yaml", [
        "training.optimizer=sgd", "training.optimizer.learning_rate=0.05",  # sgd stands for {type: sgd}
        "model.layers.1=Dropout", "model.layers.1.type=Dense", "training.callbacks=[EarlyStopping]",
        "training.callbacks.0.type=ReduceLROnPlateau"])  # fmt: skip
    assert (config.training.optimizer.type, config.training.optimizer.learning_rate) == ("sgd", 0.05)
    assert config.model.layers[1].type == "Dense" and config.training.callbacks[0].type == "ReduceLROnPlateau"
    # A key the schema gives such a mapping, though the mapping set whole leaves it out; and a step's required one.
    config = load_config(ROOT / "configs" / "mnist_mlp.yaml", ["training.optimizer={type: sgd, momentum: 0.9}",
                         "training.optimizer.learning_rate=0.05", "preprocessing=[scale]", "preprocessing.0.factor=0.5"])
    assert config.training.optimizer.model_dump() == {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9}
    assert config.preprocessing[0].factor == 0.5
    with pytest.raises(ConfigError, match=r"no key 'factr' in preprocessing\[0\]; did you mean 'factor'\? Valid keys: "
                       r"type, factor.$"):  # fmt: skip
        load_config(ROOT / "configs" / "mnist_mlp.yaml", ["preprocessing=[scale]", "preprocessing.0.factr=0.5"])
    with pytest.raises(ConfigError, match=r"did you mean 'learning_rate'\? Valid keys: type, learning_rate.$"):
        load_config(ROOT / "configs" / "mnist_mlp.yaml", ["training.optimizer.learning_rat=0.5"])  # no 'set it whole'


@pytest.mark.parametrize(
    "override, expected",
    [
        ("training.epocs=3", "no key 'epocs' in training; did you mean 'epochs'?"),
        ("model.layers.9.units=3", "model.layers is a list of 5 items"),
        ("training.epochs=abc", "training.epochs: input should be a valid integer"),
        ("training.epochs", "expected KEY=VALUE"),
        ("training.epochs.x=1", "is a value"),
        ("model.layers.0.unitz=3", "no key 'unitz' in model.layers[0]; did you mean 'units'?"),
        ("training.callbacks.0.patience=3", "training.callbacks is a list of 0 items; set the list whole instead, "
         "e.g. --set 'training.callbacks=[...]'."),  # not 'index 0..-1'
        ("run.seed=-1", "run.seed: input should be greater than or equal to 0, got -1"),  # not NumPy's ValueError
        ("run.seed=5000000000", "run.seed: input should be less than or equal to 4294967295"),
    ],
)
def test_override_errors(override, expected):
    with pytest.raises(ConfigError) as err:
        load_config(ROOT / "configs" / "mnist_mlp.yaml", [override])
    assert expected in str(err.value)


def test_parse_override_reads_yaml_values():
    assert parse_override("a.b.0.c=64") == (["a", "b", 0, "c"], 64)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=hello") == (["a"], "hello")
    # YAML 1.2's numbers, which PyYAML's YAML 1.1 reads as text: a layer's free argument would get '1e-5'.
    assert [parse_override(f"a={v}")[1] for v in ("1e-5", "-2E+3", "5e-05", "1e5x", "e5")] == [1e-5, -2000.0, 5e-5, "1e5x", "e5"]
    data = {"a": {"b": [1, 2]}}
    assert apply_override(data, ["a", "b", 1], 5) == 2 and data == {"a": {"b": [1, 5]}}


def test_config_loading_does_not_import_tensorflow():
    code = (
        "import sys; from nnrun.config import load_config; "
        f"load_config({str(ROOT / 'configs' / 'fashion_cnn.yaml')!r}, ['training.epochs=2']); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
