"""The run config's schema: one strict, frozen pydantic model per section.

Everything that can be checked from the text alone (keys, types, ranges,
choices) is checked here, so that a typo costs milliseconds; nothing here
imports TensorFlow. Names that only Keras knows (layer classes and their
arguments, optimizers, losses, callbacks) are checked by
``nnrun.keras_names`` before anything trains.
"""

from __future__ import annotations

import copy
import re
from fractions import Fraction
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SECTIONS = ("dataset", "preprocessing", "model", "training", "run")


def as_typed(value: Any) -> Any:
    """``"adam"`` -> ``{"type": "adam"}``: a bare string names a Keras object or a step; other values pass unchanged."""
    return {"type": value} if isinstance(value, str) else value


def expand_short_forms(data: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of raw config data with every bare-string layer, step, optimizer and callback as ``{type: ...}``.

    ``validate_config`` expands before validating so that error locations and
    received values refer to the same shape as pydantic's.
    """
    data = copy.deepcopy(data)
    if isinstance(data.get("preprocessing"), list):
        data["preprocessing"] = [as_typed(v) for v in data["preprocessing"]]
    model, training = data.get("model"), data.get("training")
    if isinstance(model, dict) and isinstance(model.get("layers"), list):
        model["layers"] = [as_typed(v) for v in model["layers"]]
    if isinstance(training, dict):
        if isinstance(training.get("callbacks"), list):
            training["callbacks"] = [as_typed(v) for v in training["callbacks"]]
        if "optimizer" in training:
            training["optimizer"] = as_typed(training["optimizer"])
    return data


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Named(BaseModel):
    """A Keras object named by ``type`` whose other keys are passed to its constructor."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


# ----------------------------------------------------------------- dataset


Validation = Annotated[float, Field(gt=0, lt=1)] | Literal["test", "none"]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # what NumPy and Keras take


class _DatasetBase(Strict):
    validation: Validation = Field(
        "none",
        description="FRACTION of train held out (the last part, as Keras's validation_split), "
        "'test' to validate on the test set, or 'none'.",
    )
    limit: Annotated[int, Field(ge=1)] | None = Field(None, description="keep the first N training samples")


ColumnType = Literal["numeric", "categorical", "binary", "ignore"]


class _TabularBase(_DatasetBase):
    label: str | int = Field(-1, description="label column, by name or index (negative counts from the end)")
    features: list[str | int] | None = Field(None, description="feature columns; default: all but the label")
    header: bool = True
    delimiter: str = ","
    test_split: Annotated[float, Field(gt=0, lt=1)] = 0.25
    split_seed: Seed = 87
    stratify: bool = False
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: regression when training.loss is a regression loss (mse, mae, huber, ...)"
    )
    columns: dict[str, ColumnType] = Field(
        {}, description="column name -> numeric | categorical | binary | ignore; the others are inferred"
    )
    missing: Literal["error", "drop", "impute"] = Field(
        "error", description="empty or NA cells: an error, drop the row, or impute (median / most frequent, from train)"
    )
    max_categories: Annotated[int, Field(ge=2)] = Field(
        1000, description="more distinct values than this in a categorical column is an error (an identifier?)"
    )
    label_scaling: Literal["none", "standardize"] = Field(
        "none", description="regression: train on the standardized label; the model's last layer turns it back"
    )


class DiabetesDataset(_TabularBase):
    """The Pima Indians diabetes CSV that ships inside nnrun: works with no network."""

    name: Literal["diabetes"]
    label: str | int = "Outcome"


class CsvDataset(_TabularBase):
    name: Literal["csv"]
    path: str


class ImageDataset(_DatasetBase):
    """MNIST or Fashion-MNIST from the four IDX files."""

    name: Literal["mnist", "fashion_mnist"]
    path: str | None = Field(None, description="folder with the four IDX files (.gz or raw)")


class ImageFolderDataset(_DatasetBase):
    """Your own images: ``path/<class>/*.jpg|jpeg|png|bmp|gif``, the class names from the sub-folders."""

    name: Literal["images"]
    path: str = Field(description="folder with one sub-folder of images per class; relative: from the current "
                      "folder, else under $NNRUN_DATA_DIR")
    image_size: Annotated[list[Annotated[int, Field(ge=1, le=4096)]], Field(min_length=2, max_length=2)] = Field(
        [128, 128], description="[height, width] every image is resized to"
    )
    color_mode: Literal["rgb", "grayscale"] = "rgb"
    crop_to_aspect_ratio: bool = Field(False, description="crop the centre to image_size's proportions before resizing")
    interpolation: Literal["bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5"] = "bilinear"
    test: Annotated[float, Field(gt=0, lt=1)] = Field(0.2, description="fraction held out by split_seed, "
                                                      "stratified per class (ignored with test_path)")
    test_path: str | None = Field(None, description="a folder of class folders to test on instead of a held-out fraction")
    split_seed: Seed = Field(87, description="shuffles the files before the test and validation splits")


# typing.Union, not A | B: before Python 3.14 a | of classes is types.UnionType, which load._unwrap does not walk.
DatasetConfig = Annotated[Union[DiabetesDataset, CsvDataset, ImageDataset, ImageFolderDataset], Field(discriminator="name")]  # noqa: UP007

# ------------------------------------------------------------ preprocessing


def _fraction(value: Any) -> Any:
    """Accept ``1/255`` as well as ``0.00392``."""
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*/\s*\d+(\.\d+)?\s*", value):
        num, den = value.split("/")
        return float(Fraction(num.strip()) / Fraction(den.strip()))
    return value


class FlattenStep(Strict):
    type: Literal["flatten"]


class ReshapeStep(Strict):
    type: Literal["reshape"]
    target_shape: list[Annotated[int, Field(ge=-1)]]


class ScaleStep(Strict):
    type: Literal["scale"]
    factor: float

    _parse = field_validator("factor", mode="before")(lambda cls, v: _fraction(v))


class StandardizeStep(Strict):
    type: Literal["standardize"]


class OneHotStep(Strict):
    type: Literal["one_hot"]
    num_classes: Annotated[int, Field(ge=2)] | None = None


class AddChannelAxisStep(Strict):
    type: Literal["add_channel_axis"]


class CastStep(Strict):
    type: Literal["cast"]
    dtype: Literal["float16", "float32", "float64", "int32", "int64", "uint8"] = "float32"


StepConfig = Annotated[
    Union[FlattenStep, ReshapeStep, ScaleStep, StandardizeStep, OneHotStep, AddChannelAxisStep, CastStep],  # noqa: UP007 (as above)
    Field(discriminator="type"),
]


DATASET_NAMES = ("diabetes", "csv", "mnist", "fashion_mnist", "images")
STEP_TYPES = ("flatten", "reshape", "scale", "standardize", "one_hot", "add_channel_axis", "cast")


# -------------------------------------------------------------------- model


class ModelConfig(Strict):
    layers: Annotated[list[Named], Field(min_length=1)]


# ----------------------------------------------------------------- training


class OptimizerConfig(Named):
    learning_rate: Annotated[float, Field(gt=0)] | None = Field(None, description="None: the optimizer's default")


class TrainingConfig(Strict):
    optimizer: OptimizerConfig = OptimizerConfig(type="adam")
    loss: str = "categorical_crossentropy"
    metrics: list[str] = ["accuracy"]
    epochs: Annotated[int, Field(ge=1)] = 10
    batch_size: Annotated[int, Field(ge=1)] = 32
    shuffle: bool = True
    callbacks: list[Named] = []
    checkpoint: Literal["best", "last", "none"] = Field(
        "last", description="which model the checkpoints/ folder keeps during training"
    )
    steps_per_execution: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    jit_compile: bool | Literal["auto"] = Field(
        "auto", description="XLA (Keras's jit_compile). 'auto': measured on this machine before a run of more than "
        "~20 s (a few steps each way, cached in ~/.cache/nnrun), and kept where faster; true / false force it"
    )
    verbose: Annotated[int, Field(ge=0, le=2)] = 1
    tensorboard: bool = Field(False, description="write TensorBoard logs into the run directory's tensorboard/ folder")
    precision: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="float32; bfloat16 (Keras's mixed_bfloat16, any device: fast where the CPU has AMX or "
        "AVX512-BF16, and on GPUs); float16 (mixed_float16, GPU only). The last layer stays float32"
    )
    mixed_precision: bool = Field(
        False, description="older spelling of precision: float16 (on CPU: a warning, and float32)"
    )


# ---------------------------------------------------------------------- run


class RunSection(Strict):
    name: str | None = Field(None, description="run name; default: the config file's stem")
    seed: Seed = 42
    runs_dir: str = "runs"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}", value):
            raise ValueError("must be letters, digits, '.', '_' or '-' (at most 81 characters, no '/')")
        return value


# ------------------------------------------------------------- distribution


class DistributionConfig(Strict):
    """How ``fit`` spreads over devices, through ``tf.distribute``. ``training.batch_size`` stays the global batch."""

    strategy: Literal["none", "mirrored", "multi_worker"] = Field(
        "none", description="none; mirrored (MirroredStrategy over local GPUs or `devices`); multi_worker (rejected: "
        "broken upstream with Keras 3, see nnrun.distribution)"
    )
    devices: Annotated[list[str], Field(min_length=1)] | None = Field(
        None, description="mirrored only: the devices, e.g. ['/gpu:0', '/gpu:1']; default: all local GPUs (else the CPU)"
    )


# -------------------------------------------------------------------- sweep


class SweepConfig(Strict):
    """``nnrun sweep``: config keys to vary, and how to search them; its flags set these keys. ``nnrun train`` ignores it."""

    grid: dict[str, Annotated[list[Any], Field(min_length=1)] | str] = Field(
        {}, description="dotted key -> list of values, or a range such as 'loguniform(1e-4, 1e-1)' (random and tpe)"
    )
    metric: str | None = Field(
        None, description="the compare column that ranks the trials; default val_accuracy, val_loss for a regression"
    )
    search: Literal["grid", "random", "tpe"] | None = Field(None, description="Optuna's sampler; default grid")
    trials: Annotated[int, Field(ge=1)] | None = Field(None, description="how many trials (default: the whole grid)")
    prune: Literal["none", "median", "hyperband"] = Field("none", description="stop poor trials early")
    repeats: Annotated[int, Field(ge=1)] = Field(1, description="train each trial at this many seeds")
    random: Annotated[int, Field(ge=1)] | None = Field(None, description="older spelling of search: random, trials: N")
    seed: Seed = Field(0, description="seed of the sampler")
    storage: str | None = Field(None, description="an SQLAlchemy URL for the study; default study.journal in the sweep folder")
    heartbeat: Annotated[float, Field(gt=0)] = Field(10.0, description="seconds between a worker's beats; 2x without one fails its trials")


class RunConfig(Strict):
    """The whole, resolved configuration of one run."""

    dataset: DatasetConfig
    preprocessing: list[StepConfig] = []
    model: ModelConfig
    training: TrainingConfig = TrainingConfig()
    run: RunSection = RunSection()
    distribution: DistributionConfig = DistributionConfig()
    sweep: SweepConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        return expand_short_forms(data) if isinstance(data, dict) else data

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data, in section order, defaults filled in."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)
