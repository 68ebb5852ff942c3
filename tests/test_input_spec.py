"""kilnet.layers.InputSpec against Keras's: a custom layer declaring a spec accepts and refuses
the same inputs in both (arrays and symbolic tensors), with the layer's name in the message."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

import kilnet  # noqa: E402

SPECS = [
    dict(ndim=3),
    dict(min_ndim=3),
    dict(max_ndim=2),
    dict(axes={-1: 4}),
    dict(min_ndim=2, axes={1: 3}),
    dict(shape=(None, 3, 4)),
    dict(shape=(None, 3, 1), allow_last_axis_squeeze=True),
    dict(dtype="int32"),
]
SHAPES = [(2, 3), (2, 4), (2, 3, 4), (2, 3, 5), (2, 3, 1), (2, 4, 4)]


def _layer(lib, spec_kwargs):
    class Declared(lib.layers.Layer):
        def __init__(self):
            super().__init__(name="declared")
            self.input_spec = lib.layers.InputSpec(**spec_kwargs)

        def call(self, x):
            return x

    return Declared()


def _accepts(lib, spec_kwargs, x):
    try:
        _layer(lib, spec_kwargs)(x)
        return True
    except ValueError as error:
        assert "declared" in str(error)
        return False


@pytest.mark.parametrize("spec", SPECS, ids=[str(s) for s in SPECS])
def test_accepts_and_refuses_what_keras_does(spec):
    for shape in SHAPES:
        for dtype in ("float32", "int32"):
            x = np.zeros(shape, dtype)
            assert _accepts(kilnet, spec, x) == _accepts(keras, spec, x), (shape, dtype)


def test_symbolic_inputs_are_checked_too_and_the_message_names_what_was_received():
    with pytest.raises(ValueError, match=r"'declared'.*expected ndim=3\. Received: "
                                         r"shape=\(None, 5\)"):
        _layer(kilnet, dict(ndim=3))(kilnet.Input(shape=(5,)))
    out = _layer(kilnet, dict(ndim=2))(kilnet.Input(shape=(5,)))
    assert out.shape == (None, 5)


def test_a_spec_set_in_build_checks_later_calls_inside_a_trained_model():
    class Scale(kilnet.layers.Layer):
        def build(self, input_shape):
            self.input_spec = kilnet.layers.InputSpec(min_ndim=2, axes={-1: input_shape[-1]})
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x):
            return x * self.w

    model = kilnet.Sequential([kilnet.Input(shape=(3,)), Scale(), kilnet.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 1)), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"axis -1 of size 3\. Received: shape=\(2, 4\)"):
        model.layers[0](np.ones((2, 4)))


def test_several_and_named_inputs():
    class Pair(kilnet.layers.Layer):
        def __init__(self):
            super().__init__(name="pair")
            self.input_spec = [kilnet.layers.InputSpec(ndim=2, name="a"),
                               kilnet.layers.InputSpec(ndim=3, name="b")]

        def call(self, inputs):
            return inputs["a"] if isinstance(inputs, dict) else inputs[0]

    pair = Pair()
    assert pair({"a": np.ones((1, 2)), "b": np.ones((1, 2, 2))}).shape == (1, 2)
    with pytest.raises(ValueError, match=r"named \['a', 'b'\].*Add the key\(s\) \['b'\]"):
        pair({"a": np.ones((1, 2))})
    with pytest.raises(ValueError, match=r"expects 2 input\(s\)\. Received: 1"):
        pair(np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"Input 1 of layer 'pair'.*expected ndim=3"):
        pair([np.ones((1, 2)), np.ones((1, 2))])


def test_config_and_argument_errors_match_keras():
    kwargs = dict(dtype="float32", shape=(None, 4), axes={-1: 4}, min_ndim=None)
    assert kilnet.layers.InputSpec(**kwargs).get_config() == \
        keras.layers.InputSpec(**kwargs).get_config()
    spec = kilnet.layers.InputSpec.from_config(kilnet.layers.InputSpec(ndim=2).get_config())
    assert spec.ndim == 2 and kilnet.InputSpec is kilnet.layers.InputSpec
    with pytest.raises(TypeError, match="Received: axes="):
        kilnet.layers.InputSpec(axes={"last": 3})
    with pytest.raises(ValueError, match="axis 3.*Received: axes="):
        kilnet.layers.InputSpec(ndim=2, axes={3: 1})
