"""A subclass of a built-in layer that overrides call (the saving guide's Dense subclass with
an extra Variable): your call is what runs, super().call(inputs) is the built-in computation,
the output shape is your call's, and training (weights, a BatchNormalization's statistics)
equals Keras's from the same weights."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402


def _classes(lib):
    class ScaledDense(lib.layers.Dense):
        def __init__(self, units, **kwargs):
            super().__init__(units, **kwargs)
            self.scale = lib.Variable(np.arange(1, 4, dtype="float32"), name="scale")

        def call(self, inputs):
            return super().call(inputs) * self.scale   # (batch, 1) * (3,) -> (batch, 3)

    class DoubledNorm(lib.layers.BatchNormalization):
        def call(self, inputs, training=None):
            return 2.0 * super().call(inputs, training=training)

    return ScaledDense, DoubledNorm


X = np.random.default_rng(0).normal(2.0, 1.5, size=(16, 4)).astype("float32")
Y = np.random.default_rng(1).normal(size=(16, 3)).astype("float32")


def _model(lib):
    scaled, doubled = _classes(lib)
    inputs = lib.Input((4,))
    return lib.Model(inputs, scaled(1, name="scaled")(doubled(name="norm")(inputs)))


def test_your_call_runs_with_its_own_output_shape():
    scaled = _classes(kilnet)[0](1, kernel_initializer="ones")
    np.testing.assert_array_equal(np.asarray(scaled(np.ones((2, 4), "float32"))),
                                  [[4.0, 8.0, 12.0]] * 2)
    # Keras 3.15 declares Dense's own shape rule's (None, 1); its predict gives (n, 3)
    model = _model(kilnet)
    assert model.output_shape == (None, 3)
    assert model.predict(X[:2], verbose=0).shape == _model(keras).predict(X[:2], verbose=0).shape


def test_training_equals_keras_s_from_the_same_weights():
    mine, theirs = _model(kilnet), _model(keras)
    mine.build()
    mine.set_weights(theirs.get_weights())
    results = []
    for model in (mine, theirs):
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(X, Y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        results.append((history.history["loss"], model.get_weights(),
                        model.predict(X[:4], verbose=0)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):   # kernel, bias, scale, BN's four
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[0][2], results[1][2], rtol=1e-5, atol=1e-5)
    assert not np.allclose(mine.get_layer("norm").moving_mean.numpy(), 0.0)
