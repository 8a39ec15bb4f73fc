"""Baseline for configs/fashion_wide.yaml: one hidden layer of 50 ReLU units and plain SGD.

Flatten by reshape, scale by 1/255, one-hot labels, sgd, 10 epochs,
batch 32, the last 10% of the training set for validation
(``validation_split=0.1``).
"""

import time

import keras
from keras.layers import Dense

from common import epoch_timer, epochs, load_data, report, verbose

keras.utils.set_random_seed(42)

(x_train, y_train), (x_test, y_test) = load_data("fashion_mnist")
class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

x_train = x_train.reshape(-1, 28 * 28).astype("float32") / 255
x_test = x_test.reshape(-1, 28 * 28).astype("float32") / 255
y_train = keras.utils.to_categorical(y_train, 10)
y_test = keras.utils.to_categorical(y_test, 10)

model = keras.Sequential([
    keras.Input(shape=(28 * 28,)),
    Dense(50, activation="relu"),
    Dense(10, activation="softmax"),
])
model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])

timer = epoch_timer()
start = time.perf_counter()
model.fit(x_train, y_train, epochs=epochs(10), batch_size=32, validation_split=0.1, callbacks=[timer], verbose=verbose())
train_seconds = time.perf_counter() - start

test_loss, test_acc = model.evaluate(x_test, y_test, verbose=verbose())
print("Test accuracy:", test_acc)
report(test_acc, train_seconds, timer, model)
