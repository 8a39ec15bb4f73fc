"""Baseline for configs/penguins_species.yaml: the pandas "classify the Palmer penguins" tutorial.

344 penguins, the species (Adelie, Chinstrap, Gentoo) from the island, sex and
four measurements; ``year`` is dropped. The file is in the repo
(``configs/data/penguins.csv``), not in ``$NNRUN_DATA_DIR``; its missing cells
are the text ``NA``, which ``pd.read_csv`` reads as missing. The steps are the
tutorial's, in its order: ``train_test_split(test_size=0.25, random_state=87)``
over all rows, then, with the training rows' statistics only, the missing
numbers filled with the median and the missing text with the most frequent
value, the text columns one-hot (``pd.get_dummies``, the test columns aligned
to the training ones) and the four numeric columns standardized
(``StandardScaler``). Dense 16-3, Adam, 40 epochs, batch 16,
``validation_split=0.2``.
"""

import time
from pathlib import Path

import keras
import pandas as pd
from keras.layers import Dense
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from common import epoch_timer, epochs, report, verbose

keras.utils.set_random_seed(42)

CSV = Path(__file__).resolve().parents[2] / "configs" / "data" / "penguins.csv"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
TEXT = ["island", "sex"]

df = pd.read_csv(CSV).drop(columns=["year"])
classes = sorted(df["species"].unique())  # Adelie, Chinstrap, Gentoo -> 0, 1, 2
X = df.drop(columns=["species"])
y = df["species"].map({name: i for i, name in enumerate(classes)}).to_numpy()

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=87)
X_train, X_test = X_train.copy(), X_test.copy()

# Missing cells: the training split's median (numbers) or most frequent value (text).
for column in NUMERIC:
    median = X_train[column].median()
    X_train[column] = X_train[column].fillna(median)
    X_test[column] = X_test[column].fillna(median)
for column in TEXT:
    most_frequent = X_train[column].mode()[0]
    X_train[column] = X_train[column].fillna(most_frequent)
    X_test[column] = X_test[column].fillna(most_frequent)

X_train = pd.get_dummies(X_train, columns=TEXT, dtype="float32")
X_test = pd.get_dummies(X_test, columns=TEXT, dtype="float32").reindex(columns=X_train.columns, fill_value=0.0)

scaler = StandardScaler()
X_train[NUMERIC] = scaler.fit_transform(X_train[NUMERIC])
X_test[NUMERIC] = scaler.transform(X_test[NUMERIC])

X_train, X_test = X_train.to_numpy("float32"), X_test.to_numpy("float32")
y_train = keras.utils.to_categorical(y_train, len(classes))
y_test = keras.utils.to_categorical(y_test, len(classes))

model = keras.Sequential()
model.add(keras.Input(shape=(X_train.shape[1],)))
model.add(Dense(16, activation="relu"))
model.add(Dense(len(classes), activation="softmax"))
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

timer = epoch_timer()
start = time.perf_counter()
model.fit(X_train, y_train, epochs=epochs(40), batch_size=16, validation_split=0.2, callbacks=[timer], verbose=verbose())
train_seconds = time.perf_counter() - start

_, accuracy = model.evaluate(X_test, y_test, verbose=verbose())
print("Accuracy: %.2f" % (accuracy * 100))
report(accuracy, train_seconds, timer, model)
