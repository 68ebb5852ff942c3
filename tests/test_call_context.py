"""An error raised inside your layer's `call` names that call and its arguments, as Keras's
does: the same kind of error, "Exception encountered when calling Cls.call().", the original
message, then "Arguments received by Cls.call():" with each argument (arrays by shape and
dtype). Only the innermost failing call of yours adds this. Compared with Keras itself."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402


def _plain(message: str) -> str:
    """Keras shows the original message in bold (terminal codes); kilnet writes it plain."""
    return message.replace("\x1b[1m", "").replace("\x1b[0m", "")


def _failing_layers(lib):
    ops = lib.ops

    class Picky(lib.layers.Layer):
        def call(self, inputs, scale=2.0):
            if inputs.shape[-1] != 4:
                raise ValueError(f"Picky wants 4 features, got {inputs.shape[-1]}")
            return inputs * scale

    class Holder(lib.layers.Layer):
        def __init__(self):
            super().__init__()
            self.picky = Picky()

        def call(self, inputs):
            return ops.relu(self.picky(inputs))

    return Picky, Holder


@pytest.mark.parametrize("outer", [False, True], ids=["the layer", "a layer holding it"])
def test_an_error_in_call_names_the_innermost_call_as_keras_does(outer):
    messages = {}
    for lib in (keras, kilnet):
        picky, holder = _failing_layers(lib)
        layer = holder() if outer else picky()
        layer(np.ones((2, 4), np.float32))   # built by a call it takes
        with pytest.raises(ValueError) as caught:
            layer(np.ones((2, 3), np.float32))
        messages[lib] = _plain(str(caught.value))
    assert messages[kilnet] == messages[keras]
    assert messages[kilnet] == (
        "Exception encountered when calling Picky.call().\n\n"
        "Picky wants 4 features, got 3\n\n"
        "Arguments received by Picky.call():\n"
        "  • inputs=jnp.ndarray(shape=(2, 3), dtype=float32)\n"
        "  • scale=2.0")


def test_the_error_keeps_its_kind_and_traceback_and_other_kinds_pass_unchanged():
    class ByWidth(kilnet.layers.Layer):
        def call(self, inputs):
            return {4: inputs}[inputs.shape[-1]]

    layer = ByWidth()
    layer(np.ones((2, 4), np.float32))
    with pytest.raises(KeyError) as caught:   # not one of the kinds given the context
        layer(np.ones((2, 3), np.float32))
    assert str(caught.value) == "3"

    picky, _ = _failing_layers(kilnet)
    layer = picky()
    layer(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError) as caught:
        layer(np.ones((2, 3), np.float32))
    assert type(caught.value) is ValueError
    assert str(caught.value).startswith("Exception encountered when calling Picky.call().")
    assert caught.traceback[-1].name == "call"   # where your code raised it


def test_an_error_inside_fit_names_the_call_with_the_batch_it_got():
    """The compiled programs trace your call at the real batch size: the arguments say so."""
    class FourRows(kilnet.layers.Layer):
        def call(self, inputs):
            flat = kilnet.ops.reshape(inputs, (4 * 3,))
            return kilnet.ops.reshape(flat, kilnet.ops.shape(inputs))

    inputs = kilnet.Input((3,))
    model = kilnet.Model(inputs, FourRows()(inputs))
    assert model.predict(np.ones((4, 3), np.float32), batch_size=4, verbose=0).shape == (4, 3)
    with pytest.raises(TypeError) as caught:
        model.predict(np.ones((3, 3), np.float32), batch_size=3, verbose=0)
    message = str(caught.value)
    assert message.startswith("Exception encountered when calling FourRows.call().")
    assert message.endswith("  • inputs=jnp.ndarray(shape=(3, 3), dtype=float32)")
