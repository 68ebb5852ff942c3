"""Sequence masks through merge and attention layers, as Keras combines and consumes them:
the same functional models built in Keras and kilnet with the same weights give the same
outputs, and the masks reach the pooling after them (padding changes nothing)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402


def padded_ids(n=10, length=6, vocab=9, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (n, length))
    for row, keep in enumerate(rng.integers(1, length + 1, n)):
        ids[row, keep:] = 0
    ids[0, 2:] = 0  # a short row for sure
    return ids


def two_branch_model(lib, merge, second_masked=True):
    """Two embeddings of the same ids (the second masked or not), merged, then pooled over
    the steps the merged mask keeps."""
    inputs = lib.Input(shape=(None,), dtype="int32")
    a = lib.layers.Embedding(9, 4, mask_zero=True)(inputs)
    b = lib.layers.Embedding(9, 4, mask_zero=second_masked)(inputs)
    merged = merge(lib)([a, b])
    pooled = lib.layers.GlobalAveragePooling1D()(merged)
    return lib.Model(inputs, lib.layers.Dense(2)(pooled))


MERGES = {
    "Add": lambda lib: lib.layers.Add(),
    "Subtract": lambda lib: lib.layers.Subtract(),
    "Multiply": lambda lib: lib.layers.Multiply(),
    "Average": lambda lib: lib.layers.Average(),
    "Maximum": lambda lib: lib.layers.Maximum(),
    "Minimum": lambda lib: lib.layers.Minimum(),
    "Concatenate": lambda lib: lib.layers.Concatenate(),
    "Concatenate_steps": lambda lib: lib.layers.Concatenate(axis=1),
}


def same_weights(build):
    ours, theirs = build(kilnet), build(keras)
    ours.build(seed=3)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize("second_masked", [True, False])
@pytest.mark.parametrize("name", sorted(MERGES))
def test_merged_masks_match_keras(name, second_masked):
    ids = padded_ids()
    ours, theirs = same_weights(lambda lib: two_branch_model(lib, MERGES[name], second_masked))
    np.testing.assert_allclose(ours.predict(ids, verbose=0),
                               np.asarray(theirs.predict(ids, verbose=0)),
                               rtol=1e-5, atol=1e-6)


def test_merged_mask_is_the_or_of_both_and_padding_is_ignored():
    ids = padded_ids()
    ours, _ = same_weights(lambda lib: two_branch_model(lib, MERGES["Maximum"]))
    before = ours.predict(ids, verbose=0)
    weights = ours.get_weights()
    for i in (0, 1):  # what the padding id embeds to, in both branches
        weights[i] = weights[i].copy()
        weights[i][0] = 50.0
    ours.set_weights(weights)
    np.testing.assert_allclose(ours.predict(ids, verbose=0), before, rtol=1e-5, atol=1e-6)


def test_dot_ends_the_mask_without_a_warning():
    import warnings

    inputs = kilnet.Input(shape=(None,), dtype="int32")
    a = kilnet.layers.Embedding(9, 4, mask_zero=True)(inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = kilnet.layers.Dot(axes=2)([a, a])
    assert not out.has_mask


def attention_model(lib, kind, causal=False):
    inputs = lib.Input(shape=(None,), dtype="int32")
    h = lib.layers.Embedding(9, 8, mask_zero=True)(inputs)
    if kind == "mha":
        h = lib.layers.MultiHeadAttention(num_heads=2, key_dim=4)(h, h, use_causal_mask=causal)
    elif kind == "mha_cross":  # the value masked, the query not
        q = lib.layers.Embedding(9, 8)(inputs)
        h = lib.layers.MultiHeadAttention(num_heads=2, key_dim=4)(q, h)
    else:
        h = lib.layers.Attention()([h, h], use_causal_mask=causal)
    h = lib.layers.GlobalAveragePooling1D()(h)
    return lib.Model(inputs, lib.layers.Dense(2)(h))


@pytest.mark.parametrize("kind, causal", [("mha", False), ("mha", True), ("mha_cross", False),
                                          ("attention", False), ("attention", True)])
def test_attention_uses_propagated_masks_as_keras(kind, causal):
    ids = padded_ids(seed=1)
    ours, theirs = same_weights(lambda lib: attention_model(lib, kind, causal))
    np.testing.assert_allclose(ours.predict(ids, verbose=0),
                               np.asarray(theirs.predict(ids, verbose=0)),
                               rtol=1e-5, atol=1e-5)


def test_attention_ignores_what_padding_embeds():
    ids = padded_ids(seed=2)
    ours, _ = same_weights(lambda lib: attention_model(lib, "mha"))
    before = ours.predict(ids, verbose=0)
    weights = ours.get_weights()
    weights[0] = weights[0].copy()
    weights[0][0] = 30.0
    ours.set_weights(weights)
    np.testing.assert_allclose(ours.predict(ids, verbose=0), before, rtol=1e-5, atol=1e-5)


def test_mha_takes_explicit_sequence_masks():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 3, 4)).astype(np.float32)
    v = rng.normal(size=(2, 5, 4)).astype(np.float32)
    value_mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]], bool)
    ours = kilnet.layers.MultiHeadAttention(num_heads=1, key_dim=2)
    ours(q, v)
    theirs = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2)
    theirs(q, v)
    theirs.set_weights(ours.get_weights())
    got = ours(q, v, value_mask=value_mask)
    expected = theirs(q, v, value_mask=value_mask)
    np.testing.assert_allclose(got, np.asarray(expected), rtol=1e-5, atol=1e-6)
    by_attention_mask = ours(q, v, attention_mask=np.broadcast_to(value_mask[:, None, :],
                                                                  (2, 3, 5)))
    np.testing.assert_allclose(got, by_attention_mask, rtol=1e-6, atol=1e-7)
