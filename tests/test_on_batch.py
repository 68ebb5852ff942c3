"""train_on_batch / test_on_batch / predict_on_batch as Keras 3's: one step on one batch,
this batch's loss and metrics (a float, a list in Keras's order, or a dict), the same
numbers as Keras's from the same weights."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
Y = np.random.default_rng(1).integers(0, 2, size=(6, 1)).astype("float32")
W = np.array([1, 2, 1, 0, 1, 1], "float32")


def _model(lib, metrics):
    model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(4, activation="relu"),
                            lib.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=lib.optimizers.Adam(0.01), loss="binary_crossentropy",
                  metrics=metrics)
    return model


@pytest.mark.parametrize("metrics", [[], ["accuracy", "mae"]])
def test_the_same_steps_and_results_as_keras(metrics):
    mine, theirs = _model(kilnet, metrics), _model(keras, metrics)
    mine.build()
    mine.set_weights(theirs.get_weights())
    for step in range(3):
        weights = W if step == 1 else None
        got = mine.train_on_batch(X, Y, sample_weight=weights)
        want = theirs.train_on_batch(X, Y, sample_weight=weights)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        assert isinstance(got, float) == (not metrics)
    np.testing.assert_allclose(mine.test_on_batch(X, Y), theirs.test_on_batch(X, Y), rtol=1e-5)
    got = mine.train_on_batch(X, Y, return_dict=True)
    want = theirs.train_on_batch(X, Y, return_dict=True)
    assert sorted(got) == sorted(want)
    np.testing.assert_allclose([got[k] for k in sorted(got)], [want[k] for k in sorted(want)],
                               rtol=1e-5)
    np.testing.assert_allclose(mine.predict_on_batch(X[:2]), theirs.predict_on_batch(X[:2]),
                               rtol=1e-5)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_history_stays_the_last_fit_s():
    model = _model(kilnet, [])
    history = model.fit(X, Y, epochs=2, verbose=0)
    model.train_on_batch(X, Y)
    assert model.history is history and len(history.history["loss"]) == 2
    with pytest.raises(ValueError, match="batch of arrays"):
        model.train_on_batch(3.0, Y)
