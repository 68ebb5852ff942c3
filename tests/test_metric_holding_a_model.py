"""A Metric subclass holding a model and calling it in update_state (keras.io's ddim and
gan_ada keep an InceptionV3 encoder in their KID metric): Keras runs it on the encoder's
weights as they are, nothing trains them, and they are none of the metric's or the model's
variables. kilnet runs it so too, in a model's own JAX-form test_step and as a compiled
metric, with Keras's numbers; a layer with weights called untracked inside a layer's call
is still refused (tests/test_layers_made_in_call.py)."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

ENCODER_KERNEL = np.array([[1, 0], [0, 1], [1, 1]], np.float32)


def feature_gap(lib):
    """A KID-like metric: the mean distance between two batches' encodings, the encoder a
    small functional model held as the metric's attribute."""
    class FeatureGap(lib.metrics.Metric):
        def __init__(self, name="gap", **kwargs):
            super().__init__(name=name, **kwargs)
            self.tracker = lib.metrics.Mean(name="tracker")
            inputs = lib.Input((3,))
            self.encoder = lib.Model(inputs, lib.layers.Dense(2, name="enc")(inputs),
                                     name="encoder")
            self.encoder.set_weights([ENCODER_KERNEL, np.array([0.5, -0.5], np.float32)])

        def update_state(self, a, b, sample_weight=None):
            gap = lib.ops.abs(self.encoder(a, training=False) - self.encoder(b, training=False))
            self.tracker.update_state(lib.ops.mean(gap))

        def result(self):
            return self.tracker.result()

        def reset_state(self):
            self.tracker.reset_state()

    return FeatureGap


def model_with_own_test_step(lib):
    gap_metric = feature_gap(lib)

    class Net(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(3, name="dense")
            self.gap = gap_metric()

        def call(self, x):
            return self.dense(x)

        @property
        def metrics(self):
            return [self.gap]

        def test_step(self, state, data):
            trainable, non_trainable, metric_variables = state
            x = lib.utils.unpack_x_y_sample_weight(data)[0]
            y, _ = self.stateless_call(trainable, non_trainable, x)
            metric_variables = self.gap.stateless_update_state(metric_variables, x, y)
            return ({"gap": self.gap.stateless_result(metric_variables)},
                    (trainable, non_trainable, metric_variables))

    return Net()


def plain_model(lib):
    inputs = lib.Input((3,))
    return lib.Model(inputs, lib.layers.Dense(3, name="dense")(inputs))


def data():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(10, 3)).astype(np.float32),
            rng.normal(size=(10, 3)).astype(np.float32))


def same_weights(ours, theirs, x):
    ours(x[:2])
    theirs(x[:2])
    theirs.set_weights(ours.get_weights())


def test_a_metric_calls_the_model_it_holds_in_a_jax_form_test_step():
    x, _ = data()
    ours, theirs = model_with_own_test_step(kilnet), model_with_own_test_step(keras)
    same_weights(ours, theirs, x)
    ours.compile()
    theirs.compile()
    got = ours.evaluate(x, batch_size=4, verbose=0)
    expected = theirs.evaluate(x, batch_size=4, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.asarray(got).ravel()[0] > 0.1


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_a_metric_holding_a_model_as_a_compiled_metric(run_eagerly):
    x, y = data()
    ours, theirs = plain_model(kilnet), plain_model(keras)
    same_weights(ours, theirs, x)
    for model, lib in ((ours, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse",
                      metrics=[feature_gap(lib)(name="cgap")], run_eagerly=run_eagerly)
    np.testing.assert_allclose(ours.evaluate(x, y, batch_size=4, verbose=0),
                               theirs.evaluate(x, y, batch_size=4, verbose=0), rtol=1e-6)
    fit = dict(batch_size=4, epochs=2, shuffle=False, verbose=0, validation_data=(x, y))
    got, expected = ours.fit(x, y, **fit).history, theirs.fit(x, y, **fit).history
    assert sorted(got) == sorted(expected) == ["cgap", "loss", "val_cgap", "val_loss"]
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, err_msg=name)


def test_the_held_model_is_none_of_the_metrics_or_the_models_variables():
    x, _ = data()
    ours, theirs = model_with_own_test_step(kilnet), model_with_own_test_step(keras)
    same_weights(ours, theirs, x)
    for model in (ours, theirs):
        assert len(model.gap.variables) == 2   # the tracker's total and count, as Keras's
        assert len(model.trainable_variables) == 2 and not model.non_trainable_variables
    ours.compile()
    ours.evaluate(x, batch_size=4, verbose=0)
    # the encoder's weights are read as they are: evaluate leaves them so
    np.testing.assert_array_equal(ours.gap.encoder.get_weights()[0], ENCODER_KERNEL)


def test_an_eager_update_state_gives_keras_result():
    x, y = data()
    ours, theirs = feature_gap(kilnet)(), feature_gap(keras)()
    ours.update_state(x, y)
    theirs.update_state(x, y)
    np.testing.assert_allclose(float(ours.result()), float(theirs.result()), rtol=1e-6)
