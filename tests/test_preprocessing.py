"""Each preprocessing step, the pipeline's fit-on-train rule and its saved state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnrun.errors import DataError
from nnrun.preprocessing import (
    AddChannelAxis,
    Cast,
    Flatten,
    NotFittedError,
    OneHot,
    Pipeline,
    Reshape,
    Scale,
    Standardize,
)  # fmt: skip

IMAGES = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)


def test_flatten():
    assert Flatten().transform(IMAGES).shape == (2, 16)


def test_reshape_and_bad_reshape():
    assert Reshape([16]).transform(IMAGES).shape == (2, 16)
    assert Reshape([2, -1]).transform(IMAGES).shape == (2, 2, 8)
    with pytest.raises(DataError, match="cannot reshape samples of shape"):
        Reshape([5]).transform(IMAGES)


def test_scale():
    out = Scale(1 / 255).transform(np.array([[0, 255]], np.uint8))
    assert out.dtype == np.float32 and out.tolist() == [[0.0, 1.0]]


def test_scale_by_one_over_n_is_the_tutorials_division_bit_for_bit():
    pixels = np.arange(256, dtype=np.uint8)
    tutorial = pixels.astype("float32") / 255
    assert np.array_equal(Scale(1 / 255).transform(pixels), tutorial)
    # the control: multiplying by float32(1/255) differs in the last bit for many values
    assert (pixels.astype(np.float32) * np.float32(1 / 255) != tutorial).sum() > 100
    assert Scale(0.5).transform(np.array([3], np.uint8)).tolist() == [1.5]
    assert Scale(0.3).transform(np.array([10], np.uint8)).tolist() == [np.float32(10) * np.float32(0.3)]


def test_standardize_fits_on_train_only():
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    step = Standardize().fit(train)
    assert step.mean_.tolist() == [2.0, 5.0] and step.std_.tolist() == [1.0, 1.0]  # constant column: std 1
    assert step.transform(np.array([[4.0, 6.0]])).tolist() == [[2.0, 1.0]]


def test_standardize_before_fit_is_an_error():
    with pytest.raises(NotFittedError, match="must be fitted"):
        Standardize().transform(np.ones((2, 2)))


def test_one_hot():
    step = OneHot().fit(None, np.array([0, 2, 1]))
    assert step.num_classes_ == 3
    assert step.transform(np.array([2, 0])).tolist() == [[0, 0, 1], [1, 0, 0]]
    with pytest.raises(DataError, match="outside 0..2"):
        step.transform(np.array([3]))


def test_add_channel_axis_and_cast():
    assert AddChannelAxis().transform(IMAGES).shape == (2, 4, 4, 1)
    assert Cast("float16").transform(IMAGES).dtype == np.float16


def test_pipeline_fits_on_train_and_saves_state():
    specs = [{"type": "flatten"}, {"type": "standardize"}, {"type": "one_hot"}]
    rng = np.random.default_rng(0)
    x_train, y_train = rng.normal(3, 2, (50, 2, 2)), rng.integers(0, 4, 50)
    x_test, y_test = rng.normal(0, 1, (5, 2, 2)), rng.integers(0, 4, 5)
    pipe = Pipeline.from_config(specs)
    xt, yt = pipe.fit_transform(x_train, y_train)
    assert xt.shape == (50, 4) and yt.shape == (50, 4)
    assert np.allclose(xt.mean(axis=0), 0, atol=1e-6)  # standardized with the training mean
    state = json.loads(json.dumps(pipe.to_dict()))
    again = Pipeline.from_dict(state)
    a, _ = pipe.transform(x_test, y_test)
    b, _ = again.transform(x_test)  # features only, as prediction does
    assert np.array_equal(a, b)
    assert pipe.label_encoding == "one_hot"


def test_pipeline_transform_before_fit():
    with pytest.raises(NotFittedError):
        Pipeline.from_config(["flatten"]).transform(IMAGES)


def test_a_float_copy_of_images_that_would_not_fit_is_refused_before_it_is_made(monkeypatch):
    from nnrun.datasets import images

    x = np.zeros((1000, 32, 32, 3), np.uint8)  # 3 MB decoded; 12 MB as float32
    monkeypatch.setattr(images, "available_memory", lambda: 20 * 2**20)
    images._check_memory(len(x), 32 * 32 * 3)  # the decoded set fits
    pipeline = Pipeline([Scale(1 / 255)])
    with pytest.raises(DataError, match=r"preprocessing step scale: 1,000 images as float32 take .* GiB beside the "
                                        r"decoded ones, more than half of the .* available; lower dataset.image_size"):
        pipeline.fit_transform(x, np.zeros(1000))
    with pytest.raises(DataError, match="as float64"):
        Pipeline([Cast("float64")]).fit_transform(x, np.zeros(1000))
    monkeypatch.setattr(images, "available_memory", lambda: 30 * 2**20)
    assert pipeline.fit_transform(x, np.zeros(1000))[0].dtype == np.float32  # 12 MB is under half of 30
    monkeypatch.setattr(images, "available_memory", lambda: 2**20)
    scaled = Pipeline([Scale(1 / 255)]).fit_transform(np.ones((1000, 32, 32, 3), np.float32), np.zeros(1000))[0]
    assert scaled.dtype == np.float32 and scaled.max() == np.float32(1 / 255)  # floats already: no check of a copy
