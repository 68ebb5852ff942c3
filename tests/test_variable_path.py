"""Names Keras gives that learners print: a weight's `path` (the layers that made it, then its
name) and the `dtype` entry of every layer's config, a layer of yours included. Compared with
Keras itself on the same constructions."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402


def _paths(lib):
    """The weight paths of one model of each kind, built the way a guide builds them."""
    layers = lib.layers
    found = {}
    eager = lib.Sequential([lib.Input((4,)), layers.Dense(2, name="d")], name="seq")
    found["sequential"] = [v.path for v in eager.weights]
    lazy = lib.Sequential([layers.Dense(2, name="d2")], name="seq2")
    lazy.build((None, 4))
    found["sequential built later"] = [v.path for v in lazy.weights]
    inputs = lib.Input((4,))
    functional = lib.Model(inputs, layers.Dense(3, name="f")(inputs), name="fun")
    found["functional"] = [v.path for v in functional.weights]

    class Outer(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = layers.Dense(2, name="inner")

        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1], 2), name="w")

        def call(self, x):
            return self.inner(x) + lib.ops.matmul(x, self.w)

    outer = Outer(name="outer")
    outer(np.ones((1, 3), "float32"))
    found["custom layer"] = [v.path for v in outer.weights]

    class Sub(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.a = layers.Dense(2, name="a")
            self.bn = layers.BatchNormalization(name="bn")

        def call(self, x):
            return self.bn(self.a(x))

    sub = Sub(name="sub")
    sub(np.ones((1, 3), "float32"))
    found["subclassed model"] = [v.path for v in sub.weights]
    nested = lib.Sequential([lib.Input((4,)), eager, layers.Dense(1, name="top")], name="outseq")
    found["nested"] = [v.path for v in nested.weights]
    alone = layers.Dense(2, name="alone")
    alone.build((None, 3))
    found["layer alone"] = [v.path for v in alone.weights]
    # recurrent layers: Keras keeps the weights in a cell layer, named in the path
    # (named: automatic names depend on what the process made before)
    recurrent = lib.Sequential([lib.Input((5, 3)),
                                layers.SimpleRNN(2, return_sequences=True, name="simple"),
                                layers.GRU(2, return_sequences=True, name="gru"),
                                layers.LSTM(2, name="lstm")], name="rec")
    found["recurrent"] = [v.path for v in recurrent.weights]
    cell = layers.RNN(layers.LSTMCell(2, name="cell"), name="wrapped")
    cell.build((None, 5, 3))
    found["RNN of a cell"] = [v.path for v in cell.weights]
    return found


def test_weight_paths_are_keras_paths():
    ours, theirs = _paths(kilnet), _paths(keras)
    assert ours == theirs
    assert ours["sequential"] == ["seq/d/kernel", "seq/d/bias"]   # not only the name
    assert ours["recurrent"][-1] == "rec/lstm/lstm_cell/bias"


def test_a_layer_of_yours_has_keras_dtype_entry_in_its_config():
    def linear(lib):
        class Linear(lib.layers.Layer):
            def __init__(self, units=32, **kwargs):
                super().__init__(**kwargs)
                self.units = units

            def get_config(self):
                return {**super().get_config(), "units": self.units}
        return Linear

    for dtype in (None, "mixed_float16"):
        ours = linear(kilnet)(64, dtype=dtype).get_config()
        theirs = linear(keras)(64, dtype=dtype).get_config()
        assert sorted(ours) == sorted(theirs) == ["dtype", "name", "trainable", "units"]
        assert ours["dtype"] == theirs["dtype"]
    assert kilnet.layers.Dense(2).get_config()["dtype"] == keras.layers.Dense(2).get_config()[
        "dtype"]


def _holder(lib):
    """A model of yours holding a functional network its call runs and a `clone_model` copy
    of it that no call runs (keras.io ddim's network and EMA network)."""
    inputs = lib.Input((3,), name="x")
    network = lib.Model(inputs, lib.layers.Dense(2, name="d")(inputs), name="net")

    class Holder(lib.Model):
        def __init__(self):
            super().__init__(name="holder")
            self.network = network
            self.ema_network = lib.models.clone_model(network)

        def call(self, x):
            return self.network(x)

    model = Holder()
    model(np.ones((2, 3), "float32"))
    return model


def test_networks_held_by_a_model_have_keras_weights_and_paths():
    """Keras builds a functional network when it is made, outside any model: its weights
    are `d/kernel` whoever calls it, and a copy no call runs has its weights too. kilnet
    named the first `holder/d/kernel` and left the copy's weights out of the first read of
    `model.weights`."""
    ours, theirs = _holder(kilnet), _holder(keras)
    assert [v.path for v in ours.weights] == [v.path for v in theirs.weights] == [
        "d/kernel", "d/bias"] * 2
    assert len(ours.trainable_variables) == len(theirs.trainable_variables) == 4
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
