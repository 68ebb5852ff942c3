"""Metrics with state (Precision, Recall, AUC): confusion counts summed over the epoch's real
samples inside the compiled programs, results as Keras computes them."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import metrics  # noqa: E402


def binary_data(n=50, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=n) > 0.3).astype(np.float32)
    return x, y


def detector(lib):
    inputs = lib.Input(shape=(5,))
    return lib.Model(inputs, lib.layers.Dense(1, activation="sigmoid")(inputs))


def compiled_pair(metric_list):
    ours, theirs = detector(kilnet), detector(keras)
    ours.compile(optimizer="sgd", loss="binary_crossentropy", metrics=metric_list(kilnet))
    ours.build(seed=0)
    theirs.compile(optimizer="sgd", loss="binary_crossentropy", metrics=metric_list(keras))
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize("batch_size", [50, 16])
def test_precision_recall_auc_match_keras_in_evaluate(batch_size):
    x, y = binary_data()

    def metric_list(lib):
        # explicit names: Keras numbers default metric names per process (precision_1, ...)
        return [lib.metrics.Precision(name="precision"), lib.metrics.Recall(name="recall"),
                lib.metrics.AUC(name="auc"),
                lib.metrics.AUC(curve="PR", name="pr_auc"),
                lib.metrics.Precision(thresholds=0.3, name="p30")]

    ours, theirs = compiled_pair(metric_list)
    got = ours.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    expected = theirs.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
    for name in ("precision", "recall", "auc", "pr_auc", "p30"):
        assert got[name] == pytest.approx(expected[name], rel=1e-5, abs=1e-7), name
    # By hand at threshold 0.5.
    predicted = ours.predict(x, verbose=0)[:, 0] > 0.5
    tp = np.sum(predicted & (y == 1))
    assert got["precision"] == pytest.approx(tp / predicted.sum(), rel=1e-6)
    assert got["recall"] == pytest.approx(tp / (y == 1).sum(), rel=1e-6)


def test_string_names_and_fit_logs():
    x, y = binary_data(n=40, seed=1)
    model = detector(kilnet)
    model.compile(optimizer="adam", loss="binary_crossentropy",
                  metrics=["accuracy", "precision", "recall", "auc"])
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_split=0.25)
    for name in ("precision", "recall", "auc", "val_auc"):
        values = history.history[name]
        assert len(values) == 3 and all(0.0 <= v <= 1.0 for v in values), name


def test_eager_interface_and_errors():
    m = metrics.AUC(num_thresholds=3)
    m.update_state(np.array([0, 1]), np.array([0.2, 0.9]))
    k = keras.metrics.AUC(num_thresholds=3)
    k.update_state(np.array([0, 1]), np.array([0.2, 0.9]))
    assert float(m.result()) == pytest.approx(float(k.result()), rel=1e-6)
    with pytest.raises(ValueError, match="curve must be 'ROC' or 'PR'"):
        metrics.AUC(curve="nope")
    with pytest.raises(ValueError, match="top_k"):
        metrics.Precision(top_k=0)  # top_k is supported now; 0 is refused
