"""`layer.build(input_shape)` on kilnet's own layers makes their weights, as Keras's does (the
shape with its batch axis first): the same weights, in the same order and shapes, as Keras's
layer built the same way, and a built layer keeps them when called."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

CASES = [
    (lambda L: L.Dense(2), (None, 3)),
    (lambda L: L.Conv2D(4, 3), (None, 8, 8, 1)),
    (lambda L: L.LSTM(3), (None, 5, 2)),
    (lambda L: L.GRU(3), (None, 5, 2)),
    (lambda L: L.BatchNormalization(), (None, 4)),
    (lambda L: L.LayerNormalization(), (None, 6, 4)),
    (lambda L: L.Embedding(10, 3), (None, 5)),
    (lambda L: L.Bidirectional(L.LSTM(3)), (None, 5, 2)),
    (lambda L: L.Add(), [(None, 3), (None, 3)]),
]


@pytest.mark.parametrize("make, shape", CASES,
                         ids=[type(make(kilnet.layers)).__name__ for make, _ in CASES])
def test_build_makes_keras_weights(make, shape):
    ours, theirs = make(kilnet.layers), make(keras.layers)
    ours.build(shape)
    theirs.build(shape)
    assert ours.built
    assert [(v.shape, v.trainable) for v in ours.weights] == [
        (tuple(v.shape), v.trainable) for v in theirs.weights]
    assert [v.name for v in ours.weights] == [v.name for v in theirs.weights]


def test_a_built_layer_keeps_its_weights_when_called():
    dense = kilnet.layers.Dense(2)
    dense.build((None, 3))
    dense.kernel.assign(np.arange(6, dtype=np.float32).reshape(3, 2))
    y = dense(np.ones((1, 3), np.float32))
    np.testing.assert_allclose(np.asarray(y), [[6.0, 9.0]])
    dense.build((None, 3))   # already built: nothing is redrawn
    np.testing.assert_allclose(dense.kernel.numpy()[2], [4.0, 5.0])
