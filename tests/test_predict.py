"""nnrun predict: real test images written as PNG give the model's own predictions back; every input kind.

Bad inputs are in the catalogue, test_bad_inputs.py."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nnrun.cli import app
from nnrun.datasets import FASHION_CLASSES, idx_bytes, read_idx

runner = CliRunner()
DIABETES_CSV = Path(__file__).resolve().parent.parent / "nnrun" / "datasets" / "data" / "diabetes.csv"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def test_images(data_dir) -> tuple[np.ndarray, np.ndarray]:
    """The first eight Fashion-MNIST test images (uint8, 28x28) and their labels."""
    images = read_idx(data_dir / "fashion-mnist" / "t10k-images-idx3-ubyte.gz")[:8]
    labels = read_idx(data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz")[:8]
    return images.copy(), labels.astype(int)


@pytest.fixture(scope="module")
def own_predictions(fashion_run, test_images) -> np.ndarray:
    """The model's own class probabilities for the test images, through the saved preprocessing."""
    from nnrun.trained import load_trained

    trained = load_trained(fashion_run)
    x, _ = trained.pipeline.transform(test_images[0])
    return trained.model.predict(x, verbose=0)


def write_pngs(images: np.ndarray, folder: Path, *, invert: bool = False) -> list[Path]:
    from PIL import Image

    folder.mkdir(exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"test-{i}.png"
        Image.fromarray(255 - image if invert else image, mode="L").save(path)
        paths.append(path)
    return paths


def predict_csv(run: Path, *inputs: object, extra: tuple[str, ...] = ()) -> list[dict]:
    result = runner.invoke(app, ["predict", str(run), *map(str, inputs), "--output", "-", *extra])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))


def probabilities(rows: list[dict]) -> np.ndarray:
    return np.array([[float(r[name]) for name in FASHION_CLASSES] for r in rows])


def test_png_round_trip_gives_the_models_own_predictions(fashion_run, test_images, own_predictions, tmp_path):
    paths = write_pngs(test_images[0], tmp_path / "png")
    target = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(fashion_run), *map(str, paths), "--output", str(target), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    assert "top 3" in result.stderr and "test-0.png" in result.stderr and f"wrote 8 predictions to {target}" in result.stderr

    rows = list(csv.DictReader(target.open()))
    assert [r["input"] for r in rows] == [p.name for p in paths]
    expected = own_predictions.argmax(axis=1)
    assert [r["predicted"] for r in rows] == [FASHION_CLASSES[k] for k in expected]
    np.testing.assert_allclose(probabilities(rows), own_predictions, atol=1e-6)
    for row, probs in zip(rows, own_predictions):
        assert float(row["probability"]) == pytest.approx(probs.max(), abs=1e-6)
        top = [item.split(":")[0] for item in row["top_k"].split("; ")]
        assert top == [FASHION_CLASSES[k] for k in np.argsort(-probs)[:3]]


def test_npy_idx_and_csv_inputs_agree_with_the_images(fashion_run, test_images, own_predictions, tmp_path):
    images = test_images[0]
    np.save(tmp_path / "batch.npy", images)
    np.save(tmp_path / "flat.npy", images.reshape(8, 784).astype(np.float32))
    np.save(tmp_path / "single.npy", images[0])
    (tmp_path / "images-idx3-ubyte").write_bytes(idx_bytes(images))
    with open(tmp_path / "pixels.csv", "w", newline="") as handle:  # Kaggle layout: label first, then 784 pixels
        writer = csv.writer(handle)
        writer.writerow(["label", *(f"pixel{i}" for i in range(784))])
        writer.writerows([label, *image.reshape(-1)] for label, image in zip(test_images[1], images))

    for name, count in (("batch.npy", 8), ("flat.npy", 8), ("images-idx3-ubyte", 8), ("pixels.csv", 8), ("single.npy", 1)):
        rows = predict_csv(fashion_run, tmp_path / name)
        assert len(rows) == count, name
        np.testing.assert_allclose(probabilities(rows), own_predictions[:count], atol=1e-6, err_msg=name)
    names = [r["input"] for r in predict_csv(fashion_run, tmp_path / "batch.npy", tmp_path / "pixels.csv")]
    assert names[:2] == ["batch.npy[0]", "batch.npy[1]"] and names[8:10] == ["pixels.csv:2", "pixels.csv:3"]


def test_invert_and_resize_for_drawings(fashion_run, test_images, own_predictions, tmp_path):
    from PIL import Image

    inverted = write_pngs(test_images[0][:3], tmp_path / "inverted", invert=True)
    rows = predict_csv(fashion_run, *inverted, extra=("--invert",))
    np.testing.assert_allclose(probabilities(rows), own_predictions[:3], atol=1e-6)

    big = tmp_path / "big.jpg"
    Image.fromarray(np.kron(test_images[0][0], np.ones((4, 4), np.uint8))).convert("RGB").save(big, quality=95)
    (row,) = predict_csv(fashion_run, big)  # a 112x112 colour JPEG: grayscale, 28x28, then the model
    assert row["predicted"] in FASHION_CLASSES and 0 < float(row["probability"]) <= 1


def test_tabular_csv_with_or_without_the_label_and_by_column_name(diabetes_run, tmp_path):
    lines = DIABETES_CSV.read_text().splitlines()
    header, body = lines[0].split(","), [line.split(",") for line in lines[1:6]]
    (tmp_path / "with_label.csv").write_text("\n".join(lines[:6]) + "\n")
    (tmp_path / "no_header.csv").write_text("\n".join(",".join(r[:8]) for r in body) + "\n")
    (tmp_path / "no_header_with_label.csv").write_text("\n".join(",".join(r) for r in body) + "\n")
    order = [7, 0, 6, 1, 5, 2, 4, 3]  # the features shuffled, no label: matched by name
    (tmp_path / "shuffled.csv").write_text(
        "\n".join(",".join(row[i] for i in order) for row in [header, *body]) + "\n"
    )
    reference = predict_csv(diabetes_run, tmp_path / "with_label.csv")
    assert len(reference) == 5 and set(reference[0]) == {"input", "predicted", "probability", "top_k", "0", "1"}
    for name in ("no_header.csv", "no_header_with_label.csv", "shuffled.csv"):
        rows = predict_csv(diabetes_run, tmp_path / name)
        assert [(r["predicted"], r["probability"]) for r in rows] == [(r["predicted"], r["probability"]) for r in reference], name
    table = runner.invoke(app, ["predict", str(diabetes_run), str(tmp_path / "with_label.csv")])
    assert "with_label.csv:2" in table.stderr and "top" not in table.stderr  # no top-k for two classes


def test_class_names_that_do_not_fit_the_models_outputs_are_refused(fashion_run, tmp_path):
    import json
    import shutil

    from nnrun import rundir as rd
    from nnrun.errors import RunDirError
    from nnrun.trained import load_trained

    edited = Path(shutil.copytree(fashion_run, tmp_path / fashion_run.name))
    info = json.loads((edited / rd.RUN).read_text())
    info["signature"]["class_names"] = info["signature"]["class_names"][:9]  # 9 names for 10 outputs
    (edited / rd.RUN).write_text(json.dumps(info))
    with pytest.raises(RunDirError, match="signature.class_names has 9 names, but the model has 10 outputs"):
        load_trained(edited)


def test_scaled_pixels_get_a_warning_and_a_bad_top_k_an_error(fashion_run, test_images, tmp_path):
    np.save(tmp_path / "scaled.npy", test_images[0][:2] / 255.0)
    result = runner.invoke(app, ["predict", str(fashion_run), str(tmp_path / "scaled.npy")])
    assert result.exit_code == 0 and "values lie in [0, 1]" in result.stderr
    result = runner.invoke(app, ["predict", str(fashion_run), str(tmp_path / "scaled.npy"), "--top-k", "0"])
    assert result.exit_code == 2 and "--top-k must be at least 1, got 0" in result.stderr
