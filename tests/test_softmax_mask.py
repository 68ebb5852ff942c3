"""Softmax's `mask` argument, as Keras's: masked positions take no share of the softmax and
are 0 in its output (a wholly masked axis all zeros), a float mask counts where > 0.5, and a
mask that does not broadcast to the inputs is refused."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.random.default_rng(0).normal(size=(2, 2, 3, 3)).astype("float32")
MASK = np.array([[[[1, 1, 0]]], [[[0, 0, 0]]]], bool)


@pytest.mark.parametrize("axis", [-1, -2, [-2, -1]])
@pytest.mark.parametrize("mask", [MASK, MASK.astype("float32") * 0.9,
                                  np.ones((3, 3), bool), None])
def test_masked_softmax_as_keras(axis, mask):
    ours = np.asarray(kilnet.layers.Softmax(axis=axis)(X, mask=mask))
    theirs = np.asarray(keras.layers.Softmax(axis=axis)(X, mask=mask))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    if mask is not None:
        assert np.all(ours[np.broadcast_to(np.asarray(mask) <= 0.5, X.shape)] == 0)


def test_a_mask_given_in_a_graph_as_keras():
    outputs = []
    for lib in (kilnet, keras):
        scores, keep = lib.Input((3, 3)), lib.Input((1, 3), dtype="bool")
        model = lib.Model([scores, keep], lib.layers.Softmax()(scores, mask=keep))
        outputs.append(model.predict([X[:, 0], MASK[:, 0]], verbose=0))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6, atol=1e-7)


def test_a_mask_that_does_not_broadcast_is_refused_as_keras():
    bad = np.ones((2, 2), bool)
    with pytest.raises(ValueError):
        keras.layers.Softmax()(X, mask=bad)
    with pytest.raises(ValueError, match="mask.shape=\\(2, 2\\)"):
        kilnet.layers.Softmax()(X, mask=bad)
