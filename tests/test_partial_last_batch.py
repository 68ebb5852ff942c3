"""A partial last batch where your code sees the whole batch: fit, evaluate and predict run it
at its own size, as Keras does, so an add_loss summing over the batch, a metric counting the
samples it sees, a loss averaging the batch and a layer mixing samples give Keras's numbers
(kilnet pads that batch to the batch size, which its own layers, losses and metrics leave
out, but your code would count). Compared with Keras itself, from the same weights."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
Y = np.random.default_rng(1).normal(size=(40, 1)).astype("float32")


def _model(lib, weights=None):
    layers, ops = lib.layers, lib.ops

    class ActivityPenalty(layers.Layer):   # the training guide's, a sum over the batch
        def call(self, inputs):
            self.add_loss(ops.sum(inputs) * 0.1)
            return inputs

    class SampleCount(lib.metrics.Metric):   # counts what it is shown, ignoring weights
        def __init__(self, name="sample_count", **kwargs):
            super().__init__(name=name, **kwargs)
            self.count = self.add_variable(shape=(), initializer="zeros", name="count")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.count.assign_add(ops.cast(ops.shape(y_true)[0], "float32"))

        def result(self):
            return self.count.value

    inputs = lib.Input((4,))
    hidden = ActivityPenalty()(layers.Dense(3, activation="relu", bias_initializer="ones")(
        inputs))
    model = lib.Model(inputs, layers.Dense(1)(hidden))
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.SGD(0.01), loss="mse", metrics=[SampleCount()])
    return model


def _fit_and_evaluate(make_model, batch_size):
    """{lib: (fit history, evaluate's dict, weights after)} for Keras and kilnet, both
    starting from Keras's initial weights."""
    found = {}
    reference = make_model(keras)
    for lib in (keras, kilnet):
        model = make_model(lib, reference.get_weights())
        history = model.fit(X, Y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0)
        found[lib] = (history.history, model.evaluate(X, Y, batch_size=batch_size, verbose=0,
                                                      return_dict=True), model.get_weights())
    return found


def test_add_loss_and_a_counting_metric_see_the_last_batch_at_its_size():
    found = _fit_and_evaluate(_model, batch_size=32)
    mine, theirs = found[kilnet], found[keras]
    assert mine[0]["sample_count"] == theirs[0]["sample_count"] == [40.0, 40.0]
    np.testing.assert_allclose(mine[0]["loss"], theirs[0]["loss"], rtol=1e-5)
    assert mine[1]["sample_count"] == theirs[1]["sample_count"] == 40.0
    np.testing.assert_allclose(mine[1]["loss"], theirs[1]["loss"], rtol=1e-5)
    for a, b in zip(mine[2], theirs[2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_a_generator_whose_last_batch_is_short():
    def batches():
        for start in range(0, 40, 16):   # 16, 16, 8
            yield X[start:start + 16], Y[start:start + 16]

    found = {}
    reference = _model(keras)
    for lib in (keras, kilnet):
        model = _model(lib, reference.get_weights())
        history = model.fit(batches(), epochs=1, verbose=0)
        found[lib] = history.history
    assert found[kilnet]["sample_count"] == found[keras]["sample_count"] == [40.0]
    np.testing.assert_allclose(found[kilnet]["loss"], found[keras]["loss"], rtol=1e-5)


def test_predict_with_a_layer_mixing_the_batch():
    """keras.io's collaborative filtering multiplies ops.tensordot(u, m, 2): one number for
    the whole batch, added to every prediction; the last batch's padding changed it."""
    found = {}
    for lib in (keras, kilnet):
        class BatchMix(lib.layers.Layer):
            def call(self, x):
                return x + lib.ops.tensordot(x, x, 2) * 0.01

        model = lib.Sequential([lib.Input((4,)), BatchMix()])
        found[lib] = model.predict(X, batch_size=32, verbose=0)
    np.testing.assert_allclose(found[kilnet], found[keras], rtol=1e-5, atol=1e-6)


def _orthogonal_regularized_model(lib, weights=None):
    """pointnet's OrthogonalRegularizer (a Regularizer subclass summing cross products over
    the whole batch) as a built-in Dense layer's activity_regularizer."""
    ops = lib.ops

    class OrthogonalRegularizer(lib.regularizers.Regularizer):
        def __init__(self, num_features, l2reg=0.001):
            self.num_features, self.l2reg = num_features, l2reg
            self.identity = ops.eye(num_features)

        def __call__(self, x):
            x = ops.reshape(x, (-1, self.num_features, self.num_features))
            xxt = ops.tensordot(x, x, axes=(2, 2))
            xxt = ops.reshape(xxt, (-1, self.num_features, self.num_features))
            return ops.sum(self.l2reg * ops.square(xxt - self.identity))

    inputs = lib.Input((4,), name="points")
    hidden = lib.layers.Dense(4, activity_regularizer=OrthogonalRegularizer(2),
                              name="transform")(inputs)
    model = lib.Model(inputs, lib.layers.Dense(1, name="head")(hidden))
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
    return model


def test_an_activity_regularizer_of_yours_sees_the_last_batch_at_its_size():
    """40 samples at batch 12: a last batch of 4, whose padding rows would enter the sum."""
    found = _fit_and_evaluate(_orthogonal_regularized_model, batch_size=12)
    mine, theirs = found[kilnet], found[keras]
    np.testing.assert_allclose(mine[0]["loss"], theirs[0]["loss"], rtol=1e-6)
    np.testing.assert_allclose(mine[1]["loss"], theirs[1]["loss"], rtol=1e-6)
    for a, b in zip(mine[2], theirs[2], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
