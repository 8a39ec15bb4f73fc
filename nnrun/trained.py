"""A finished run, loaded once: its config, fitted preprocessing, model and input signature.

``evaluate``, ``predict`` and ``report`` read a run directory through ``load_trained``
and nothing else. The input signature (``run.json``'s ``signature``: dataset, raw
sample shape and dtype, feature and class names, the label column, the learning rate
used) lets a run describe its own inputs, so ``predict`` needs only the run directory:
not the training CSV, not ``NNRUN_DATA_DIR``. Runs written before the signature existed
get one rebuilt from what they have, or a clear message saying what is missing.

Example:
    >>> trained = load_trained("runs/20250101-120000-mnist_mlp")
    >>> trained.signature["class_names"][:3]
    ['0', '1', '2']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnrun import rundir as rd
from nnrun.errors import ConfigError, DataError, RunDirError, first_line


@dataclass
class TrainedRun:
    """What evaluation, prediction and reports need from a run directory."""

    run: rd.RunDir
    info: dict[str, Any]
    config: Any  # RunConfig
    pipeline: Any  # preprocessing.Pipeline
    model: Any  # None when loaded with model=False
    signature: dict[str, Any]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.signature["class_names"])

    @property
    def image(self) -> bool:
        return self.signature.get("kind") == "image"

    @property
    def regression(self) -> bool:
        return self.signature.get("task") == "regression"

    @property
    def typed(self) -> bool:
        """A typed CSV run: raw cells (strings too) go in, the ``encode_columns`` step makes numbers."""
        return bool(self.signature.get("columns"))

    def predict(self, x_raw: Any) -> Any:
        """Raw samples through the saved preprocessing and the model: class probabilities, or a regression's values.

        Raises:
            DataError: the samples do not fit the preprocessing.
        """
        from nnrun.metrics import class_probabilities
        from nnrun.training import EVAL_BATCH_SIZE

        x, _ = self.pipeline.transform(x_raw)
        outputs = self.model.predict(x, batch_size=EVAL_BATCH_SIZE, verbose=0)
        return outputs.reshape(-1, 1) if self.regression else class_probabilities(outputs)


def load_trained(path: str | Path, *, model: bool = True) -> TrainedRun:
    """Open a run directory and reload its config, fitted preprocessing, signature and (optionally) model.

    Raises:
        RunDirError: not a run directory, or a file missing or corrupt.
        DataError: an old run without a signature whose training data cannot be found.
    """
    from nnrun.config import validate_config
    from nnrun.preprocessing import Pipeline

    run = rd.open_run(path)
    info = run.read_run()
    try:
        config = validate_config(run.read_config(), source=str(run.file(rd.CONFIG)))
    except ConfigError as exc:
        raise RunDirError(f"{run.file(rd.CONFIG)} is not a valid config: {exc}") from None
    pipeline = Pipeline.from_dict(rd.read_json(run.file(rd.PREPROCESSING)))
    trained = TrainedRun(run, info, config, pipeline, None, {})
    trained.signature = read_signature(trained)
    if model:
        trained.model = load_model(run, info)
        names, outputs = len(trained.class_names), int(trained.model.output_shape[-1])
        if not trained.regression and outputs != names and not (outputs == 1 and names == 2):  # 1: a sigmoid's
            raise RunDirError(f"{run.file(rd.RUN)}: signature.class_names has {names} names, but the model has "
                              f"{outputs} outputs, so predictions could not be labelled (the file was edited?). Put it "
                              "back, or train the run again.")
    return trained


def load_model(run: rd.RunDir, info: dict[str, Any]) -> Any:
    """Load ``model.keras`` (compiled, as training saved it)."""
    path = run.file(rd.MODEL)
    if not path.is_file():
        status = rd.effective_status(info, run.path)
        hint = f" A checkpoint may be in {run.file(rd.LAST_CHECKPOINT)}." if run.file(rd.LAST_CHECKPOINT).is_file() else ""
        raise RunDirError(
            f"{run.path}: no {rd.MODEL} (run status: {status}); only a completed run has a final model.{hint}"
        )
    from nnrun.backbones import register
    from nnrun.tf import import_keras

    keras = import_keras()
    register()  # nnrun's own layers (a backbone's preprocess_input)
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # noqa: BLE001 (Keras raises ValueError, OSError, zipfile errors...)
        raise RunDirError(f"{path}: cannot load the model ({keras_load_error(exc)}). The file is damaged; train the run "
                          "again.") from None


def keras_load_error(exc: BaseException) -> str:
    """Why Keras could not load a ``.keras`` file that is there: it says "File not found" for one that is no zip."""
    why = first_line(exc)
    return "not a .keras zip archive (truncated, or another kind of file)" if why.startswith("File not found") else why


def read_signature(trained: TrainedRun) -> dict[str, Any]:
    """The run's input signature: ``run.json``'s, else rebuilt for a run written before it was recorded."""
    signature = trained.info.get("signature")
    if isinstance(signature, dict) and "sample_shape" in signature:  # a regression's class_names is [] on purpose
        return signature
    from nnrun.datasets import IMAGE_DATASETS, image_class_names

    name = trained.config.dataset.name
    if name in IMAGE_DATASETS:  # fixed by the dataset: nothing to read
        return {"dataset": name, "kind": "image", "sample_shape": [28, 28], "sample_dtype": "uint8",
                "feature_names": [], "class_names": list(image_class_names(name))}  # fmt: skip
    try:
        dataset = load_run_dataset(trained)
    except DataError as exc:
        raise DataError(
            f"{trained.run.path} was trained before nnrun recorded input signatures, so its feature and class "
            f"names come from its training CSV, but: {exc} Put the CSV back, or train the run again."
        ) from None
    return dataset.signature()


def load_run_dataset(trained: TrainedRun, only: str | None = None) -> Any:
    """The run's dataset as training saw it (same limit, validation and ``--smoke`` subset); ``only``: for an image
    folder, just that split is decoded."""
    from nnrun.datasets import load_dataset

    return load_dataset(_dataset_config(trained), smoke=bool(trained.info.get("smoke")),
                        loss=trained.config.training.loss, only=only)


def _dataset_config(trained: TrainedRun) -> Any:
    """The config's dataset section; a relative CSV or image-folder path is also tried from the training cwd."""
    cfg = trained.config.dataset
    cwd = trained.info.get("cwd")
    update = {}
    for key in ("path", "test_path") if cfg.name in ("csv", "images") else ():
        path = getattr(cfg, key, None)
        if path and cwd and not Path(path).is_absolute() and not Path(path).exists() and (Path(cwd) / path).exists():
            update[key] = str(Path(cwd) / path)
    return cfg.model_copy(update=update) if update else cfg
