"""Baseline for configs/mnist_dense512.yaml: Deep Learning with Python, chapter 2, as written.

Dense 512 relu + Dense 10 softmax, RMSprop, 5 epochs, batch 128, no
validation data.
"""

import time

import keras
from keras import layers

from common import epoch_timer, epochs, load_data, report, verbose

keras.utils.set_random_seed(42)

(train_images, train_labels), (test_images, test_labels) = load_data("mnist")

network = keras.Sequential([
    keras.Input(shape=(28 * 28,)),
    layers.Dense(512, activation="relu"),
    layers.Dense(10, activation="softmax"),
])
network.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])

train_images = train_images.reshape((60000, 28 * 28))
train_images = train_images.astype("float32") / 255
test_images = test_images.reshape((10000, 28 * 28))
test_images = test_images.astype("float32") / 255

train_labels = keras.utils.to_categorical(train_labels)
test_labels = keras.utils.to_categorical(test_labels)

timer = epoch_timer()
start = time.perf_counter()
network.fit(train_images, train_labels, epochs=epochs(5), batch_size=128, callbacks=[timer], verbose=verbose())
train_seconds = time.perf_counter() - start

test_loss, test_acc = network.evaluate(test_images, test_labels, verbose=verbose())
print("test_acc:", test_acc)
report(test_acc, train_seconds, timer, network)
