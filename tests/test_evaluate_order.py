"""evaluate() lists its results in Keras's order (losses, then the metrics: as compiled for
one output, sorted by name for several), and model.metrics_names names them in that order, so
the training guide's `dict(zip(model.metrics_names, result))` pairs each value with its name."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

RNG = np.random.default_rng(0)
X = RNG.random((64, 4), dtype=np.float32)
Y = [RNG.random((64, 1), dtype=np.float32), RNG.integers(0, 3, 64)]


def two_outputs(lib):
    inputs = lib.Input((4,))
    model = lib.Model(inputs, [lib.layers.Dense(1, name="score_output")(inputs),
                               lib.layers.Dense(3, activation="softmax",
                                                name="class_output")(inputs)])
    model.compile("adam", loss=["mse", "sparse_categorical_crossentropy"],
                  metrics=[["mape", "mae"], ["acc"]])
    return model


def one_output(lib):
    model = lib.Sequential([lib.Input((4,)), lib.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy",
                  metrics=["sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"])
    return model


def names_in_list_order(model, y):
    """Which log each entry of evaluate()'s list is, found by its value."""
    named = model.evaluate(X, y, verbose=0, return_dict=True)
    values = model.evaluate(X, y, verbose=0)
    return [next(k for k, v in named.items() if v == pytest.approx(float(e), abs=1e-7))
            for e in values]


@pytest.mark.parametrize("make, y", [(two_outputs, Y), (one_output, Y[1])],
                         ids=["two outputs", "one output"])
def test_evaluate_lists_results_in_keras_order(make, y):
    ours, theirs = make(kilnet), make(keras)
    theirs.set_weights(ours.get_weights())
    order = names_in_list_order(ours, y)
    assert order == names_in_list_order(theirs, y)
    assert ours.metrics_names == order
    result = dict(zip(ours.metrics_names, ours.evaluate(X, y, verbose=0)))
    assert result == pytest.approx(ours.evaluate(X, y, verbose=0, return_dict=True))


def logs_seen(lib, make, y):
    """The key order of everything fit, evaluate and train_on_batch hand back or to callbacks."""
    model = make(lib)
    seen = {}
    recorder = lib.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.setdefault("epoch", list(logs)),
        on_train_batch_end=lambda batch, logs: seen.setdefault("batch", list(logs)))
    history = model.fit(X, y, batch_size=16, epochs=1, validation_split=0.25, verbose=0,
                        callbacks=[recorder, lib.callbacks.ReduceLROnPlateau()])
    seen["history"] = list(history.history)
    seen["evaluate"] = list(model.evaluate(X, y, verbose=0, return_dict=True))
    seen["train_on_batch"] = list(model.train_on_batch(X[:8], [v[:8] for v in y] if isinstance(
        y, list) else y[:8], return_dict=True))
    return seen


@pytest.mark.parametrize("make, y", [(two_outputs, Y), (one_output, Y[1])],
                         ids=["two outputs", "one output"])
def test_logs_and_history_keys_come_in_keras_order(make, y):
    ours, theirs = logs_seen(kilnet, make, y), logs_seen(keras, make, y)
    assert ours == theirs
    assert ours["evaluate"] == sorted(ours["evaluate"]) and len(ours["evaluate"]) > 1
