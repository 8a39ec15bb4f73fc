"""Baseline for configs/mnist_cnn.yaml: the Keras mnist_cnn example's network, as its script writes it.

Conv2D 32 (3x3, relu), Conv2D 64 (3x3, relu), MaxPooling2D 2, Dropout .25, Flatten,
Dense 128 relu, Dropout .5, Dense 10 softmax; Adam, 12 epochs, batch 128, the last 10%
of the training images for validation. ``BENCH_PRECISION=bfloat16`` runs it under
Keras's ``mixed_bfloat16`` policy with a float32 output layer, as nnrun's
``training.precision: bfloat16`` does; ``BENCH_VERBOSE`` sets verbose (common.verbose).
"""

import os
import time

import keras
from keras.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D

from common import epoch_timer, epochs, load_data, report, verbose

keras.utils.set_random_seed(42)
if os.environ.get("BENCH_PRECISION") == "bfloat16":
    keras.mixed_precision.set_global_policy("mixed_bfloat16")

(x_train, y_train), (x_test, y_test) = load_data("mnist")
x_train = (x_train / 255).astype("float32").reshape(-1, 28, 28, 1)
x_test = (x_test / 255).astype("float32").reshape(-1, 28, 28, 1)
y_train = keras.utils.to_categorical(y_train, 10)
y_test = keras.utils.to_categorical(y_test, 10)

model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    Conv2D(32, kernel_size=3, activation="relu"),
    Conv2D(64, kernel_size=3, activation="relu"),
    MaxPooling2D(pool_size=2),
    Dropout(0.25),
    Flatten(),
    Dense(128, activation="relu"),
    Dropout(0.5),
    Dense(10, activation="softmax", dtype="float32"),
])
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

timer = epoch_timer()
start = time.perf_counter()
model.fit(x_train, y_train, batch_size=128, epochs=epochs(12), validation_split=0.1, callbacks=[timer],
          verbose=verbose())
train_seconds = time.perf_counter() - start

score = model.evaluate(x_test, y_test, verbose=0)
print("Test accuracy:", score[1])
report(score[1], train_seconds, timer, model)
