"""A subclassed model fitted and evaluated (and trained, tested and run one batch at a
time) on samples of other lengths than it was first built for, as keras.io's NER example
feeds its tagger one padded batch length at a time: Keras traces its call again; kilnet
makes those axes of any length, keeping the weights and the training state."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402


def tagger(lib):
    class Tagger(lib.Model):
        def __init__(self):
            super().__init__()
            self.embedding = lib.layers.Embedding(20, 8)
            self.hidden = lib.layers.Dense(8, activation="relu")
            self.tags = lib.layers.Dense(4)

        def call(self, tokens):
            return self.tags(self.hidden(self.embedding(tokens)))

    return Tagger()


def sentences(length, seed, n=16):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 20, (n, length)).astype("int32")
    return tokens, (tokens % 4).astype("int32")   # each token's tag: learnable


def _twins(make, sample):
    """`make(lib)` for kilnet and for Keras, each built by a call on `sample`, Keras's given
    kilnet's weights, both compiled alike."""
    models = []
    for lib in (kilnet, keras):
        model = make(lib)
        model(sample)
        if models:
            model.set_weights(models[0].get_weights())
        model.compile(optimizer=lib.optimizers.SGD(0.5), loss=lib.losses.
                      SparseCategoricalCrossentropy(from_logits=True))
        models.append(model)
    return models


def test_batches_of_each_length_train_as_keras_from_the_same_weights():
    runs = []
    for model in _twins(tagger, sentences(19, 0)[0][:1]):   # built on the first length
        losses = []
        for length, seed in ((19, 0), (17, 1), (19, 2), (11, 3)):
            history = model.fit(*sentences(length, seed), batch_size=8, shuffle=False,
                                verbose=0)
            losses += history.history["loss"]
        runs.append((losses, model.evaluate(*sentences(13, 4), verbose=0),
                     model.predict(sentences(8, 5)[0], verbose=0)))
    (ours, our_eval, our_pred), (theirs, their_eval, their_pred) = runs
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert ours[-1] < ours[0]
    np.testing.assert_allclose(our_eval, their_eval, rtol=1e-5)
    np.testing.assert_allclose(our_pred, their_pred, rtol=1e-5, atol=1e-6)


def test_the_axes_become_of_any_length_and_nothing_is_redrawn():
    model = tagger(kilnet)
    tokens, tags = sentences(19, 0)
    model.compile(optimizer="adam", loss=kilnet.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    model.fit(tokens, tags, verbose=0)
    before = model.predict(tokens, verbose=0)
    iterations = int(model.optimizer.iterations)
    model.evaluate(*sentences(17, 1), verbose=0)
    assert model.build_shape == (None,) and model.output_shape == (None, None, 4)
    np.testing.assert_array_equal(model.predict(tokens, verbose=0), before)
    model.fit(*sentences(17, 1), verbose=0)
    assert int(model.optimizer.iterations) == iterations + 1   # the optimizer state went on
    with pytest.raises(kilnet.errors.InputError, match="samples of shape"):
        model.fit(np.ones((4, 3, 2), "int32"), np.ones((4, 3, 2), "int32"), verbose=0)


def recurrent_tagger(lib):
    class RecurrentTagger(lib.Model):
        def __init__(self):
            super().__init__()
            self.embedding = lib.layers.Embedding(20, 8)
            self.gru = lib.layers.GRU(6, return_sequences=True)
            self.tags = lib.layers.Dense(4)

        def call(self, tokens):
            return self.tags(self.gru(self.embedding(tokens)))

    return RecurrentTagger()


def test_the_on_batch_calls_take_other_lengths_as_keras_from_the_same_weights():
    """train_on_batch / test_on_batch / predict_on_batch go through fit's, evaluate's and
    predict's checks, so a batch of another length is taken as fit takes it: the losses and
    outputs equal Keras's, which traces its call again."""
    runs = []
    for model in _twins(recurrent_tagger, sentences(5, 0)[0][:1]):   # built for length 5
        losses = [model.train_on_batch(*sentences(length, seed))
                  for length, seed in ((5, 0), (7, 1), (5, 2))]
        runs.append((losses, model.test_on_batch(*sentences(9, 3)),
                     model.predict_on_batch(sentences(6, 4)[0])))
    (ours, our_test, our_pred), (theirs, their_test, their_pred) = runs
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    np.testing.assert_allclose(our_test, their_test, rtol=1e-5)
    assert our_pred.shape == (16, 6, 4)
    np.testing.assert_allclose(our_pred, their_pred, rtol=1e-5, atol=1e-6)


def translator(lib):
    """A subclassed model of two inputs, an encoder's and a decoder's token sequences, of
    their own lengths (keras.io's sequence-to-sequence examples feed them so)."""
    class Translator(lib.Model):
        def __init__(self):
            super().__init__()
            self.source = lib.layers.Embedding(20, 6)
            self.target = lib.layers.Embedding(20, 6)
            self.encoder = lib.layers.GRU(6)
            self.tags = lib.layers.Dense(4)

        def call(self, inputs):
            source, target = inputs
            summary = self.encoder(self.source(source))
            return self.tags(self.target(target) + lib.ops.expand_dims(summary, 1))

    return Translator()


def pairs(source_length, target_length, seed, n=16):
    rng = np.random.default_rng(seed)
    source = rng.integers(0, 20, (n, source_length)).astype("int32")
    target = rng.integers(0, 20, (n, target_length)).astype("int32")
    return [source, target], (target % 4).astype("int32")


def test_a_model_of_two_inputs_takes_other_lengths_of_each_as_keras():
    runs = []
    for model in _twins(translator, pairs(7, 5, 0)[0]):   # built for lengths 7 and 5
        losses = []
        for lengths, seed in (((7, 5), 0), ((9, 5), 1), ((7, 3), 2), ((4, 6), 3)):
            losses += model.fit(*pairs(*lengths, seed), batch_size=8, shuffle=False,
                                verbose=0).history["loss"]
        runs.append((losses, model.evaluate(*pairs(5, 8, 4), verbose=0),
                     model.predict(pairs(6, 2, 5)[0], verbose=0)))
    (ours, our_eval, our_pred), (theirs, their_eval, their_pred) = runs
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    np.testing.assert_allclose(our_eval, their_eval, rtol=1e-5)
    assert our_pred.shape == (16, 2, 4)
    np.testing.assert_allclose(our_pred, their_pred, rtol=1e-5, atol=1e-6)
