"""Image folders: listing and splits, decoding, augmentation, keras.applications backbones, predict and evaluate.

The folders are generated in milliseconds (``conftest.make_image_folder``: three shapes, 10 pictures each, 12-24
pixels, PNG/JPEG/BMP/GIF). The trainings are real (TensorFlow, 1-2 epochs) and marked slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import make_image_folder, train_config

TRAINING_FIXTURES = {"shapes_run"}


def write_config(tmp: Path, folder: Path, layers: list, **dataset) -> Path:
    config = {
        "dataset": {"name": "images", "path": str(folder), "image_size": [16, 16], "validation": 0.2, **dataset},
        "preprocessing": [{"type": "scale", "factor": "1/255"}, "one_hot"],
        "model": {"layers": layers},
        "training": {"epochs": 2, "batch_size": 8, "verbose": 0},
    }
    path = tmp / "images.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


SMALL_CNN = [{"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "relu"}, {"type": "Flatten"},
             {"type": "Dense", "units": 3, "activation": "softmax"}]


# ------------------------------------------------------------ no training


def test_listing_names_classes_from_folders_and_ignores_other_files(tmp_path):
    from nnrun.datasets.images import list_image_folder

    folder = make_image_folder(tmp_path / "shapes", per_class=4)
    (folder / "circle" / "notes.txt").write_text("not an image")
    (folder / "square" / "nested").mkdir()
    (folder / "square" / "nested" / "deep.png").write_bytes((folder / "square" / "square_000.png").read_bytes())
    files = list_image_folder(str(folder))
    assert files.class_names == ("circle", "square", "triangle")
    assert files.counts() == {"circle": 4, "square": 5, "triangle": 4}
    assert files.ignored == 1
    assert all(Path(p).parent.name in ("circle", "square", "triangle", "nested") for p in files.paths)


def test_a_folders_fingerprint_is_of_the_images_the_loader_reads(tmp_path, monkeypatch):
    """What a sweep's workers compare (sweep.json's data): the images' paths and sizes, as the loader lists them."""
    import shutil

    from nnrun.datasets import fingerprint

    folder = make_image_folder(tmp_path / "a" / "shapes", per_class=4)
    dataset = {"name": "images", "path": "shapes"}
    monkeypatch.chdir(tmp_path / "a")
    first = fingerprint(dataset)
    assert first["files"] == 12 and first["path"] == str(folder.resolve())
    shutil.copytree(folder, tmp_path / "b" / "shapes")
    (tmp_path / "b" / "shapes" / "circle" / ".DS_Store").write_text("junk")  # not read by the loader: same data
    (tmp_path / "linked").mkdir()
    (tmp_path / "b" / "shapes" / "square").rename(tmp_path / "linked" / "square")
    (tmp_path / "b" / "shapes" / "square").symlink_to(tmp_path / "linked" / "square")  # followed, as the loader does
    monkeypatch.chdir(tmp_path / "b")
    assert fingerprint(dataset)["sha256"] == first["sha256"]
    (tmp_path / "b" / "shapes" / "square" / "square_000.png").unlink()
    assert fingerprint(dataset)["files"] == 11
    (tmp_path / "test").mkdir()
    make_image_folder(tmp_path / "test" / "shapes", per_class=2)
    with_test = fingerprint({**dataset, "test_path": str(tmp_path / "test" / "shapes")})
    assert with_test["files"] == 11 + 6  # test_path's images count too
    monkeypatch.setenv("NNRUN_DATA_DIR", str(tmp_path / "a"))
    monkeypatch.chdir(tmp_path)  # no shapes/ here: found under $NNRUN_DATA_DIR, as the loader finds it
    assert fingerprint(dataset) == first
    assert fingerprint({"name": "images", "path": "nowhere"}) is None and fingerprint({"name": "mnist"}) is None


def test_check_lists_the_folder_once(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nnrun.cli import app
    from nnrun.datasets import images

    folder = make_image_folder(tmp_path / "shapes", per_class=4)
    listings = []
    real = images.list_image_folder
    monkeypatch.setattr(images, "list_image_folder", lambda *a, **k: listings.append(a) or real(*a, **k))
    result = CliRunner().invoke(app, ["check", str(write_config(tmp_path, folder, SMALL_CNN))])
    assert result.exit_code == 0, result.output
    assert "data, model, loss, metrics and callbacks fit together" in result.stderr
    assert len(listings) == 1  # a photo folder of 100,000 files is walked once, not for the overview and again


def test_split_is_fixed_by_the_seed_and_keeps_every_class_in_test(tmp_path):
    from nnrun.config import validate_config
    from nnrun.datasets.images import load_image_files

    folder = make_image_folder(tmp_path / "shapes", per_class=10)

    def split(seed):
        config = validate_config({"dataset": {"name": "images", "path": str(folder), "split_seed": seed, "test": 0.3},
                                  "model": {"layers": ["Flatten"]}})
        return load_image_files(config.dataset)

    a, b, c = split(1), split(1), split(2)
    assert list(a[1]) == list(b[1]) and list(a[3]) == list(b[3])
    assert list(a[3]) != list(c[3])
    assert len(a[3]) == 9 and sorted(np.bincount(a[4])) == [3, 3, 3]  # stratified: 30% of each class
    assert not set(a[1]) & set(a[3])
    assert len(set(a[2][:10])) > 1  # shuffled: the first training files are not all one class


def test_decoding_resizes_converts_and_skips_bad_files(tmp_path):
    from PIL import Image

    from nnrun.datasets.images import decode_images

    good = tmp_path / "gray.png"
    Image.fromarray(np.full((40, 20), 200, dtype=np.uint8), mode="L").save(good)
    rgb = tmp_path / "rgb.jpg"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(rgb, quality=100)
    broken = tmp_path / "broken.png"
    broken.write_text("not a png")
    settings = {"image_size": [10, 10], "color_mode": "rgb", "crop_to_aspect_ratio": False, "interpolation": "bilinear"}
    decoded = decode_images([str(good), str(broken), str(rgb)], settings)
    assert decoded.images.shape == (2, 10, 10, 3) and decoded.images.dtype == np.uint8
    assert list(decoded.kept) == [0, 2]
    assert (decoded.images[0] == 200).all()  # grayscale converted to rgb, values kept
    assert decoded.images[1, ..., 0].min() > 240 and decoded.images[1, ..., 1].max() < 15
    assert decoded.skipped == [f"{broken}: not a decodable image (Unknown image file format. One of JPEG, JPEG XL, "
                               "PNG, GIF, BMP, WebP required)"]
    assert any("1 grayscale image(s) converted to rgb" in n for n in decoded.notes)


def test_one_split_is_decoded_alone_for_evaluate_report_and_export_checks(tmp_path):
    from nnrun.config import load_config
    from nnrun.datasets import load_dataset

    folder = make_image_folder(tmp_path / "shapes", per_class=10)
    config = load_config(write_config(tmp_path, folder, SMALL_CNN)).dataset
    full, test, validation = load_dataset(config), load_dataset(config, only="test"), load_dataset(config, only="validation")
    assert np.array_equal(test.x_test, full.x_test) and np.array_equal(test.y_test, full.y_test)
    assert np.array_equal(validation.x_val, full.x_val) and np.array_equal(validation.y_val, full.y_val)
    assert len(test.x_train) == len(test.x_val) == len(validation.x_train) == len(validation.x_test) == 0
    assert test.x_train.shape[1:] == full.x_train.shape[1:] and test.x_train.dtype == np.uint8
    assert f"decoded {len(full.x_test)} images" in " ".join(test.notes)  # not the training images


def test_offline_imagenet_weights_error_names_the_cache_path(tmp_path, monkeypatch):
    from nnrun.errors import ConfigError
    from nnrun.models import build_model

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    with pytest.raises(ConfigError) as info:
        build_model([{"type": "MobileNetV2", "weights": "imagenet", "alpha": 0.35, "include_top": False}], (96, 96, 3))
    message = str(info.value)
    assert message.startswith("model.layers[0] (MobileNetV2, weights: imagenet): "
                              "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5 is not in the Keras "
                              f"cache {tmp_path / 'keras-home' / 'models'}/ and nnrun does not download")
    assert "https://storage.googleapis.com/" in message and "\n" not in message


# ------------------------------------------------------------ real training


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("shapes")
    folder = make_image_folder(tmp / "shapes", per_class=10)
    layers = [{"type": "RandomFlip", "mode": "horizontal"}, {"type": "RandomRotation", "factor": 0.1}, *SMALL_CNN]
    config = write_config(tmp, folder, layers)
    return train_config(config, tmp / "runs").run_dir


@pytest.mark.slow
def test_a_run_records_the_image_signature_and_predicts_files_and_folders(shapes_run, tmp_path):
    from PIL import Image

    from nnrun.predict import predict_run

    signature = json.loads((shapes_run / "run.json").read_text())["signature"]
    assert signature["class_names"] == ["circle", "square", "triangle"]
    assert (signature["image_size"], signature["color_mode"], signature["sample_shape"]) == ([16, 16], "rgb", [16, 16, 3])
    big = tmp_path / "big.webp.png"
    Image.new("RGB", (300, 120), (0, 0, 255)).save(big)
    folder = make_image_folder(tmp_path / "new", per_class=2, sizes=(40, 80))
    first = predict_run(shapes_run, [big, folder])
    second = predict_run(shapes_run, [big, folder])
    assert len(first.names) == 7 and first.names[0] == str(big)
    assert np.array_equal(first.probabilities, second.probabilities)  # augmentation is off at predict


@pytest.mark.slow
def test_augmentation_changes_training_batches_only(shapes_run):
    from nnrun.trained import load_trained

    model = load_trained(shapes_run).model
    flip, rotate = model.layers[0], model.layers[1]
    assert type(flip).__name__ == "RandomFlip" and type(rotate).__name__ == "RandomRotation"
    batch = np.random.RandomState(0).uniform(0, 1, (8, 16, 16, 3)).astype("float32")
    trained_batch = np.asarray(rotate(flip(batch, training=True), training=True))
    assert not np.allclose(trained_batch, batch)
    assert np.allclose(np.asarray(rotate(flip(batch, training=False), training=False)), batch)
    assert np.array_equal(model.predict(batch, verbose=0), model.predict(batch, verbose=0))


@pytest.mark.slow
def test_evaluate_names_the_folders_and_draws_the_misclassified(shapes_run):
    from nnrun.evaluation import evaluate_run, write_evaluation

    evaluation = evaluate_run(shapes_run)
    written = {p.name for p in write_evaluation(evaluation)}
    assert evaluation.result["class_names"] == ["circle", "square", "triangle"]
    assert (shapes_run / "confusion_matrix.csv").read_text().splitlines()[0] == "true\\predicted,circle,square,triangle"
    assert evaluation.result["samples"] == 6
    if evaluation.result["misclassified"]["count"]:
        assert "misclassified.png" in written


@pytest.mark.slow
def test_report_shows_sample_images_with_predictions(shapes_run):
    from nnrun.report import build_run_report

    page = build_run_report(shapes_run, evaluate=False)
    assert 'alt="sample test images"' in page and "not image data" not in page


@pytest.mark.slow
@pytest.mark.parametrize("fmt, name", [("keras", "m.keras"), ("saved_model", "m"), ("onnx", "m.onnx"), ("litert", "m.tflite")])
def test_a_model_with_augmentation_layers_exports_them_switched_off(shapes_run, fmt, name, tmp_path):
    """RandomFlip and RandomRotation act only in training: the export answers as nnrun predict (its check says so)."""
    from typer.testing import CliRunner

    from nnrun.cli import app

    result = CliRunner().invoke(app, ["export", str(shapes_run), "-f", fmt, "-o", str(tmp_path / name)])
    assert result.exit_code == 0, result.output  # was: differs from nnrun predict by 0.05; onnx: no random ops
    assert "matches nnrun predict on" in result.output


@pytest.mark.slow
def test_a_keras_applications_backbone_trains_and_reloads(tmp_path):
    """weights: null trains one epoch; a weights file adds the family's preprocess_input, and the run reloads."""
    from nnrun.predict import predict_run
    from nnrun.tf import import_keras

    folder = make_image_folder(tmp_path / "shapes", per_class=6, sizes=(20, 40))
    backbone = {"type": "MobileNetV2", "alpha": 0.35, "include_top": False}
    head = [{"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 3, "activation": "softmax"}]
    config = write_config(tmp_path, folder, [{**backbone, "weights": None}, *head], image_size=[32, 32])
    result = train_config(config, tmp_path / "runs", ["training.epochs=1"])
    assert result.status == "completed" and result.metrics["epochs_run"] == 1
    assert "mobilenetv2" in (result.run_dir / "summary.txt").read_text().lower()

    weights = tmp_path / "mobilenet.weights.h5"
    keras = import_keras()
    keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None).save_weights(weights)
    config = write_config(tmp_path, folder, [{**backbone, "weights": str(weights), "trainable": False}, *head],
                          image_size=[32, 32])
    frozen = train_config(config, tmp_path / "runs2", ["training.epochs=1"])
    summary = (frozen.run_dir / "summary.txt").read_text()
    assert "mobilenetv2_preprocess" in summary and "BackbonePreprocess" in summary
    assert "Trainable params: 3,843" in summary  # trainable: false leaves the head only, 1280 * 3 + 3
    assert len(predict_run(frozen.run_dir, [folder / "circle"]).names) == 6
