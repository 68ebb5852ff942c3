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


def _standardized_convolutions(lib):
    """keras.io's "Customizing the convolution operation of a Conv2D layer": the kernel
    standardized per output channel, by overriding convolution_op or call (kilnet's as
    written)."""
    ops = lib.ops

    def standardized(kernel):
        if lib is keras:   # Keras 3.15 cannot read its Variable into ops.moments on JAX 0.10
            kernel = ops.convert_to_tensor(kernel)
        mean, var = ops.moments(kernel, axes=[0, 1, 2], keepdims=True)
        return (kernel - mean) / ops.sqrt(var + 1e-10)

    class WithOverride(lib.layers.Conv2D):
        def convolution_op(self, inputs, kernel):
            return ops.conv(inputs, standardized(kernel), padding="valid",
                            strides=list(self.strides), dilation_rate=self.dilation_rate)

    class WithCall(lib.layers.Conv2D):
        def call(self, inputs):
            result = self.convolution_op(inputs, standardized(self.kernel))
            return result + self.bias if self.use_bias else result

    return WithOverride, WithCall


def test_an_overridden_convolution_op_is_what_the_layer_computes():
    """The recipe's model from the same weights trains as Keras's (plain SGD, no shuffling);
    a plain Conv2D with those weights computes something else, so the override counts."""
    rng = np.random.default_rng(0)
    x = rng.random((32, 10, 10, 1), dtype=np.float32)
    y = rng.integers(0, 3, 32)
    runs = []
    for lib in (kilnet, keras):
        with_override, _ = _standardized_convolutions(lib)
        model = lib.Sequential([lib.Input((10, 10, 1)), with_override(4, 3, activation="relu"),
                                lib.layers.Flatten(), lib.layers.Dense(3, activation="softmax")])
        if lib is kilnet:
            start = model.get_weights()
        else:
            model.set_weights(start)
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        runs.append((history.history["loss"], model.predict(x, verbose=0)))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-5)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-5, atol=1e-6)
    plain = kilnet.layers.Conv2D(4, 3)
    plain.build((None, 10, 10, 1))
    plain.set_weights(start[:2])
    with_override, _ = _standardized_convolutions(kilnet)
    ours = with_override(4, 3)
    ours.build((None, 10, 10, 1))
    ours.set_weights(start[:2])
    assert not np.allclose(np.asarray(ours(x[:2])), np.asarray(plain(x[:2])), atol=1e-3)


def test_a_call_override_computes_through_convolution_op_as_keras():
    """The recipe's other form: its call standardizes self.kernel and calls
    self.convolution_op; the result is Keras's convolution_op on the standardized kernel
    plus the bias (Keras 3.15 itself fails reading self.kernel into ops.moments on JAX 0.10)."""
    rng = np.random.default_rng(1)
    x = rng.random((2, 6, 6, 3), dtype=np.float32)
    _, with_call = _standardized_convolutions(kilnet)
    ours = with_call(4, 3)
    ours.build((None, 6, 6, 3))
    kernel, bias = ours.get_weights()
    bias = rng.random(4, dtype=np.float32)
    ours.set_weights([kernel, bias])
    theirs = keras.layers.Conv2D(4, 3)
    theirs.build((None, 6, 6, 3))
    mean = kernel.mean(axis=(0, 1, 2), keepdims=True)
    var = kernel.var(axis=(0, 1, 2), keepdims=True)
    want = np.asarray(theirs.convolution_op(x, (kernel - mean) / np.sqrt(var + 1e-10))) + bias
    np.testing.assert_allclose(np.asarray(ours(x)), want, rtol=1e-4, atol=1e-5)
