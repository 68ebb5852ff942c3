"""Keras's sequence masks: Embedding(mask_zero=True) and Masking make them, layers that support
masking pass them on, GlobalAveragePooling1D averages the real steps only; compared with Keras."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402


def padded_ids(n=12, length=7, vocab=9, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, (n, length))
    for row, keep in enumerate(rng.integers(1, length + 1, n)):
        ids[row, keep:] = 0  # trailing padding
    return ids


def text_model(lib, mask_zero=True):
    inputs = lib.Input(shape=(None,), dtype="int32")
    h = lib.layers.Embedding(9, 4, mask_zero=mask_zero)(inputs)
    h = lib.layers.Dense(5, activation="relu")(h)        # passes the mask on
    h = lib.layers.GlobalAveragePooling1D()(h)           # averages unmasked steps
    return lib.Model(inputs, lib.layers.Dense(1, activation="sigmoid")(h))


def test_masked_mean_matches_keras_and_ignores_padding():
    ids = padded_ids()
    ours = text_model(kilnet)
    ours.build(seed=0)
    theirs = text_model(keras)
    theirs.set_weights(ours.get_weights())
    expected = np.asarray(theirs.predict(ids, verbose=0))
    np.testing.assert_allclose(ours.predict(ids, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # Changing what the padding positions would embed changes nothing.
    emb, k1, b1, k2, b2 = ours.get_weights()
    emb2 = emb.copy()
    emb2[0] = 100.0
    ours.set_weights([emb2, k1, b1, k2, b2])
    np.testing.assert_allclose(ours.predict(ids, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # Without the mask, the padding counts: the outputs differ.
    plain = text_model(kilnet, mask_zero=False)
    plain.build(seed=0)
    plain.set_weights([emb2, k1, b1, k2, b2])
    assert not np.allclose(plain.predict(ids, verbose=0), expected, atol=1e-4)


def test_masked_text_classifier_trains_and_round_trips(tmp_path):
    ids = padded_ids(n=64, seed=1)
    y = (ids == 3).any(axis=1).astype(np.float32)
    model = text_model(kilnet)
    model.compile(optimizer=kilnet.optimizers.Adam(0.02), loss="binary_crossentropy")
    losses = model.fit(ids, y, epochs=15, batch_size=16, verbose=0, seed=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    model.save(tmp_path / "m.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "m.kilnet")
    np.testing.assert_array_equal(loaded.predict(ids, verbose=0), model.predict(ids, verbose=0))


def test_masking_layer_matches_keras():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 6, 3)).astype(np.float32)
    x[:, 4:] = 0.0
    x[1, 2] = 0.0

    def build(lib):
        inputs = lib.Input(shape=(6, 3))
        h = lib.layers.Masking()(inputs)
        h = lib.layers.Dense(4)(h)
        return lib.Model(inputs, lib.layers.GlobalAveragePooling1D()(h))

    ours = build(kilnet)
    ours.build(seed=0)
    theirs = build(keras)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_a_layer_without_masking_support_drops_the_mask_with_a_warning():
    inputs = kilnet.Input(shape=(4,), dtype="int32")
    h = layers.Embedding(9, 2, mask_zero=True)(inputs)
    assert h.has_mask
    with pytest.warns(UserWarning, match="does not support masking"):
        flat = layers.Flatten()(h)
    assert not flat.has_mask


def tagger(lib):
    """Token classification: one label per step, padding steps masked."""
    inputs = lib.Input(shape=(7,), dtype="int32")
    h = lib.layers.Embedding(9, 4, mask_zero=True)(inputs)
    return lib.Model(inputs, lib.layers.Dense(3, activation="softmax")(h))


@pytest.mark.parametrize("batch_size", [12, 5])
def test_losses_and_metrics_of_a_masked_output_match_keras(batch_size):
    ids = padded_ids(n=12, seed=3)
    labels = np.random.default_rng(4).integers(0, 3, ids.shape)
    ours = tagger(kilnet)
    ours.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    ours.build(seed=0)
    theirs = tagger(keras)
    theirs.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                   metrics=["accuracy"])
    theirs.set_weights(ours.get_weights())
    got = ours.evaluate(ids, labels, batch_size=batch_size, verbose=0, return_dict=True)
    expected = theirs.evaluate(ids, labels, batch_size=batch_size, verbose=0,
                               return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    assert got["accuracy"] == pytest.approx(expected["accuracy"], rel=1e-6)
    # By hand: cross-entropy and accuracy over the real steps only (one batch).
    if batch_size == 12:
        probs = ours.predict(ids, verbose=0)
        real = ids != 0
        picked = np.take_along_axis(probs, labels[..., None], axis=-1)[..., 0]
        assert got["loss"] == pytest.approx(-np.log(picked[real]).mean(), rel=1e-5)
        hits = probs.argmax(-1) == labels
        assert got["accuracy"] == pytest.approx(hits[real].mean(), rel=1e-6)


def test_one_training_step_on_a_masked_output_matches_keras():
    ids = padded_ids(n=8, seed=5)
    labels = np.random.default_rng(6).integers(0, 3, ids.shape)
    ours, theirs = tagger(kilnet), tagger(keras)
    ours.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.5),
                 loss="sparse_categorical_crossentropy")
    ours.build(seed=1)
    theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5),
                   loss="sparse_categorical_crossentropy")
    theirs.set_weights(ours.get_weights())
    ours.fit(ids, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    theirs.fit(ids, labels, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
