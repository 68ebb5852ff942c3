"""A functional model whose outputs are nested (a list of each layer's (output, kernel)
pair, as keras.io's involution visualizer builds one): called and predicted, it gives them in
that structure, as Keras does, tuples as lists."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")


def _visualizer(lib):
    class Two(lib.layers.Layer):
        def call(self, x):
            return x * 2.0, x + 1.0

    inputs = lib.Input((3,))
    hidden, _ = Two(name="t1")(inputs)
    top, _ = Two(name="t2")(hidden)
    model = lib.Model(inputs, top)
    outputs = [model.get_layer(name).output for name in ("t1", "t2")]
    return lib.Model(model.input, outputs + [{"b": hidden, "a": top}])


def _structure(tree):
    if isinstance(tree, (list, tuple)):
        return [type(tree).__name__, [_structure(item) for item in tree]]
    if isinstance(tree, dict):
        return {key: _structure(value) for key, value in tree.items()}
    return "array"


@pytest.mark.parametrize("run", ["predict", "call", "predict_on_batch"])
def test_nested_outputs_keep_their_structure_as_keras(run):
    ours, theirs = _visualizer(kilnet), _visualizer(keras)
    results = []
    for model in (ours, theirs):
        if run == "predict":
            results.append(model.predict(X, verbose=0))
        elif run == "call":
            results.append(model(X))
        else:
            results.append(model.predict_on_batch(X))
    assert _structure(results[0]) == _structure(results[1])
    (first, second, named), (k_first, k_second, k_named) = results
    for a, b in zip(first + second + [named["a"], named["b"]],
                    k_first + k_second + [k_named["a"], k_named["b"]]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    (output, _), _, _ = results[0]
    np.testing.assert_allclose(np.asarray(output), X * 2.0, rtol=1e-6)
