"""The keras.io tutorial's way to train on a folder of images, with mnist_dense32's network.

As in "Image classification from scratch" (keras.io/examples/vision/image_classification_from_scratch):
``keras.utils.image_dataset_from_directory`` on the class folders, ``prefetch``, a ``Rescaling`` layer
in the model, ``fit``. The folder is ``data/mnist_png`` (``python scripts/make_images.py mnist``):
train/ for training, test/ for validation and the final evaluation, as configs/mnist_png.yaml does.

    python bench/baselines/images_folder.py data/mnist_png
"""

import sys
import time

import keras
import tensorflow as tf
from keras import layers

from common import epoch_timer, epochs, report

keras.utils.set_random_seed(42)
folder = sys.argv[1] if len(sys.argv) > 1 else "data/mnist_png"
settings = dict(image_size=(28, 28), color_mode="grayscale", batch_size=128, label_mode="categorical")
train_ds = keras.utils.image_dataset_from_directory(f"{folder}/train", seed=42, **settings)
test_ds = keras.utils.image_dataset_from_directory(f"{folder}/test", shuffle=False, **settings)
train_ds = train_ds.prefetch(tf.data.AUTOTUNE)
test_ds = test_ds.prefetch(tf.data.AUTOTUNE)

model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    layers.Rescaling(1.0 / 255),
    layers.Flatten(),
    layers.Dense(32, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
timer = epoch_timer()
start = time.perf_counter()
model.fit(train_ds, epochs=epochs(5), validation_data=test_ds, callbacks=[timer], verbose=0)
train_seconds = time.perf_counter() - start
_, accuracy = model.evaluate(test_ds, verbose=0)
report(accuracy, train_seconds, timer, model)
