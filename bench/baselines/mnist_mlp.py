"""Baseline for configs/mnist_mlp.yaml: the Keras MNIST MLP example (mnist_mlp.py), as written.

Dense 512-512-10 with Dropout 0.2, RMSprop, batch 128, 20 epochs, the test
set as validation data.
"""

import time

import keras
from keras.layers import Dense, Dropout
from keras.optimizers import RMSprop

from common import epoch_timer, epochs, load_data, report, verbose

keras.utils.set_random_seed(42)

batch_size = 128
num_classes = 10

(x_train, y_train), (x_test, y_test) = load_data("mnist")
x_train = x_train.reshape(60000, 784)
x_test = x_test.reshape(10000, 784)
x_train = x_train.astype("float32")
x_test = x_test.astype("float32")
x_train /= 255
x_test /= 255
print(x_train.shape[0], "train samples")
print(x_test.shape[0], "test samples")

y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

model = keras.Sequential()
model.add(keras.Input(shape=(784,)))
model.add(Dense(512, activation="relu"))
model.add(Dropout(0.2))
model.add(Dense(512, activation="relu"))
model.add(Dropout(0.2))
model.add(Dense(num_classes, activation="softmax"))
model.summary()

model.compile(loss="categorical_crossentropy", optimizer=RMSprop(), metrics=["accuracy"])

timer = epoch_timer()
start = time.perf_counter()
history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs(20), verbose=verbose(1),
                    validation_data=(x_test, y_test), callbacks=[timer])
train_seconds = time.perf_counter() - start
score = model.evaluate(x_test, y_test, verbose=0)
print("Test loss:", score[0])
print("Test accuracy:", score[1])
report(score[1], train_seconds, timer, model)
