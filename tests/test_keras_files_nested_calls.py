"""A functional model nested in another and read among its outputs: Keras numbers a functional
model's calls from 1 in the outer model's input_layers / output_layers (its own construction
is call 0), a Sequential's from 0. kilnet reads and writes Keras's numbering, so the outputs
of each call come back in their places both ways."""

import keras
import numpy as np

import kilnet

X = np.linspace(-1, 1, 24, dtype="float32").reshape(6, 4)


def _nested(lib):
    """Outputs read a Sequential, and two calls of a functional model (the second on another
    input), and a layer after the first call of it."""
    i = lib.Input((4,))
    inner = lib.Model(i, lib.layers.Dense(4, name="inner_dense")(i), name="inner")
    seq = lib.Sequential([lib.Input((4,)), lib.layers.Dense(3, name="seq_dense")], name="seq")
    j = lib.Input((4,))
    first = inner(j)
    second = inner(lib.layers.Dense(4, name="pre")(j))
    return lib.Model(j, [seq(j), second, first, lib.layers.Dense(2, name="post")(first)])


def _same_weights(source, target):
    for layer in ("inner", "seq", "pre", "post"):
        target.get_layer(layer).set_weights(
            [np.asarray(w) for w in source.get_layer(layer).get_weights()])


def _assert_outputs_equal(ours, theirs):
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def test_keras_file_of_nested_functional_outputs_loads_with_each_call_in_its_place(tmp_path):
    theirs = _nested(keras)
    theirs.save(tmp_path / "nested.keras")
    ours = kilnet.models.load_model(tmp_path / "nested.keras")
    _assert_outputs_equal(ours.predict(X, verbose=0), theirs.predict(X, verbose=0))


def test_kilnet_file_of_nested_functional_outputs_opens_in_keras_as_written(tmp_path):
    ours = _nested(kilnet)
    reference = _nested(keras)
    _same_weights(reference, ours)
    ours.save(tmp_path / "nested.keras")
    theirs = keras.saving.load_model(tmp_path / "nested.keras")
    _assert_outputs_equal(ours.predict(X, verbose=0), theirs.predict(X, verbose=0))
    _assert_outputs_equal(theirs.predict(X, verbose=0), reference.predict(X, verbose=0))
    assert theirs.get_config()["output_layers"] == reference.get_config()["output_layers"]
