"""Baseline for configs/penguins_mass.yaml: the pandas "predict a penguin's body mass" regression tutorial.

The Palmer penguins file from the repo (``configs/data/penguins.csv``, not
``$NNRUN_DATA_DIR``), ``year`` dropped, then every row with a missing cell
dropped (``dropna``: 333 of 344 remain). ``train_test_split(test_size=0.25,
random_state=87)``; species, island and sex one-hot (``pd.get_dummies``, the
test columns aligned to the training ones); the three measurements
standardized with the training mean and std (``StandardScaler``). The label,
``body_mass_g``, is standardized with the training mean and std for training
(population std, as ``StandardScaler``), and the predictions are turned back
into grams. Dense 16-1, Adam, mse, 100 epochs, batch 16,
``validation_split=0.2``. The test figures, in grams: R² (scikit-learn's
``r2_score``), MAE and RMSE.
"""

import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras.layers import Dense
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from common import epoch_timer, epochs, report, verbose

keras.utils.set_random_seed(42)

CSV = Path(__file__).resolve().parents[2] / "configs" / "data" / "penguins.csv"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]
TEXT = ["species", "island", "sex"]

df = pd.read_csv(CSV).drop(columns=["year"]).dropna()
X = df.drop(columns=["body_mass_g"])
y = df["body_mass_g"].to_numpy("float64")

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=87)

X_train = pd.get_dummies(X_train, columns=TEXT, dtype="float32")
X_test = pd.get_dummies(X_test, columns=TEXT, dtype="float32").reindex(columns=X_train.columns, fill_value=0.0)

scaler = StandardScaler()
X_train[NUMERIC] = scaler.fit_transform(X_train[NUMERIC])
X_test[NUMERIC] = scaler.transform(X_test[NUMERIC])
X_train, X_test = X_train.to_numpy("float32"), X_test.to_numpy("float32")

# The label in training standard deviations; the predictions go back to grams below.
y_mean, y_std = y_train.mean(), y_train.std()
y_train_scaled = ((y_train - y_mean) / y_std).astype("float32")
y_test_scaled = ((y_test - y_mean) / y_std).astype("float32")

model = keras.Sequential()
model.add(keras.Input(shape=(X_train.shape[1],)))
model.add(Dense(16, activation="relu"))
model.add(Dense(1))
model.compile(loss="mse", optimizer="adam", metrics=["mae"])

timer = epoch_timer()
start = time.perf_counter()
model.fit(X_train, y_train_scaled, epochs=epochs(100), batch_size=16, validation_split=0.2, callbacks=[timer], verbose=verbose())
train_seconds = time.perf_counter() - start

model.evaluate(X_test, y_test_scaled, verbose=verbose())
predicted = model.predict(X_test).ravel() * y_std + y_mean
r2 = r2_score(y_test, predicted)
mae = np.mean(np.abs(y_test - predicted))
rmse = np.sqrt(np.mean((y_test - predicted) ** 2))
print("R²: %.4f  MAE: %.1f g  RMSE: %.1f g" % (r2, mae, rmse))
report(None, train_seconds, timer, model, test_r2=r2, test_mae=mae, test_rmse=rmse)
