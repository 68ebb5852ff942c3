"""A layer whose call() reads a tensor's value into Python (`int(...)`, `.numpy()`,
`ops.convert_to_numpy`), called eagerly: Keras on JAX runs the call on the concrete arrays,
building the sub-layers it meets (keras.io's mnist_moe picks its experts with
`top_k_indices.numpy()[0]` and calls the layer on one sample), and so does kilnet. Inside
fit's compiled step no trace can run it (Keras fails there too): the error says why."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

X = np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32)
X2 = np.random.default_rng(1).normal(size=(2, 3)).astype(np.float32)


def picking_layer(lib):
    """Experts called in the order the gate ranks them for the first sample (read into
    Python), each weighted by its rank: sub-layers built inside call, in value order."""
    class PickExperts(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.experts = [lib.layers.Dense(4, name=f"expert_{i}") for i in range(3)]
            self.gate = lib.layers.Dense(3, name="gate")

        def call(self, x):
            order = lib.ops.convert_to_numpy(lib.ops.argsort(self.gate(x)[0]))
            return sum(self.experts[int(i)](x) * float(rank + 1)
                       for rank, i in enumerate(order))

    return PickExperts(name="pick")


def scaling_layer(lib):
    """No sub-layers: its own weight from build(), scaled by int() of the input's sum."""
    class Scaled(lib.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal",
                                     name="w")

        def call(self, x):
            k = int(lib.ops.convert_to_numpy(lib.ops.sum(lib.ops.abs(x))))
            return x * self.w * k

    return Scaled(name="scaled")


def scaled_picking_layer(lib):
    """Its own weight from build(), and sub-layers that only its call builds."""
    class ScaledPick(type(picking_layer(lib))):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(4,), initializer="random_normal", name="w")

        def call(self, x):
            return super().call(x) * self.w

    return ScaledPick(name="scaled_pick")


def twins(make):
    ours, theirs = make(kilnet), make(keras)
    first = np.asarray(ours(X)), np.asarray(theirs(X))
    theirs.set_weights(ours.get_weights())
    return ours, theirs, first


@pytest.mark.parametrize("make", [picking_layer, scaling_layer, scaled_picking_layer])
def test_the_first_and_second_eager_calls_run_as_in_keras(make):
    ours, theirs, (ours_first, theirs_first) = twins(make)
    assert ours_first.shape == theirs_first.shape
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    np.testing.assert_allclose(np.asarray(ours(X2)), np.asarray(theirs(X2)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(ours_first, np.asarray(ours(X)), rtol=1e-6)


def reading_layer(lib):
    """No build() and no weights: int() of the input's sum (the first call still builds)."""
    class Reads(lib.layers.Layer):
        def call(self, x):
            return x * int(lib.ops.convert_to_numpy(lib.ops.sum(lib.ops.abs(x))))

    return Reads(name="reads")


@pytest.mark.parametrize("make", [picking_layer, scaling_layer, scaled_picking_layer,
                                  reading_layer])
def test_an_eager_call_after_build_runs_as_in_keras(make):
    ours, theirs = make(kilnet), make(keras)
    ours.build((None, 3))
    theirs.build((None, 3))
    first = np.asarray(ours(X)), np.asarray(theirs(X))
    assert first[0].shape == first[1].shape
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(np.asarray(ours(X)), np.asarray(theirs(X)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(ours(X2)), np.asarray(theirs(X2)), rtol=1e-5,
                               atol=1e-6)


def picking_model(lib):
    class Net(lib.Model):
        def __init__(self):
            super().__init__(name="net")
            self.pick = picking_layer(lib)
            self.head = lib.layers.Dense(1, name="head")

        def call(self, x):
            return self.head(self.pick(x))

    return Net()


def test_a_model_holding_such_a_layer_is_called_eagerly_as_in_keras():
    ours, theirs, _ = twins(picking_model)
    assert len(ours.weights) == len(theirs.weights) == 10
    np.testing.assert_allclose(np.asarray(ours(X2)), np.asarray(theirs(X2)), rtol=1e-5,
                               atol=1e-6)
    # run_eagerly runs the compiled programs on concrete arrays: predict runs the layer
    ours.compile("sgd", "mse", run_eagerly=True)
    np.testing.assert_allclose(ours.predict(X2, verbose=0), np.asarray(theirs(X2)),
                               rtol=1e-5, atol=1e-6)


def test_fit_says_the_layer_reads_a_value_into_python():
    y = np.ones((2, 1), np.float32)
    theirs = picking_model(keras)
    theirs(X)
    theirs.compile("sgd", "mse")
    with pytest.raises(Exception):   # Keras's jitted step cannot run it either
        theirs.fit(X, y, verbose=0)
    ours = picking_model(kilnet)
    ours(X)
    ours.compile("sgd", "mse")
    with pytest.raises(TypeError, match=r"'pick' \(PickExperts\) reads a tensor's value into "
                                        r"Python in call\(\).*fit.*run_eagerly=True"):
        ours.fit(X, y, verbose=0)


def test_run_eagerly_fits_such_a_model_from_the_loss_keras_computes():
    """Keras on JAX cannot fit it (its fit traces the model); kilnet's run_eagerly runs
    each step on concrete arrays: the first step's loss is Keras's from the same weights."""
    y = np.ones((2, 1), np.float32)
    ours, theirs, _ = twins(picking_model)
    expected = float(np.mean((np.asarray(theirs(X)) - y) ** 2))
    ours.compile(kilnet.optimizers.SGD(0.01), "mse", run_eagerly=True)
    loss = ours.fit(X, y, batch_size=2, epochs=1, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(loss, [expected], rtol=1e-5)


def test_run_eagerly_says_a_value_read_inside_the_loss_is_a_gradient_tracer():
    class ReadsWhatTrains(kilnet.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = kilnet.layers.Dense(2)

        def call(self, x):
            h = self.dense(x)
            return h * float(kilnet.ops.convert_to_numpy(kilnet.ops.sum(h)))

    model = kilnet.Sequential([ReadsWhatTrains(name="reads_h")])
    model(X)
    model.compile("sgd", "mse", run_eagerly=True)
    with pytest.raises(TypeError, match=r"'reads_h'.*gradient tracers.*ops.stop_gradient"):
        model.fit(X, np.ones((2, 2), np.float32), verbose=0)
