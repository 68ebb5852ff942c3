"""class_weight on an imbalanced binary task lifts the minority class's recall as it does in
Keras: the same data, initial weights and batch order in both libraries, recall measured with
scikit-learn on each library's own predictions."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import recall_score  # noqa: E402

import kilnet  # noqa: E402


def imbalanced(n=600, positives=0.08, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positives).astype(np.float32)
    x = rng.normal(size=(n, 4)).astype(np.float32) + y[:, None] * 1.2  # overlapping classes
    return x, y


def logistic(lib):
    inputs = lib.Input(shape=(4,))
    return lib.Model(inputs, lib.layers.Dense(1, activation="sigmoid")(inputs))


def minority_recall(class_weight):
    x, y = imbalanced()
    ours, theirs = logistic(kilnet), logistic(keras)
    ours.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy")
    ours.build(seed=1)
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="binary_crossentropy")
    theirs.set_weights(ours.get_weights())
    for model in (ours, theirs):
        model.fit(x, y, batch_size=32, epochs=8, shuffle=False, verbose=0,
                  class_weight=class_weight)
    return [recall_score(y, (np.asarray(m.predict(x, verbose=0))[:, 0] > 0.5).astype(int))
            for m in (ours, theirs)]


def test_class_weight_lifts_minority_recall_as_keras():
    plain_ours, plain_keras = minority_recall(None)
    weighted_ours, weighted_keras = minority_recall({0: 1.0, 1: 11.5})
    assert weighted_ours > plain_ours + 0.2  # the lift is real
    assert abs(plain_ours - plain_keras) <= 0.02
    assert abs(weighted_ours - weighted_keras) <= 0.02
