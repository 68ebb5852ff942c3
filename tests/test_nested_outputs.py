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


def _structures(lib):
    """A functional model's outputs as given: a tuple a layer returns, a tuple of tensors,
    a dict of a tuple; and what a layer returning a dict or a nested list gives symbolically."""
    layers = lib.layers

    class Pair(layers.Layer):
        def call(self, a, b):
            return a + b, a - b

    class Named(layers.Layer):
        def call(self, x):
            return {"b": x + 1.0, "a": x * 2.0}

    class Nested(layers.Layer):
        def call(self, x):
            return [x + 1.0, (x * 2.0, x - 1.0)]

    a, b = lib.Input((3,)), lib.Input((3,))
    pair, named, nested = Pair(name="pair"), Named(name="named"), Nested(name="nested")
    models = [lib.Model([a, b], pair(a, b)),
              lib.Model(a, (layers.Dense(1, name="d1")(a), layers.Dense(2, name="d2")(a))),
              lib.Model(a, {"p": (a, named(a)["a"])}),
              lib.Model(a, nested(a))]
    return models, (pair, named, nested)


def test_outputs_keep_tuples_and_dicts_as_keras():
    (ours, our_layers), (theirs, their_layers) = _structures(kilnet), _structures(keras)
    for mine, keras_model in zip(ours, theirs):
        x = [X, X] if len(keras_model.inputs) == 2 else X
        keras_model.set_weights(mine.get_weights())
        for run in ("call", "predict"):
            got = mine(x) if run == "call" else mine.predict(x, verbose=0)
            want = keras_model(x) if run == "call" else keras_model.predict(x, verbose=0)
            assert _structure(got) == _structure(want), (keras_model.name, run)
            for g, w in zip(jax_leaves(got), jax_leaves(want)):
                np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6)
    # a layer's own .input / .output: the one tensor, or a flat list, as Keras's
    for mine, keras_layer in zip(our_layers, their_layers):
        for attribute in ("input", "output"):
            got, want = getattr(mine, attribute), getattr(keras_layer, attribute)
            assert type(got).__name__ == ("list" if isinstance(want, list) else "KerasTensor")
            assert len(got if isinstance(got, list) else [got]) == len(
                want if isinstance(want, list) else [want])


def jax_leaves(tree):
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in jax_leaves(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [leaf for item in tree for leaf in jax_leaves(item)]
    return [tree]
