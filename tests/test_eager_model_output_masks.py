"""A functional model or Sequential called eagerly on arrays gives back outputs that carry
their sequence masks (Keras's `_keras_mask`), so a layer called on them afterwards (an LSTM)
skips the padded steps as in Keras: one output and several, a Sequential with its input
declared or not, and a model called inside a subclassed model's `call`. Checked against Keras
from the same weights."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402

IDS = np.array([[3, 5, 7, 0, 0], [2, 9, 0, 0, 0], [4, 1, 6, 8, 2]], dtype="int32")


def embedder_model(ns):
    ids = ns.Input((None,), dtype="int32")
    return ns.Model(ids, ns.layers.Embedding(20, 4, mask_zero=True, name="embed")(ids))


def declared_sequential(ns):
    return ns.Sequential([ns.Input((None,), dtype="int32"),
                          ns.layers.Embedding(20, 4, mask_zero=True, name="embed")])


def undeclared_sequential(ns):
    return ns.Sequential([ns.layers.Embedding(20, 4, mask_zero=True, name="embed")])


def _mask_of(array):
    mask = getattr(array, "_keras_mask", None)
    return None if mask is None else np.asarray(mask)



@pytest.mark.parametrize("make", [embedder_model, declared_sequential, undeclared_sequential])
def test_an_eager_model_output_carries_the_mask_an_lstm_then_uses(make):
    keras.backend.clear_session()
    theirs, ours = make(keras), make(kilnet)
    theirs(IDS), ours(IDS)
    ours.set_weights(theirs.get_weights())
    their_steps, our_steps = theirs(IDS), ours(IDS)
    np.testing.assert_array_equal(_mask_of(our_steps), _mask_of(their_steps))
    their_lstm = keras.layers.LSTM(3, return_sequences=True, name="lstm")
    our_lstm = kilnet.layers.LSTM(3, return_sequences=True, name="lstm")
    expected = np.asarray(their_lstm(their_steps))
    our_lstm(our_steps)
    our_lstm.set_weights(their_lstm.get_weights())
    np.testing.assert_allclose(np.asarray(our_lstm(our_steps)), expected, rtol=1e-5,
                               atol=1e-6)


def several_outputs(ns):
    ids = ns.Input((None,), dtype="int32")
    steps = ns.layers.Embedding(20, 4, mask_zero=True, name="embed")(ids)
    return ns.Model(ids, [steps, ns.layers.Dense(3, name="dense")(steps),
                          ns.layers.GlobalAveragePooling1D(name="pool")(steps)])


def test_each_eager_output_carries_its_own_mask_as_in_keras():
    keras.backend.clear_session()
    theirs, ours = several_outputs(keras), several_outputs(kilnet)
    expected = [_mask_of(output) for output in theirs(IDS)]
    got = [_mask_of(output) for output in ours(IDS)]
    assert [m is None for m in got] == [m is None for m in expected] == [False, False, True]
    for mask, want in zip(got[:2], expected[:2]):
        np.testing.assert_array_equal(mask, want)


def subclassed_around(ns):
    class Reader(ns.Model):
        def __init__(self):
            super().__init__()
            self.embedder = embedder_model(ns)
            self.lstm = ns.layers.LSTM(3, name="lstm")

        def call(self, ids):
            return self.lstm(self.embedder(ids))

    return Reader()


def test_a_model_called_in_a_subclassed_call_passes_its_mask_to_the_next_layer():
    keras.backend.clear_session()
    theirs, ours = subclassed_around(keras), subclassed_around(kilnet)
    theirs(IDS), ours(IDS)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(np.asarray(ours(IDS)), np.asarray(theirs(IDS)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(ours.predict(IDS, verbose=0), theirs.predict(IDS, verbose=0),
                               rtol=1e-5, atol=1e-6)
