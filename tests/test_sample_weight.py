"""sample_weight and class_weight weigh the loss as Keras does (sum of weighted losses over the
batch's samples), through fit and evaluate; compared with Keras on the same weights."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.errors import InputError  # noqa: E402


def classifier(lib):
    inputs = lib.Input(shape=(4,))
    return lib.Model(inputs, lib.layers.Dense(3, activation="softmax")(inputs))


def data(n=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n)


def pair(seed=0):
    ours, theirs = classifier(kilnet), classifier(keras)
    ours.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.3),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ours.build(seed=seed)
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.3),
                   loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize("batch_size", [20, 6])
def test_evaluate_with_sample_weight_matches_keras(batch_size):
    x, y = data()
    w = np.random.default_rng(1).uniform(0, 3, len(x)).astype(np.float32)
    ours, theirs = pair()
    got = ours.evaluate(x, y, sample_weight=w, batch_size=batch_size, verbose=0,
                        return_dict=True)
    expected = theirs.evaluate(x, y, sample_weight=w, batch_size=batch_size, verbose=0,
                               return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert got["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-6)  # unweighted
    if batch_size == 20:  # by hand: sum(loss * w) / n
        probs = ours.predict(x, verbose=0)
        ce = -np.log(probs[np.arange(len(y)), y])
        assert got["loss"] == pytest.approx(np.sum(ce * w) / len(y), rel=1e-5)


def test_fit_with_class_weight_matches_keras_step_by_step():
    x, y = data(n=12, seed=2)
    ours, theirs = pair(seed=3)
    weights = {0: 1.0, 1: 4.0, 2: 0.5}
    h1 = ours.fit(x, y, class_weight=weights, batch_size=4, epochs=2, shuffle=False, verbose=0)
    h2 = theirs.fit(x, y, class_weight=weights, batch_size=4, epochs=2, shuffle=False,
                    verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-5)


def test_fit_with_sample_weight_zero_ignores_those_samples():
    x, y = data(n=16, seed=4)
    w = np.ones(16, np.float32)
    w[8:] = 0.0
    a, _ = pair(seed=5)
    b, _ = pair(seed=5)
    a.fit(x, y, sample_weight=w, batch_size=16, epochs=3, shuffle=False, verbose=0)
    # Without the zero-weight samples the gradient sums over 8 of 16 samples: half the step.
    b.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.15),
              loss="sparse_categorical_crossentropy")
    b.fit(x[:8], y[:8], batch_size=8, epochs=3, shuffle=False, verbose=0)
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)


def test_sample_weight_errors_are_clear():
    x, y = data()
    model, _ = pair()
    with pytest.raises(InputError, match=r"one weight per sample, shape \(20,\)"):
        model.fit(x, y, sample_weight=np.ones(7), verbose=0)
    with pytest.raises(InputError, match="not both"):
        model.fit(x, y, sample_weight=np.ones(20), class_weight={0: 1.0}, verbose=0)
    with pytest.raises(InputError, match="class_weight must be a dict"):
        model.fit(x, y, class_weight=[1.0, 2.0], verbose=0)
    with pytest.raises(InputError, match="NaN"):
        model.fit(x, y, sample_weight=np.full(20, np.nan), verbose=0)
