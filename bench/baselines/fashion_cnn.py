"""Baseline for configs/fashion_cnn.yaml: a small Fashion-MNIST CNN, as the tutorials write it.

Scale by 1/255, reshape to 28x28x1, Conv2D(64, 2, same, relu),
MaxPooling2D(2), Flatten, Dense 10 softmax; Adam, 10 epochs, batch 32, the
last 10% of the training set for validation (``validation_split=0.1``).
"""

import time

import keras
from keras.layers import Conv2D, Dense, Flatten, MaxPooling2D

from common import epoch_timer, epochs, load_data, report, verbose

keras.utils.set_random_seed(42)

(x_train, y_train), (x_test, y_test) = load_data("fashion_mnist")

x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
x_train = x_train.reshape(x_train.shape[0], 28, 28, 1)
x_test = x_test.reshape(x_test.shape[0], 28, 28, 1)
y_train = keras.utils.to_categorical(y_train, 10)
y_test = keras.utils.to_categorical(y_test, 10)

model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    Conv2D(filters=64, kernel_size=2, padding="same", activation="relu"),
    MaxPooling2D(pool_size=2),
    Flatten(),
    Dense(10, activation="softmax"),
])
model.summary()
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

timer = epoch_timer()
start = time.perf_counter()
model.fit(x_train, y_train, batch_size=32, epochs=epochs(10), validation_split=0.1, callbacks=[timer], verbose=verbose())
train_seconds = time.perf_counter() - start

score = model.evaluate(x_test, y_test, verbose=0)
print("Test accuracy:", score[1])
report(score[1], train_seconds, timer, model)
