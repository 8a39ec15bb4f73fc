"""Baseline for configs/diabetes_mlp.yaml: the classic "first neural network in Keras" tutorial.

Pima Indians diabetes, 8 features, Dense 12-8-1, Adam, 150 epochs, batch 1,
25% held out for testing. The tutorials split with scikit-learn's
``train_test_split(X, y, test_size=0.25, random_state=87)``; scikit-learn is
not installed here, so the same split is written out: that function draws
``np.random.RandomState(87).permutation(768)``, takes the first 192 indices
as test and the rest as train. nnrun's split is the same, so both sides see
identical arrays.
"""

import time

import keras
import numpy as np
from keras.layers import Dense

from common import data_dir, epoch_timer, epochs, report, verbose

keras.utils.set_random_seed(42)

dataset = np.loadtxt(data_dir() / "diabetes" / "diabetes.csv", delimiter=",", skiprows=1)
X = dataset[:, 0:8]
y = dataset[:, 8]

# train_test_split(X, y, test_size=0.25, random_state=87), written out (see above)
permutation = np.random.RandomState(87).permutation(len(X))
test, train = permutation[:192], permutation[192:]
X_train, X_test, y_train, y_test = X[train], X[test], y[train], y[test]

model = keras.Sequential()
model.add(keras.Input(shape=(8,)))
model.add(Dense(12, activation="relu"))
model.add(Dense(8, activation="relu"))
model.add(Dense(1, activation="sigmoid"))
model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])

timer = epoch_timer()
start = time.perf_counter()
model.fit(X_train, y_train, epochs=epochs(150), batch_size=1, callbacks=[timer], verbose=verbose())
train_seconds = time.perf_counter() - start

_, accuracy = model.evaluate(X_test, y_test, verbose=verbose())
print("Accuracy: %.2f" % (accuracy * 100))
report(accuracy, train_seconds, timer, model)
