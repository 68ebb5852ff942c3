"""The sequence mask a functional model nested in another gives its outputs reaches the outer
model: the layers after it (an LSTM skips the padding steps), and the loss and metrics (reduced
over real steps), as Keras's arrays carry their masks out of the inner model's run (keras.io's
English-to-Spanish Transformer with a decoder sub-model). Checked against Keras from the same
weights."""

import os
import warnings

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402

RNG = np.random.default_rng(3)
IDS = RNG.integers(1, 20, (8, 6)).astype("int32")
IDS[:4, 3:] = 0
IDS[4:, 5:] = 0
LABELS = RNG.integers(0, 3, (8, 6)).astype("int32")


def decoder_sub_model(ns):
    """keras.io's NMT layout: the decoder, a model of its own, called on [tokens, encoded]."""
    tokens, encoded = ns.Input((None,), dtype="int32"), ns.Input((None, 4))
    probs = ns.layers.Dense(3, activation="softmax", name="probs")(
        ns.layers.Embedding(20, 4, mask_zero=True, name="dec_embed")(tokens))
    decoder = ns.Model([tokens, encoded], probs, name="decoder")
    source, target = ns.Input((None,), dtype="int32"), ns.Input((None,), dtype="int32")
    encoded_source = ns.layers.Embedding(20, 4, name="enc_embed")(source)
    return ns.Model([source, target], decoder([target, encoded_source]))


def nested_sequential(ns):
    inner = ns.Sequential([ns.layers.Embedding(20, 4, mask_zero=True, name="embed"),
                           ns.layers.LSTM(3, return_sequences=True, name="lstm")], name="inner")
    ids = ns.Input((None,), dtype="int32")
    return ns.Model(ids, ns.layers.Dense(3, activation="softmax", name="probs")(inner(ids)))


def nested_embedding_then_lstm(ns):
    ids = ns.Input((None,), dtype="int32")
    embedder = ns.Model(ids, ns.layers.Embedding(20, 4, mask_zero=True, name="embed")(ids),
                        name="embedder")
    outer_ids = ns.Input((None,), dtype="int32")
    steps = ns.layers.LSTM(3, return_sequences=True, name="lstm")(embedder(outer_ids))
    return ns.Model(outer_ids, ns.layers.Dense(3, activation="softmax", name="probs")(steps))


def mask_given_in_and_passed_out(ns):
    vectors = ns.Input((None, 4))
    inner = ns.Model(vectors, ns.layers.LSTM(3, return_sequences=True, name="lstm")(vectors),
                     name="inner")
    ids = ns.Input((None,), dtype="int32")
    embedded = ns.layers.Embedding(20, 4, mask_zero=True, name="embed")(ids)
    return ns.Model(ids, ns.layers.Dense(3, activation="softmax", name="probs")(inner(embedded)))


def inputs_for(make):
    return [IDS, IDS[:, ::-1].copy()] if make is decoder_sub_model else IDS


def pair(make):
    keras.backend.clear_session()
    with warnings.catch_warnings():   # a model given a masked input warns in both libraries
        warnings.simplefilter("ignore")
        theirs, ours = make(keras), make(kilnet)
    ours.set_weights(theirs.get_weights())
    for model in (theirs, ours):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    return theirs, ours


MODELS = [decoder_sub_model, nested_sequential, nested_embedding_then_lstm,
          mask_given_in_and_passed_out]


@pytest.mark.parametrize("make", MODELS)
def test_evaluate_counts_only_real_steps_as_keras(make):
    theirs, ours = pair(make)
    expected = theirs.evaluate(inputs_for(make), LABELS, verbose=0, return_dict=True)
    got = ours.evaluate(inputs_for(make), LABELS, verbose=0, return_dict=True)
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=1e-5)
    np.testing.assert_allclose(got["accuracy"], expected["accuracy"], rtol=1e-5)


@pytest.mark.parametrize("make", [decoder_sub_model, nested_sequential])
def test_fit_history_matches_keras(make):
    theirs, ours = pair(make)
    # (training accuracy left out: Keras's JAX fit counts the padding in its training
    # metrics, a difference the README states; its validation metrics do not)
    fit = dict(batch_size=4, epochs=2, shuffle=False, verbose=0,
               validation_data=(inputs_for(make), LABELS))
    expected = theirs.fit(inputs_for(make), LABELS, **fit).history
    got = ours.fit(inputs_for(make), LABELS, **fit).history
    for key in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, err_msg=key)


def test_lstm_after_a_nested_embedding_model_skips_the_padding():
    theirs, ours = pair(nested_embedding_then_lstm)
    np.testing.assert_allclose(ours.predict(IDS, verbose=0), theirs.predict(IDS, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_the_nested_call_output_carries_the_mask():
    model = nested_embedding_then_lstm(kilnet)
    embedder_output = model.get_layer("embedder").output
    assert embedder_output.has_mask
    assert model.get_layer("lstm").input.has_mask
