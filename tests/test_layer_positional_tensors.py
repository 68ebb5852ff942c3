"""A layer of yours whose call takes several tensors as positional arguments (Keras's training
guide's LogisticEndpoint()(targets, logits), which adds its loss with add_loss): built, traced
and trained in a functional model as Keras does, against Keras 3's numbers."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference training is Keras's")

import kilnet  # noqa: E402


def endpoint_model(lib):
    class LogisticEndpoint(lib.layers.Layer):
        def __init__(self, name=None):
            super().__init__(name=name)
            self.loss_fn = lib.losses.BinaryCrossentropy(from_logits=True)

        def call(self, targets, logits, sample_weights=None):
            self.add_loss(self.loss_fn(targets, logits, sample_weights))
            return lib.ops.softmax(logits)

    inputs = lib.Input(shape=(3,), name="inputs")
    targets = lib.Input(shape=(10,), name="targets")
    logits = lib.layers.Dense(10)(inputs)
    predictions = LogisticEndpoint(name="predictions")(targets, logits)
    return lib.Model(inputs=[inputs, targets], outputs=predictions)


def scaled_sum_model(lib):
    """The second tensor decides the output's width: the trace must see it."""
    class Gate(lib.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x, context):
            return lib.ops.concatenate([x * self.scale, context], axis=-1)

    a, b = lib.Input(shape=(4,)), lib.Input(shape=(2,))
    return lib.Model([a, b], lib.layers.Dense(1)(Gate()(a, b)))


def test_the_guides_endpoint_layer_trains_as_keras():
    rng = np.random.default_rng(0)
    data = {"inputs": rng.random((16, 3)).astype("float32"),
            "targets": rng.random((16, 10)).astype("float32")}
    mine, theirs = endpoint_model(kilnet), endpoint_model(keras)
    assert mine.output_shape == theirs.output_shape == (None, 10)
    mine.set_weights([w.numpy() for w in theirs.weights])
    results = []
    for lib, model in ((kilnet, mine), (keras, theirs)):
        model.compile(optimizer=lib.optimizers.SGD(0.1))   # no loss: the layer adds it
        history = model.fit(data, batch_size=8, epochs=2, shuffle=False, verbose=0)
        results.append((history.history["loss"], model.get_weights()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_an_extra_positional_tensor_shapes_the_output():
    mine, theirs = scaled_sum_model(kilnet), scaled_sum_model(keras)
    assert mine.output_shape == theirs.output_shape
    mine.set_weights([w.numpy() for w in theirs.weights])
    x = [np.ones((2, 4), "float32"), np.full((2, 2), 3.0, "float32")]
    np.testing.assert_allclose(mine.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-6)
