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


def _functional(lib, batch_inputs=False):
    if batch_inputs:
        a, b = lib.Input(shape=(3,)), lib.Input(shape=(4,))
        return lib.Model([a, b], lib.layers.Dense(1)(lib.layers.concatenate([a, b])))
    inputs = lib.Input(shape=(28, 28, 1))
    return lib.Model(inputs, lib.layers.Dense(10)(lib.layers.Flatten()(inputs)))


def test_model_build_with_one_batch_of_data_as_keras():
    """Keras's distributed-training guide calls model.build(one_batch) on a functional model:
    built already, it stays as it is; a Sequential with an Input likewise."""
    batch = np.zeros((64, 28, 28, 1), "float32")
    for lib in (kilnet, keras):
        model = _functional(lib)
        before = [np.asarray(w) for w in model.get_weights()]
        model.build(batch)
        assert model.built and model.count_params() == 7850
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, np.asarray(b))
        two = _functional(lib, batch_inputs=True)
        two.build([np.zeros((2, 3), "float32"), np.zeros((2, 4), "float32")])
        assert two.built and two.count_params() == 8
        seq = lib.Sequential([lib.Input((28, 28, 1)), lib.layers.Flatten(),
                              lib.layers.Dense(10)])
        seq.build(batch)
        assert seq.built and seq.count_params() == 7850


def test_build_with_data_builds_from_its_sample_shape():
    """Where the input shape is not known yet, kilnet builds for the batch's sample shape (Keras
    marks such a Sequential built without weights)."""
    model = kilnet.Sequential([kilnet.layers.Flatten(), kilnet.layers.Dense(10)])
    model.build(np.zeros((64, 28, 28, 1), "float32"))
    assert model.count_params() == 7850
    with pytest.raises(ValueError, match=r"declared for inputs of shape \(28, 28, 1\)"):
        _functional(kilnet).build(np.zeros((64, 5), "float32"))


def test_a_declared_model_takes_a_shape_with_its_batch_size_as_keras():
    """Keras's build(input_shape) counts the batch axis ("Distributed training with JAX"
    builds with model.build((BATCH_SIZE, 28, 28, 1))): a model whose inputs are declared
    takes that form as Keras does, and keeps its weights; a shape that fits neither way is
    still refused."""
    for lib in (kilnet, keras):
        model = _functional(lib)
        before = [np.asarray(w) for w in model.get_weights()]
        model.build((32, 28, 28, 1))
        assert model.built and model.count_params() == 7850
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, np.asarray(b))
        _functional(lib, batch_inputs=True).build([(2, 3), (2, 4)])
    # (Keras's Sequential refuses a batch size there; kilnet's takes it as its functional
    # models do)
    seq = kilnet.Sequential([kilnet.Input((28, 28, 1)), kilnet.layers.Flatten(),
                             kilnet.layers.Dense(10)])
    seq.build((32, 28, 28, 1))
    assert seq.count_params() == 7850
    with pytest.raises(ValueError, match=r"declared for inputs of shape \(28, 28, 1\) but is "
                                         r"being built for \(32, 28, 28, 3\)"):
        _functional(kilnet).build((32, 28, 28, 3))


def test_the_transfer_learning_guides_trainable_api_cells_run_as_keras():
    """keras.io's "Transfer learning & fine-tuning" reads a layer's weights right after
    `Sequential([Input(...), layer1, layer2])`: Keras has them from that call. kilnet draws
    them there, the model keeps them when it builds, and freezing keeps them through fit."""
    rng = np.random.default_rng(0)
    x, y = rng.random((2, 3), dtype=np.float32), rng.random((2, 3), dtype=np.float32)
    counts = []
    for lib in (kilnet, keras):
        layer1 = lib.layers.Dense(3, activation="relu")
        layer2 = lib.layers.Dense(3, activation="sigmoid")
        model = lib.Sequential([lib.Input(shape=(3,)), layer1, layer2])
        layer1.trainable = False
        initial = layer1.get_weights()
        counts.append((len(initial), len(layer1.weights), len(layer1.trainable_weights),
                       len(layer1.non_trainable_weights), layer1.count_params()))
        if lib is kilnet:   # the model builds around layer1's weights, keeping them
            np.testing.assert_array_equal(model.get_weights()[0], initial[0])
            assert layer1.kernel is model.weights[0]
        layer2_before = layer2.get_weights()[0]
        model.compile(optimizer="adam", loss="mse")
        model.fit(x, y, verbose=0)
        final = layer1.get_weights()
        np.testing.assert_allclose(initial[0], final[0])
        np.testing.assert_allclose(initial[1], final[1])
        assert not np.allclose(layer2.get_weights()[0], layer2_before)   # the rest trained
    assert counts[0] == counts[1] == (2, 2, 0, 2, 12)


def _weights_of_graph_layers(lib):
    """A functional model of a Dense and a layer of yours, and their weight attributes read
    right after it was made, as Keras users read them."""
    class Scale(lib.layers.Layer):
        def build(self, input_shape):
            # probing its own attributes while building must not start another build
            assert not hasattr(self, "w") or self.w is not None
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.w

    inputs = lib.Input((3,))
    layer1, scale = lib.layers.Dense(4), Scale()
    hidden = layer1(inputs)
    outputs = scale(scale(hidden))   # a second symbolic call traces an unbuilt layer again
    model = lib.Model(inputs, outputs)
    read = [layer1.kernel, layer1.bias, scale.w]
    return model, read


def test_a_weight_attribute_of_a_graph_layer_is_there_right_away_as_keras():
    """Keras builds a layer at its symbolic call, so `layer1.kernel` (and a layer of yours's
    `self.w`) exists once the model is made; kilnet draws them on that first read, and the
    model keeps them when it builds."""
    ours, ours_read = _weights_of_graph_layers(kilnet)
    keras.utils.clear_session()   # Keras numbers unnamed weights per process ("variable_6")
    theirs, theirs_read = _weights_of_graph_layers(keras)
    assert [(tuple(v.shape), v.name) for v in ours_read] == [
        (tuple(v.shape), v.name) for v in theirs_read]
    model_weights = ours.weights
    assert all(any(v is w for w in model_weights) for v in ours_read)
    np.testing.assert_array_equal(ours.get_weights()[0], ours_read[0].numpy())
    with pytest.raises(AttributeError, match="has no attribute 'kernl'"):
        ours.layers[1].kernl


# keras.io's quantization guide: `layer = Dense(32); layer.build((10,))`. Keras's layers read
# their feature axis from the end of the shape given, whatever its rank.
RANK_1_CASES = [
    (lambda L: L.Dense(5), "float"),
    (lambda L: L.LayerNormalization(), "float"),
    (lambda L: L.RMSNormalization(), "float"),
    (lambda L: L.UnitNormalization(), "float"),
    (lambda L: L.Embedding(10, 3), "int"),
    (lambda L: L.Dropout(0.5), "float"),
    (lambda L: L.Activation("relu"), "float"),
    (lambda L: L.BatchNormalization(), None),      # Keras's then takes rank-1 inputs only
    (lambda L: L.GroupNormalization(groups=2), None),
    (lambda L: L.PReLU(), None),                   # Keras's alpha reads the shape batch first
]


def _both_built(make, shape):
    """kilnet's and Keras's layer from `make`, each built with `shape`: same weight shapes."""
    ours, theirs = make(kilnet.layers), make(keras.layers)
    ours.build(shape)
    theirs.build(shape)
    assert [v.shape for v in ours.weights] == [tuple(v.shape) for v in theirs.weights]
    return ours, theirs


def _one_batch(kind, rng):
    if kind == "int":
        return rng.integers(0, 10, (4, 10)).astype("int32")
    return rng.normal(size=(4, 10)).astype("float32")


@pytest.mark.parametrize("shape", [(10,), [10]], ids=["tuple", "list"])
@pytest.mark.parametrize("make, kind", RANK_1_CASES,
                         ids=[type(make(kilnet.layers)).__name__ for make, _ in RANK_1_CASES])
def test_a_rank_1_build_shape_makes_keras_weights_and_the_layer_takes_batches(make, kind,
                                                                                shape):
    ours, theirs = _both_built(make, shape)
    assert ours.built
    if kind is None:
        return
    ours.set_weights(theirs.get_weights())
    x = _one_batch(kind, np.random.default_rng(0))
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-6)


def test_a_normalization_built_with_a_rank_1_shape_adapts_to_batches():
    # Keras's makes the same weights but then refuses to adapt to (6, 10) (it compares the
    # batch size with 10); kilnet's adapts as Keras's built with (None, 10) does
    x = np.random.default_rng(1).normal(size=(6, 10)).astype("float32")
    ours, theirs = kilnet.layers.Normalization(), keras.layers.Normalization()
    ours.build((10,))
    theirs.build((None, 10))
    assert [v.shape for v in ours.weights] == [tuple(v.shape) for v in theirs.weights]
    ours.adapt(x)
    theirs.adapt(x)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-5)


def test_a_rank_1_build_shape_reaches_your_layers_sub_layers_as_keras():
    def block(lib):
        class Block(lib.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.inner = lib.layers.Dense(4, name="inner")

            def build(self, input_shape):
                self.w = self.add_weight(shape=(input_shape[-1], 3), name="w")

            def call(self, x):
                return self.inner(x @ self.w)
        return Block(name="block")

    x = np.random.default_rng(2).normal(size=(4, 10)).astype("float32")
    ours, theirs = block(kilnet), block(keras)
    ours.build((10,))
    theirs.build((10,))
    theirs(x)   # Keras builds the sub-layer at the first call, kilnet in build
    assert [v.shape for v in ours.weights] == [tuple(v.shape) for v in theirs.weights]
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), atol=1e-6)


def test_a_convolution_refuses_a_rank_1_build_shape_as_keras():
    with pytest.raises(ValueError):
        keras.layers.Conv1D(4, 3).build((10,))
    with pytest.raises(ValueError, match="Conv1D expects sequences"):
        kilnet.layers.Conv1D(4, 3).build((10,))


ONE_VALUE_PER_SAMPLE = [
    (lambda L: L.StringLookup(vocabulary=["a", "b"]), np.array(["a", "c", "b"])),
    (lambda L: L.IntegerLookup(vocabulary=[3, 5]), np.array([5, 3, 7])),
    (lambda L: L.CategoryEncoding(num_tokens=4, output_mode="one_hot"), np.array([0, 3, 1])),
    (lambda L: L.Hashing(num_bins=3), np.array([11, 12, 13])),
    (lambda L: L.Discretization(bin_boundaries=[0.0, 1.0]), np.array([-1.0, 0.5, 2.0])),
    (lambda L: L.Embedding(10, 3), np.array([1, 2, 9])),
]


@pytest.mark.parametrize("shape", [(None,), (3,)], ids=["none", "batch"])
@pytest.mark.parametrize("make, x", ONE_VALUE_PER_SAMPLE,
                         ids=[type(make(kilnet.layers)).__name__ for make, _ in ONE_VALUE_PER_SAMPLE])
def test_a_layer_of_one_value_per_sample_built_with_its_batch_shape_works_as_keras(make, x,
                                                                                   shape):
    ours, theirs = _both_built(make, shape)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)))
    if ours.weights:   # the weights did not take the batch size for a feature axis
        assert ours.build_shape == ()


def test_a_sequential_built_for_a_batch_of_scalars_as_keras():
    outputs = []
    for lib in (kilnet, keras):
        model = lib.Sequential([lib.layers.Embedding(10, 3, name="e")], name="s")
        model.build((None,))
        assert [tuple(v.shape) for v in model.weights] == [(10, 3)]
        assert tuple(model.output_shape) == (None, 3)
        outputs.append(model)
    outputs[0].set_weights(outputs[1].get_weights())
    x = np.array([1, 4, 7])
    np.testing.assert_allclose(np.asarray(outputs[0](x)), np.asarray(outputs[1](x)))


NO_SHAPE_NEEDED = [
    (lambda L: L.Embedding(10, 3), np.array([[1, 2], [9, 0]])),
    (lambda L: L.Dropout(0.5), np.ones((2, 3), "float32")),
    (lambda L: L.Activation("relu"), np.array([[-1.0, 2.0]], "float32")),
    (lambda L: L.IntegerLookup(vocabulary=[3, 5]), np.array([5, 3, 7])),
    (lambda L: L.CategoryEncoding(num_tokens=4, output_mode="one_hot"), np.array([0, 3, 1])),
    (lambda L: L.Hashing(num_bins=3), np.array([11, 12, 13])),
    (lambda L: L.Discretization(bin_boundaries=[0.0, 1.0]), np.array([-1.0, 0.5, 2.0])),
]


@pytest.mark.parametrize("make, x", NO_SHAPE_NEEDED,
                         ids=[type(make(kilnet.layers)).__name__ for make, _ in NO_SHAPE_NEEDED])
def test_build_without_a_shape_builds_a_layer_that_needs_none_as_keras(make, x):
    ours, theirs = _both_built(make, None)
    assert ours.built
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)))


def test_build_without_a_shape_is_refused_where_the_weights_need_one():
    with pytest.raises(TypeError):   # Keras's: 'NoneType' object is not subscriptable
        keras.layers.Dense(2).build(None)
    with pytest.raises(ValueError, match=r"build\(\(None, 3\)\). Received: input_shape=None"):
        kilnet.layers.Dense(2).build(None)
