"""A sequence mask reaches the layers of a functional model nested in another, as Keras's
Functional sets the masks it is called with on its inputs (keras.io's English-to-Spanish
Transformer: the encoder's padding mask reaches the nested decoder model's cross-attention).
Checked against Keras from the same weights, and for padding invariance."""

import os
import warnings

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _training import sgd_mse_losses  # noqa: E402

IDS = np.array([[3, 5, 2, 0, 0], [4, 1, 0, 0, 0], [7, 8, 9, 6, 2]], dtype="int32")


def quietly(make):
    with warnings.catch_warnings():   # both libraries warn that a model drops its output mask
        warnings.simplefilter("ignore")
        return make()


def masked_sum_layer(ns):
    class MaskedSum(ns.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, x, mask=None):
            if mask is None:
                return ns.ops.sum(x, axis=1)
            return ns.ops.sum(x * ns.ops.cast(mask, x.dtype)[:, :, None], axis=1)

        def compute_mask(self, x, mask=None):
            return None

    return MaskedSum()


def summing(ns):
    ids = ns.Input((None,), dtype="int32")
    embedded = ns.layers.Embedding(10, 2, mask_zero=True)(ids)
    inner_in = ns.Input((None, 2))
    # Dense passes the mask on (it supports masking): the mask must flow inside, not only
    # reach the inner model's first layer
    inner = ns.Model(inner_in, masked_sum_layer(ns)(ns.layers.Dense(3)(inner_in)))
    return ns.Model(ids, inner(embedded))


def recurrent(ns):
    ids = ns.Input((None,), dtype="int32")
    embedded = ns.layers.Embedding(10, 4, mask_zero=True)(ids)
    inner_in = ns.Input((None, 4))
    inner = ns.Model(inner_in, ns.layers.LSTM(3)(ns.layers.Dense(4, activation="tanh")(
        inner_in)))
    return ns.Model(ids, ns.layers.Dense(1)(inner(embedded)))


def cross_attending(ns):
    source = ns.Input((None,), dtype="int32")
    target = ns.Input((None, 4))
    encoded = ns.layers.Embedding(10, 4, mask_zero=True)(source)
    decoder_in, memory = ns.Input((None, 4)), ns.Input((None, 4))
    attended = ns.layers.MultiHeadAttention(2, 2)(decoder_in, memory)
    decoder = ns.Model([decoder_in, memory], ns.layers.GlobalAveragePooling1D()(attended))
    return ns.Model([source, target], decoder([target, encoded]))


def inputs_for(make):
    if make is cross_attending:
        target = np.random.default_rng(1).normal(size=(3, 2, 4)).astype("float32")
        return [IDS, target]
    return IDS


@pytest.mark.parametrize("make", [summing, recurrent, cross_attending])
def test_nested_model_sees_the_mask_as_keras(make):
    ours, theirs = quietly(lambda: make(kilnet)), quietly(lambda: make(keras))
    theirs.set_weights(ours.get_weights())
    x = inputs_for(make)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("make", [summing, recurrent, cross_attending])
def test_more_padding_changes_nothing(make):
    model = quietly(lambda: make(kilnet))
    x = inputs_for(make)
    padded = np.concatenate([IDS, np.zeros((3, 4), "int32")], axis=1)
    longer = [padded, x[1]] if isinstance(x, list) else padded
    np.testing.assert_allclose(model.predict(longer, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_training_through_the_nested_mask_matches_keras():
    ours, theirs = quietly(lambda: recurrent(kilnet)), quietly(lambda: recurrent(keras))
    theirs.set_weights(ours.get_weights())
    y = np.array([[0.5], [-1.0], [2.0]], "float32")
    ours_loss, theirs_loss = sgd_mse_losses((ours, theirs), IDS, y, batch_size=3, epochs=3)
    np.testing.assert_allclose(ours_loss, theirs_loss, rtol=1e-5)
