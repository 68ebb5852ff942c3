"""AdditiveAttention and RMSNormalization beyond the layer contract: their options against
Keras 3 (masks, causal masks, scores, no scale; axes, float16 inputs), in a model."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402


def normal(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("options, call", [
    ({}, {"return_attention_scores": True}),
    ({"use_scale": False}, {}),
    ({}, {"use_causal_mask": True, "return_attention_scores": True}),
    ({}, {"mask": "both"}),
])
def test_additive_attention_matches_keras(options, call):
    query, value, key = normal((2, 4, 3), 1), normal((2, 4, 5), 2), normal((2, 4, 3), 3)
    if call.get("mask") == "both":
        call = {"mask": [np.array([[1, 1, 0, 1], [1, 0, 1, 1]], bool),
                         np.array([[1, 1, 1, 0], [1, 0, 0, 1]], bool)]}
    ours, theirs = layers.AdditiveAttention(**options), keras.layers.AdditiveAttention(**options)
    ours([query, value, key])
    theirs([query, value, key])
    if theirs.weights:
        theirs.set_weights([normal(w.shape, 9) for w in theirs.get_weights()])
        ours.set_weights(theirs.get_weights())
    got, want = ours([query, value, key], **call), theirs([query, value, key], **call)
    for a, b in zip(got if isinstance(got, tuple) else [got],
                    want if isinstance(want, tuple) else [want]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("axis", [-1, [-2, -1], [1, 2]])
def test_rms_normalization_axes_match_keras(axis):
    x = normal((2, 3, 4))
    ours, theirs = layers.RMSNormalization(axis=axis), keras.layers.RMSNormalization(axis=axis)
    ours(x)
    theirs(x)
    theirs.set_weights([normal(w.shape, 4) for w in theirs.get_weights()])
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=1e-5,
                               atol=1e-6)


def test_rms_normalization_computes_half_precision_in_float32():
    x = (normal((2, 8)) * 300).astype(np.float16)   # x**2 overflows float16
    ours = layers.RMSNormalization(dtype="mixed_float16")
    y = np.asarray(ours(x))
    assert y.dtype == np.float16 and np.isfinite(y).all()
    wide = x.astype(np.float32)
    want = wide / np.sqrt((wide ** 2).mean(axis=-1, keepdims=True) + 1e-6)
    np.testing.assert_allclose(y.astype(np.float32), want, rtol=2e-3, atol=2e-3)


def test_a_seq2seq_decoder_with_additive_attention_trains():
    """Bahdanau attention over encoder states, the shape of keras.io's translation examples."""
    rng = np.random.default_rng(0)
    source = rng.integers(1, 30, size=(64, 7))
    target_in = rng.integers(1, 30, size=(64, 5))
    target_out = np.roll(source[:, :5], 1, axis=1)
    enc_in, dec_in = kilnet.Input(shape=(None,), dtype="int32"), kilnet.Input(
        shape=(None,), dtype="int32")
    encoded = layers.GRU(16, return_sequences=True)(layers.Embedding(30, 8)(enc_in))
    decoded = layers.GRU(16, return_sequences=True)(layers.Embedding(30, 8)(dec_in))
    context = layers.AdditiveAttention()([decoded, encoded])
    logits = layers.Dense(30)(layers.concatenate([decoded, context]))
    model = kilnet.Model([enc_in, dec_in], layers.RMSNormalization()(logits))
    model.compile(optimizer=kilnet.optimizers.Adam(0.01),
                  loss=kilnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.evaluate([source, target_in], target_out, verbose=0)
    model.fit([source, target_in], target_out, epochs=15, batch_size=16, verbose=0)
    assert model.evaluate([source, target_in], target_out, verbose=0) < 0.8 * before


def test_alpha_dropout_is_keras_affine_map_in_training():
    """Each value is either a*x + b (kept) or a*alpha' + b (dropped), Keras's constants; about
    `rate` of them dropped; a noise_shape of (None, 1) drops whole rows."""
    x = normal((2000, 8))
    rate = 0.3
    alpha_p = -1.6732632423543772 * 1.0507009873554805
    a = ((1 - rate) * (1 + rate * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * rate
    y = np.asarray(layers.AlphaDropout(rate)(x, training=True))
    kept = np.isclose(y, a * x + b, atol=1e-6)
    dropped = np.isclose(y, a * alpha_p + b, atol=1e-6)
    assert (kept | dropped).all()
    assert abs(dropped.mean() - rate) < 0.02
    rows = np.asarray(layers.AlphaDropout(rate, noise_shape=(None, 1))(x, training=True))
    row_dropped = np.isclose(rows, a * alpha_p + b, atol=1e-6)
    assert (row_dropped.all(axis=1) | ~row_dropped.any(axis=1)).all()
    np.testing.assert_array_equal(np.asarray(layers.AlphaDropout(rate)(x)), x)   # inference


@pytest.mark.parametrize("equation, output_shape, bias_axes, shape", [
    ("ab,bc->ac", 4, "c", (5,)),
    ("abc,cd->abd", (None, 4), "d", (3, 5)),
    ("abc,cde->abde", (None, 2, 4), "de", (3, 5)),
    ("...b,bc->...c", 4, "c", (3, 2, 5)),
    ("abc...,cd->abd...", (3, 4), "d", (3, 5, 2)),
    ("abcd,cde->abe", (3, 4), None, (3, 5, 2)),
])
def test_einsum_dense_matches_keras(equation, output_shape, bias_axes, shape):
    x = normal((2,) + shape)
    ours = layers.EinsumDense(equation, output_shape, bias_axes=bias_axes, activation="relu")
    theirs = keras.layers.EinsumDense(equation, output_shape, bias_axes=bias_axes,
                                      activation="relu")
    ours(x)
    theirs(x)
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    theirs.set_weights([normal(w.shape, 7 + i) for i, w in enumerate(theirs.get_weights())])
    ours.set_weights(theirs.get_weights())
    got = np.asarray(ours(x))
    np.testing.assert_allclose(got, np.asarray(theirs(x)), rtol=1e-5, atol=1e-6)
    # kilnet's symbolic shape is the output's (Keras's leaves axes None that the input fixes)
    assert ours.sample_output_shape(shape) == got.shape[1:]


def test_einsum_dense_glorot_counts_the_kernels_axes():
    """As Keras: fan_in 8 (the input axis), fan_out 2 * 4 (the output axes)."""
    layer = layers.EinsumDense("abc,cde->abde", output_shape=(None, 200, 40),
                               kernel_initializer=kilnet.initializers.GlorotUniform(seed=0))
    layer(np.ones((1, 3, 80), np.float32))
    limit = np.sqrt(6.0 / (80 + 200 * 40))
    kernel = layer.kernel.numpy()
    assert abs(kernel).max() <= limit and abs(kernel).max() > 0.99 * limit
    with pytest.raises(ValueError, match="equation must look like"):
        layers.EinsumDense("ab->b", 3)
    with pytest.raises(ValueError, match="LoRA"):
        layers.EinsumDense("ab,bc->ac", 3, lora_rank=4)
    with pytest.raises(ValueError, match="bias_axes must be letters of the output"):
        layers.EinsumDense("ab,bc->ac", 3, bias_axes="z")
