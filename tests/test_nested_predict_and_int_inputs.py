"""Two things a subclassed (Keras-form) model or layer does as in Keras, checked against Keras
itself from the same weights:

- its call may return a dict, or a tuple or list holding dicts, at any depth (keras.io's CaiT
  returns `(logits, self_attention, class_attention)`, the last two dicts): predict and
  predict_on_batch give that structure back (tuples as tuples, lists as lists), each leaf's
  batches concatenated, and fit takes a loss per key of a dict it returns;
- integer arrays inside a list input ([features, edge indices], keras.io's GAT) reach its
  call as integers, in the trace that builds it (an eager call, fit) and in training.
"""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(10, 4)).astype("float32")


def _heads(lib, kind):
    """A subclassed model returning two Dense heads in the structure `kind`."""
    class Heads(lib.Model):
        def __init__(self):
            super().__init__()
            self.first = lib.layers.Dense(3)
            self.second = lib.layers.Dense(2)

        def call(self, x):
            y, z = self.first(x), self.second(x)
            if kind == "dict":
                return {"b": y, "a": z}
            if kind == "cait":   # (logits, dict, dict)
                return y, {"att": y * 2.0, "c": z}, {"x": z}
            if kind == "list":
                return [y, z]
            if kind == "nested":
                return [y, (z, [y])]
            if kind == "list_of_one":
                return [y]
            return y, lib.ops.argmax(y, axis=-1)   # "integer": a float and an int output

    return Heads()


def _same_weights(kind):
    ours, theirs = _heads(kilnet, kind), _heads(keras, kind)
    ours(X[:2])
    theirs(X[:2])
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def _structure(tree):
    """The nesting, container types and each leaf's type, dtype and shape."""
    if isinstance(tree, (list, tuple)):
        return [type(tree).__name__, [_structure(item) for item in tree]]
    if isinstance(tree, dict):
        return {key: _structure(value) for key, value in tree.items()}
    return (type(tree).__name__, str(tree.dtype), tree.shape)


def _assert_same(ours, theirs):
    assert _structure(ours) == _structure(theirs)
    for a, b in zip(keras.tree.flatten(ours), keras.tree.flatten(theirs)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["dict", "cait", "list", "nested", "list_of_one", "integer"])
def test_predict_gives_the_structure_call_returns_as_keras(kind):
    ours, theirs = _same_weights(kind)
    # batch_size 4 over 10 samples: three batches, the last short, concatenated per leaf
    _assert_same(ours.predict(X, batch_size=4, verbose=0),
                 theirs.predict(X, batch_size=4, verbose=0))


@pytest.mark.parametrize("kind", ["dict", "cait", "nested"])
def test_predict_on_batch_gives_the_structure_call_returns_as_keras(kind):
    ours, theirs = _same_weights(kind)
    _assert_same(ours.predict_on_batch(X), theirs.predict_on_batch(X))


def test_cait_form_unpacks_as_in_the_keras_io_example():
    ours, _ = _same_weights("cait")
    logits, self_attention, class_attention = ours.predict(X, verbose=0)
    assert logits.shape == (10, 3)
    assert sorted(self_attention) == ["att", "c"] and list(class_attention) == ["x"]
    np.testing.assert_allclose(self_attention["att"], logits * 2.0, rtol=1e-6)


@pytest.mark.parametrize("loss", [{"a": "mse", "b": "mae"}, "mse", {"a": "mse"}])
def test_fit_takes_a_loss_per_key_of_the_dict_call_returns_as_keras(loss):
    y = {"a": RNG.normal(size=(10, 2)).astype("float32"),
         "b": RNG.normal(size=(10, 3)).astype("float32")}
    histories = []
    for lib, model in zip((kilnet, keras), _same_weights("dict")):
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss=loss)
        histories.append(model.fit(X, y, batch_size=5, epochs=3, shuffle=False,
                                   verbose=0).history)
    ours, theirs = histories
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, atol=1e-6)


# -- integer members of a list input ------------------------------------------------------------
FEATURES = RNG.normal(size=(6, 3)).astype("float32")
EDGES = np.array([[0, 1], [2, 3], [4, 5], [5, 0], [1, 2], [3, 4]], "int64")


def _gather(lib):
    """keras.io's GAT form: `node_states, edges = inputs`, then ops.take with the indices."""
    class GatherNeighbours(lib.layers.Layer):
        def build(self, input_shape):
            features_shape, _ = input_shape
            self.kernel = self.add_weight(shape=(features_shape[-1], 2),
                                          initializer="glorot_uniform", name="kernel")

        def call(self, inputs):
            node_states, edges = inputs
            projected = lib.ops.matmul(node_states, self.kernel)
            return lib.ops.take(projected, edges[:, 1], axis=0)

    return GatherNeighbours()


def _graph_model(lib):
    class Graph(lib.Model):
        def __init__(self):
            super().__init__()
            self.encode = lib.layers.Dense(3)
            self.gather = _gather(lib)
            self.out = lib.layers.Dense(1)

        def call(self, inputs):
            node_states, edges = inputs
            return self.out(self.gather([self.encode(node_states), edges]))

    return Graph()


def test_a_layer_called_eagerly_on_floats_and_integers_as_keras():
    ours, theirs = _gather(kilnet), _gather(keras)
    expected = theirs([FEATURES, EDGES])
    got = ours([FEATURES, EDGES])
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours([FEATURES, EDGES]), expected, rtol=1e-6)
    assert got.shape == expected.shape
    assert ours.build_dtype == ["float32", "int32"]


def test_a_model_on_floats_and_integers_fits_as_keras():
    y = RNG.normal(size=(6, 1)).astype("float32")
    ours, theirs = _graph_model(kilnet), _graph_model(keras)
    theirs([FEATURES, EDGES])
    ours([FEATURES, EDGES])
    ours.set_weights(theirs.get_weights())
    ours.compile(optimizer=kilnet.optimizers.SGD(0.05), loss="mse")
    theirs.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    # the whole graph is one sample batch: the edges index the nodes of the same batch
    ours_loss = ours.fit([FEATURES, EDGES], y, batch_size=6, epochs=4, shuffle=False,
                         verbose=0).history["loss"]
    theirs_loss = theirs.fit([FEATURES, EDGES], y, batch_size=6, epochs=4, shuffle=False,
                             verbose=0).history["loss"]
    np.testing.assert_allclose(ours_loss, theirs_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.predict([FEATURES, EDGES], batch_size=6, verbose=0),
                               theirs.predict([FEATURES, EDGES], batch_size=6, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_a_model_built_by_fit_on_floats_and_integers_fits_as_keras():
    """No call before fit: fit builds the model from the data, integers kept."""
    y = RNG.normal(size=(6, 1)).astype("float32")
    ours = _graph_model(kilnet)
    ours.compile(optimizer=kilnet.optimizers.SGD(0.05), loss="mse")
    losses = ours.fit([FEATURES, EDGES], y, batch_size=6, epochs=2, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses))
    assert [spec.dtype for spec in ours.input_specs] == ["float32", "int32"]


def test_a_functional_model_with_an_integer_input_in_a_list_as_keras():
    def build(lib):
        features = lib.Input((3,), batch_size=6)
        edges = lib.Input((2,), dtype="int32", batch_size=6)
        return lib.Model([features, edges], _gather(lib)([features, edges]))

    ours, theirs = build(kilnet), build(keras)
    ours.set_weights(theirs.get_weights())
    edges = EDGES.astype("int32")
    np.testing.assert_allclose(ours.predict([FEATURES, edges], batch_size=6, verbose=0),
                               theirs.predict([FEATURES, edges], batch_size=6, verbose=0),
                               rtol=1e-6)


def test_floats_only_are_traced_as_before():
    layer = _gather(kilnet)
    layer.build([(None, 3), (None, 2)])   # a build from shapes: float32, as Keras traces it
    assert layer.build_dtype is None
    model = _heads(kilnet, "list")
    model.predict(X, verbose=0)
    assert [spec.dtype for spec in model.input_specs] == ["float32"]
