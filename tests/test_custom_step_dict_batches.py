"""A model with its own train_step / test_step / predict_step (Keras's JAX form) fed batches
that are dicts whose keys are not the model's input names: keras.io's transformer_asr feeds
{"source": ..., "target": ...} and its steps call the model on [source, target[:, :-1]].
Keras hands such a batch to the step as it is, from arrays given as a dict and from sources
of batches alike; so does kilnet. Keras 3 on JAX, from the same weights, is the reference."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.errors import InputError  # noqa: E402
from _keras_twins import OwnSteps  # noqa: E402

LIBS = (kilnet, keras)
TOKENS = 4


def _batches(n, seed):
    """transformer_asr's batches: float features and integer token sequences one longer
    than the decoder's input (the step shifts them), and a weight per token (the mask of
    transformer_asr), an array that is no model input at all."""
    rng = np.random.default_rng(seed)
    return {"source": rng.random((n, 5), dtype="float32"),
            "target": rng.integers(0, TOKENS, (n, 4)).astype("int32"),
            "weight": rng.random((n, 3)).astype("float32") + 0.5}


TRAIN, VAL = _batches(24, 0), _batches(16, 1)


def _seq2seq(lib):
    """A subclassed model whose call takes [source, decoder input], with its own steps
    that unpack the dict batch (transformer_asr's shape)."""
    class Seq2Seq(OwnSteps, lib.Model):
        def __init__(self):
            super().__init__()
            self.encode = lib.layers.Dense(TOKENS)
            self.embed = lib.layers.Embedding(TOKENS, TOKENS)
            self.tracker = lib.metrics.Mean(name="loss")
            self.loss_fn = lib.losses.SparseCategoricalCrossentropy(from_logits=True)

        def call(self, inputs):
            source, decoder_in = inputs
            return self.encode(source)[:, None, :] + self.embed(decoder_in)

        @property
        def metrics(self):
            return [self.tracker]

        def step_loss(self, tv, ntv, batch, step):
            source, target = batch["source"], batch["target"]
            logits, ntv = self.stateless_call(tv, ntv, [source, target[:, :-1]])
            return self.loss_fn(target[:, 1:], logits, sample_weight=batch["weight"]), ntv

        def predict_step(self, state, data):
            tv, ntv = state
            batch = lib.utils.unpack_x_y_sample_weight(data)[0]
            return self.stateless_call(tv, ntv, [batch["source"], batch["target"][:, :-1]])

    return Seq2Seq()


def _dicts(lib, data, size):
    """A PyDataset (lib's) of the dict batches of `data`, `size` samples each, in order."""
    class Dicts(lib.utils.PyDataset):
        def __len__(self):
            return len(data["source"]) // size

        def __getitem__(self, i):
            return {k: v[i * size:(i + 1) * size] for k, v in data.items()}
    return Dicts()


class _Iterable:
    """A tf.data-like iterable: each iteration yields the dict batches again."""
    def __init__(self, data, size):
        dicts = _dicts(kilnet, data, size)
        self.batches = [dicts[i] for i in range(len(dicts))]

    def __iter__(self):
        return iter(self.batches)


def _built(lib, weights=None):
    model = _seq2seq(lib)
    model([np.zeros((1, 5), "float32"), np.zeros((1, 3), "int32")])
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.Adam(0.05))
    return model


def _both(run):
    """run(lib, model) on Keras, then on kilnet from Keras's weights: (result, weights)."""
    reference = _built(keras)
    weights = reference.get_weights()
    expected = (run(keras, reference), reference.get_weights())
    model = _built(kilnet, weights)
    return expected, (run(kilnet, model), model.get_weights())


def _assert_same(expected, got, atol=1e-5):
    (want, want_w), (have, have_w) = expected, got
    if isinstance(want, dict):
        assert sorted(want) == sorted(have)
        for key in want:
            np.testing.assert_allclose(have[key], want[key], atol=atol, err_msg=key)
    else:
        np.testing.assert_allclose(np.asarray(have), np.asarray(want), atol=atol)
    assert len(have_w) == len(want_w)
    for a, b in zip(have_w, want_w):
        np.testing.assert_allclose(a, b, atol=atol)


def test_fit_on_a_dict_of_arrays_hands_the_dict_to_train_step_and_test_step():
    def run(lib, model):
        return model.fit(TRAIN, batch_size=8, epochs=3, shuffle=False, verbose=0,
                         validation_data=VAL).history
    expected, got = _both(run)
    assert len(got[0]["loss"]) == 3 and "val_loss" in got[0]
    _assert_same(expected, got)


def test_fit_on_a_pydataset_of_dicts_with_dict_validation_batches():
    def run(lib, model):
        train, val = _dicts(lib, TRAIN, 8), _dicts(lib, VAL, 8)
        return model.fit(train, epochs=3, shuffle=False, verbose=0,
                         validation_data=val).history
    _assert_same(*_both(run))


def test_fit_on_a_generator_and_an_iterable_of_dicts():
    def run(lib, model):
        if lib is keras:   # Keras's form of the same batches
            return model.fit(_dicts(keras, TRAIN, 8), epochs=2, shuffle=False, verbose=0).history
        history = model.fit(iter(_Iterable(TRAIN, 8).batches), epochs=1, steps_per_epoch=3,
                            verbose=0).history
        later = model.fit(_Iterable(TRAIN, 8), epochs=1, verbose=0).history
        return {"loss": history["loss"] + later["loss"]}
    _assert_same(*_both(run))


def test_evaluate_with_its_own_test_step_on_dict_arrays_and_batches():
    def run(lib, model):
        return [model.evaluate(VAL, batch_size=8, verbose=0),
                model.evaluate(_dicts(lib, VAL, 8), verbose=0)]
    expected, got = _both(run)
    assert np.isfinite(got[0]).all()
    _assert_same(expected, got)


def test_predict_with_its_own_predict_step_on_dict_arrays():
    def run(lib, model):
        return model.predict(VAL, batch_size=8, verbose=0)
    expected, got = _both(run)
    assert np.shape(got[0]) == (16, 3, TOKENS)
    _assert_same(expected, got)


def test_without_its_own_steps_a_dict_must_still_name_the_inputs():
    source, target = kilnet.Input((5,), name="source"), kilnet.Input((3,), name="target")
    joined = kilnet.layers.Concatenate()([source, target])
    model = kilnet.Model([source, target], kilnet.layers.Dense(2)(joined))
    model.compile(optimizer="sgd", loss="mse")
    given = {"features": TRAIN["source"], "target": TRAIN["target"][:, 1:]}
    with pytest.raises(InputError, match=r"missing \['source'\].*keys \['features', "):
        model.fit(given, np.zeros((24, 2), "float32"), verbose=0)
    with pytest.raises(InputError, match=r"missing \['source'\]"):
        model.predict(given, verbose=0)


def test_a_step_batch_is_checked_for_non_finite_values():
    model = _built(kilnet)
    bad = {"source": TRAIN["source"].copy(), "target": TRAIN["target"]}
    bad["source"][3, 1] = np.nan
    with pytest.raises(Exception, match=r"x\['source'\]"):
        model.fit(bad, batch_size=8, verbose=0)


def test_only_the_overridden_step_takes_a_dict_of_its_own_keys():
    """A model with its own test_step but Keras's train_step: evaluate hands the dict to
    the test_step, fit (from a PyDataset too) still needs the input names."""
    class OwnTestStep(kilnet.Model):
        def test_step(self, state, batch):
            tv, ntv, mv = state
            pred, _ = self.stateless_call(tv, ntv, [batch["source"], batch["weight"]])
            return {"loss": kilnet.ops.mean(pred ** 2)}, (tv, ntv, mv)

    source, weight = kilnet.Input((5,), name="source"), kilnet.Input((3,), name="w")
    model = OwnTestStep([source, weight], kilnet.layers.Dense(2)(
        kilnet.layers.Concatenate()([source, weight])))
    model.compile(optimizer="sgd")   # the test_step reads no labels
    given = {"source": VAL["source"], "weight": VAL["weight"]}
    expected = np.mean(model.predict([VAL["source"], VAL["weight"]], verbose=0) ** 2)
    np.testing.assert_allclose(model.evaluate(given, batch_size=16, verbose=0), expected,
                               rtol=1e-5)
    with pytest.raises(InputError, match=r"missing \['w'\]"):
        model.fit(given, np.zeros((16, 2), "float32"), verbose=0)
    with pytest.raises(InputError, match=r"missing \['w'\]"):
        model.fit(iter([(given, np.zeros((16, 2), "float32"))]), steps_per_epoch=1,
                  verbose=0)
