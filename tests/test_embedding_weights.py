"""Embedding(weights=[matrix]) starts from the matrix, as Keras 3's (keras.io's masked
language model fixes sinusoidal position embeddings so; older tutorials load pretrained word
vectors so), trainable or frozen."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402

MATRIX = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
IDS = np.array([[1, 2, 3], [9, 0, 4]], "int32")


def model(ns, **options):
    inputs = ns.Input((3,), dtype="int32")
    embedded = ns.layers.Embedding(10, 4, weights=[MATRIX], name="embed", **options)(inputs)
    return ns.Model(inputs, ns.layers.Dense(1, name="head")(ns.layers.Flatten()(embedded)))


@pytest.mark.parametrize("trainable", [True, False])
def test_the_table_starts_as_the_matrix_and_trains_as_keras(trainable):
    ours, theirs = model(kilnet, trainable=trainable), model(keras, trainable=trainable)
    np.testing.assert_array_equal(ours.get_layer("embed").get_weights()[0], MATRIX)
    ours.get_layer("head").set_weights(theirs.get_layer("head").get_weights())
    np.testing.assert_allclose(ours.predict(IDS, verbose=0), theirs.predict(IDS, verbose=0),
                               rtol=1e-5)
    y = np.array([[1.0], [-1.0]], "float32")
    for m in (ours, theirs):
        m.compile(optimizer="sgd", loss="mse")
        m.fit(IDS, y, epochs=2, shuffle=False, verbose=0)
    ours_table = ours.get_layer("embed").get_weights()[0]
    np.testing.assert_allclose(ours_table, theirs.get_layer("embed").get_weights()[0],
                               rtol=1e-5, atol=1e-6)
    assert np.array_equal(ours_table, MATRIX) != trainable


def test_a_matrix_of_another_shape_is_refused_by_name():
    with pytest.raises(ValueError, match=r"weights must be one matrix of shape \(input_dim, "
                                         r"output_dim\) = \(10, 5\)"):
        kilnet.layers.Embedding(10, 5, weights=[MATRIX])
    layer = kilnet.layers.Embedding(10, 4, weights=MATRIX)   # the matrix alone, too
    np.testing.assert_array_equal(layer(IDS)[0, 0], MATRIX[1])
