"""Sequence masks outside a functional graph, and Keras-form layers on sequences of unknown
length, against Keras itself (its masking guide's layers): a subclassed model's Embedding mask
reaches its LSTM with no `mask=` written, eager outputs carry `_keras_mask`, a `call(inputs,
mask=None)` receives the mask when the functional model is built and run."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

import kilnet  # noqa: E402

IDS = np.array([[3, 4, 0, 0, 0, 0], [5, 6, 7, 0, 0, 0], [1, 2, 3, 4, 5, 6]], "int32")


def _subclassed(lib):
    class Classifier(lib.Model):
        def __init__(self):
            super().__init__()
            self.embedding = lib.layers.Embedding(10, 3, mask_zero=True)
            self.lstm = lib.layers.LSTM(4, return_sequences=True)
            self.pool = lib.layers.GlobalAveragePooling1D()

        def call(self, x):
            return self.pool(self.lstm(self.embedding(x)))   # no mask= anywhere

    return Classifier()


def test_a_subclassed_models_mask_reaches_its_layers_as_in_keras():
    theirs, ours = _subclassed(keras), _subclassed(kilnet)
    theirs(IDS), ours(IDS)
    ours.set_weights(theirs.get_weights())
    expected = np.asarray(theirs(IDS))
    np.testing.assert_allclose(np.asarray(ours(IDS)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.predict(IDS, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # the padded rows are what the mask decides: without it they differ
    unmasked = np.asarray(ours.pool(ours.lstm(np.asarray(ours.embedding(IDS)))))
    assert not np.allclose(unmasked[:2], expected[:2], atol=1e-4)


def test_the_mask_changes_a_subclassed_models_training_as_in_keras():
    y = np.array([0.0, 1.0, 0.5], np.float32)
    losses = []
    for lib in (keras, kilnet):
        model = _subclassed(lib)
        model(IDS)
        model.compile(optimizer="sgd", loss="mse")
        losses.append(model)
    losses[1].set_weights(losses[0].get_weights())
    values = [m.evaluate(IDS, np.repeat(y[:, None], 4, 1), verbose=0) for m in losses]
    np.testing.assert_allclose(values[1], values[0], rtol=1e-5)


def test_eager_outputs_carry_keras_mask():
    for lib in (kilnet, keras):
        embedding = lib.layers.Embedding(10, 2, mask_zero=True)
        out = embedding(IDS)
        np.testing.assert_array_equal(np.asarray(out._keras_mask), IDS != 0)
    masked = kilnet.layers.Masking()(np.where(IDS[..., None] == 0, 0.0, 1.0).astype("float32"))
    np.testing.assert_array_equal(np.asarray(masked._keras_mask), IDS != 0)
    symbolic = kilnet.layers.Embedding(10, 2, mask_zero=True)(kilnet.Input((None,), dtype="int32"))
    assert symbolic._keras_mask.shape == (None, None)


def _temporal_softmax(lib):
    class TemporalSoftmax(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs, mask=None):
            assert mask is not None   # Keras's guide asserts the mask arrives
            weights = lib.ops.expand_dims(lib.ops.cast(mask, "float32"), -1)
            exp = lib.ops.exp(inputs) * weights
            return exp / lib.ops.sum(exp, axis=1, keepdims=True)

    inputs = lib.Input(shape=(None,), dtype="int32")
    x = lib.layers.Embedding(10, 4, mask_zero=True)(inputs)
    x = lib.layers.Dense(1)(x)
    return lib.Model(inputs, TemporalSoftmax()(x))


def test_a_call_taking_mask_gets_it_in_the_functional_api_as_in_keras():
    theirs, ours = _temporal_softmax(keras), _temporal_softmax(kilnet)
    assert ours.output_shape == theirs.output_shape == (None, None, 1)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours.predict(IDS, verbose=0), np.asarray(theirs(IDS)),
                               rtol=1e-5, atol=1e-7)


def test_keras_form_layers_trace_unknown_lengths_as_keras():
    class Halves(kilnet.layers.Layer):
        def call(self, inputs):
            first, second = kilnet.ops.split(inputs, 2, axis=1)
            return kilnet.ops.concatenate([second, first], axis=-1)

    class Pairs(kilnet.layers.Layer):
        def call(self, inputs, as_pair=False):
            return [inputs, inputs[:, :1]] if as_pair else inputs

    x = kilnet.Input(shape=(None, 3))
    assert Halves()(x).shape == (None, None, 6)
    first, second = Pairs()(x, as_pair=True)   # a keyword option reaches the trace
    assert first.shape == (None, None, 3) and second.shape == (None, 1, 3)
    model = kilnet.Model(x, Halves()(x))
    out = model.predict(np.ones((2, 4, 3), np.float32), verbose=0)
    assert out.shape == (2, 2, 6)


def test_an_eager_embedding_masks_a_python_list_of_ids():
    layer = kilnet.layers.Embedding(5, 2, mask_zero=True)
    out = layer([[1, 0, 2]])
    np.testing.assert_array_equal(out._keras_mask, [[True, False, True]])
