"""A layer of yours called on a dict of tensors (keras.io's variable selection network takes
the model's dict of Inputs): the functional model is made, and trains as Keras's from the same
weights, with or without a build(self) of its own."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402
from _training import sgd_mse_losses  # noqa: E402


def _model(lib, own_build):
    class Select(lib.layers.Layer):
        def __init__(self):
            super().__init__()
            self.projections = {"a": lib.layers.Dense(4), "b": lib.layers.Dense(4)}

        def call(self, inputs):
            return sum(self.projections[key](lib.ops.expand_dims(inputs[key], -1))
                       for key in sorted(inputs))

    if own_build:
        def build(self):
            self.built = True
        Select.build = build
    inputs = {"a": lib.Input((), name="a"), "b": lib.Input((), name="b")}
    return lib.Model(inputs, lib.layers.Dense(1)(Select()(inputs)))


@pytest.mark.parametrize("own_build", [False, True])
def test_a_layer_on_a_dict_of_inputs_trains_as_keras(own_build):
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=16).astype("float32"), "b": rng.normal(size=16).astype("float32")}
    y = rng.normal(size=(16, 1)).astype("float32")
    ours, theirs = _model(kilnet, own_build), _model(keras, own_build)
    assert ours.count_params() == theirs.count_params() == 21
    theirs.set_weights(ours.get_weights())
    losses = sgd_mse_losses((ours, theirs), x, y, batch_size=8, epochs=2)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
