"""Only models (and Pipeline) have Keras's `layers` attribute. Code that walks a model with
`hasattr(layer, "layers")` (keras.io's "Packaging Keras models for wide distribution", or a
recursive freeze) treats every other layer as a leaf, as with Keras; kilnet's own walks use
`Layer.sublayers`."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402


def _model(lib):
    inner = lib.Sequential([lib.Input((4,)), lib.layers.Dense(3, name="d")], name="inner")
    inputs = lib.Input((4,))
    tokens = lib.layers.Reshape((2, 2))(inputs)
    hidden = lib.layers.MultiHeadAttention(2, 2, name="attention")(tokens, tokens)
    outputs = lib.layers.Dense(1, name="head")(lib.layers.Flatten()(hidden))
    return lib.Model(inputs, [outputs, inner(inputs)])


def _leaves(layer, found):
    if hasattr(layer, "layers"):
        for sub in layer.layers:
            _leaves(sub, found)
    else:
        found.append(type(layer).__name__)
    return found


def test_a_walk_by_the_layers_attribute_finds_keras_leaves():
    assert _leaves(_model(kilnet), []) == _leaves(_model(keras), [])
    assert "MultiHeadAttention" in _leaves(_model(kilnet), [])
    assert not hasattr(kilnet.layers.Dense(2), "layers")
    assert hasattr(kilnet.layers.Pipeline([kilnet.layers.RandomFlip()]), "layers")


def test_a_recursive_freeze_by_the_layers_attribute_freezes_every_leaf():
    model = _model(kilnet)

    def freeze(layer):
        if hasattr(layer, "layers"):
            for sub in layer.layers:
                freeze(sub)
        else:
            layer.trainable = False

    freeze(model)
    assert model.trainable_weights == []
    model.compile(optimizer="sgd", loss="mse")
    before = [w.copy() for w in model.get_weights()]
    model.fit(np.ones((4, 4), "float32"), [np.ones((4, 1)), np.ones((4, 3))], verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
