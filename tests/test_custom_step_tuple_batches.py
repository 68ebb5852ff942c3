"""A model with its own train_step / test_step / predict_step (Keras's JAX form) fed batches
that are tuples of the model's inputs with no targets: keras.io's siamese_network yields
(anchor, positive, negative) and its steps pass the whole batch to a 3-input network.
Keras's JAX trainer hands a source's batch to an overridden step as it is (only its default
steps read it as (x, y, sample_weight)); so does kilnet. Keras 3 on JAX, from the same
weights, is the reference."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import warnings  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.errors import InputError  # noqa: E402
from _keras_twins import OwnSteps  # noqa: E402

FEATURES = 5


def _triplets(n, seed):
    rng = np.random.default_rng(seed)
    return tuple(rng.random((n, FEATURES), dtype="float32") for _ in range(3))


TRAIN, VAL = _triplets(24, 0), _triplets(16, 1)


def _siamese(lib):
    """siamese_network's shape: an embedding net shared by three named inputs, a distance
    layer returning (ap, an), and a subclassed model whose steps compute the triplet loss
    from the whole batch."""
    class Distance(lib.layers.Layer):
        def call(self, anchor, positive, negative):
            return (lib.ops.sum((anchor - positive) ** 2, -1),
                    lib.ops.sum((anchor - negative) ** 2, -1))

    # no biases: they cancel in the distances, and Adam would scale their rounding noise
    embedding = lib.Sequential([lib.Input((FEATURES,)),
                                lib.layers.Dense(4, use_bias=False, name="emb_1"),
                                lib.layers.Dense(3, use_bias=False, name="emb_2")],
                               name="embedding")
    inputs = [lib.Input((FEATURES,), name=n) for n in ("anchor", "positive", "negative")]
    network = lib.Model(inputs, Distance(name="distance")(*[embedding(t) for t in inputs]),
                        name="siamese_network")

    class Siamese(OwnSteps, lib.Model):
        def __init__(self):
            super().__init__()
            self.network = network
            self.tracker = lib.metrics.Mean(name="loss")
            self.batch_types = []

        def call(self, inputs):
            return self.network(inputs)

        @property
        def metrics(self):
            return [self.tracker]

        def step_loss(self, tv, ntv, data, step):
            self.batch_types.append(type(data).__name__)   # at trace time
            (ap, an), ntv = self.stateless_call(tv, ntv, data)
            return lib.ops.mean(lib.ops.maximum(ap - an + 0.5, 0.0)), ntv

        def predict_step(self, state, data):
            tv, ntv = state
            return self.stateless_call(tv, ntv, data)

    return Siamese()


def _pydataset(lib, data, size, kind=tuple):
    """A PyDataset (lib's) of `data`'s triplets, `size` samples each, in order."""
    class Triplets(lib.utils.PyDataset):
        def __len__(self):
            return len(data[0]) // size

        def __getitem__(self, i):
            return kind(a[i * size:(i + 1) * size] for a in data)
    return Triplets()


def _generator(data, size):
    for i in range(len(data[0]) // size):
        yield tuple(a[i * size:(i + 1) * size] for a in data)


def _built(lib, weights=None):
    model = _siamese(lib)
    model(tuple(a[:1] for a in TRAIN))   # Keras's JAX fit cannot build it from the batch
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.Adam(0.05))
    return model


def _both(run):
    """run(lib, model) on Keras, then on kilnet from Keras's weights:
    ((result, weights, batch types the steps saw), the same for kilnet)."""
    reference = _built(keras)
    weights = reference.get_weights()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = run(keras, reference)
    expected = (expected, reference.get_weights(), sorted(set(reference.batch_types)))
    model = _built(kilnet, weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = run(kilnet, model)
    return expected, (got, model.get_weights(), sorted(set(model.batch_types)))


def _assert_same(expected, got, atol=1e-5):
    (want, want_w, want_types), (have, have_w, have_types) = expected, got
    assert have_types == want_types
    if isinstance(want, dict):
        assert sorted(want) == sorted(have)
        for key in want:
            np.testing.assert_allclose(have[key], want[key], atol=atol, err_msg=key)
    else:
        jax.tree.map(lambda h, w: np.testing.assert_allclose(np.asarray(h), np.asarray(w),
                                                             atol=atol), have, want)
    assert len(have_w) == len(want_w)
    for a, b in zip(have_w, want_w):
        np.testing.assert_allclose(a, b, atol=atol)


def test_fit_on_a_pydataset_of_triplets_with_triplet_validation_batches():
    def run(lib, model):
        return model.fit(_pydataset(lib, TRAIN, 8), epochs=3, shuffle=False, verbose=0,
                         validation_data=_pydataset(lib, VAL, 8)).history
    expected, got = _both(run)
    assert len(got[0]["loss"]) == 3 and len(got[0]["val_loss"]) == 3
    assert got[2] == ["tuple"]   # each step got the batch itself, (anchor, positive, negative)
    _assert_same(expected, got)


def test_fit_and_evaluate_on_generators_of_triplets():
    def run(lib, model):
        history = model.fit(_generator(TRAIN, 8), steps_per_epoch=3, epochs=1, verbose=0,
                            validation_data=_generator(VAL, 8), validation_steps=2).history
        return [history["loss"][0], history["val_loss"][0],
                model.evaluate(_generator(VAL, 8), steps=2, verbose=0)]
    _assert_same(*_both(run))


def test_a_list_batch_reaches_the_step_as_a_tuple_as_in_keras():
    def run(lib, model):
        history = model.fit(_pydataset(lib, TRAIN, 8, list), shuffle=False, verbose=0).history
        return [history["loss"][0], model.evaluate(_pydataset(lib, VAL, 8, list), verbose=0)]
    expected, got = _both(run)
    assert got[2] == ["tuple"]
    _assert_same(expected, got)


def test_fit_and_evaluate_on_triplet_arrays():
    """fit(x=(a, p, n)) hands the step ((a, p, n),), as Keras's; the network's call reads
    that nesting as its three inputs, as Keras's functional call does (with a warning)."""
    def run(lib, model):
        history = model.fit(TRAIN, batch_size=8, epochs=2, shuffle=False, verbose=0).history
        return [history["loss"], model.evaluate(VAL, batch_size=8, verbose=0)]
    _assert_same(*_both(run))


def test_predict_with_its_own_predict_step_on_triplets():
    def run(lib, model):
        return [model.predict(_pydataset(lib, VAL, 8), verbose=0),
                model.predict(VAL, batch_size=8, verbose=0)]
    (want, *want_rest), (have, *have_rest) = _both(run)
    assert [np.shape(a) for a in have[0]] == [(16,), (16,)]
    # the distances come back as a list, Keras's as the tuple the layer returned (another
    # difference, of the output container, not of the batch): compared leaf by leaf
    _assert_same((jax.tree.leaves(want), *want_rest), (jax.tree.leaves(have), *have_rest))


def test_a_nested_call_warns_as_keras():
    model = _built(kilnet)
    with pytest.warns(UserWarning, match="structure of the inputs"):
        distances = model.network((tuple(a[:2] for a in TRAIN),))
    np.testing.assert_allclose(np.asarray(distances[0]),
                               np.asarray(model.network([a[:2] for a in TRAIN])[0]))


def test_a_triplet_batch_is_checked_for_non_finite_values():
    model = _built(kilnet)
    bad = [a.copy() for a in TRAIN]
    bad[1][3, 1] = np.nan
    with pytest.raises(Exception, match=r"batch\[1\] \(batch 0\)"):
        model.fit(_pydataset(kilnet, bad, 8), shuffle=False, verbose=0)


def test_without_its_own_steps_a_tuple_batch_is_x_y_sample_weight():
    inputs = [kilnet.Input((FEATURES,), name=n) for n in ("a", "b", "c")]
    model = kilnet.Model(inputs, kilnet.layers.Dense(1)(kilnet.layers.Concatenate()(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(InputError, match=r"3 inputs \['a', 'b', 'c'\]; x \(batch 0\)"):
        model.fit(_pydataset(kilnet, TRAIN, 8), verbose=0)


def test_run_eagerly_hands_the_step_the_same_batches():
    def run(lib, model):
        if lib is kilnet:   # each step as plain Python; Keras's compiled run is the reference
            model.compile(optimizer=kilnet.optimizers.Adam(0.05), run_eagerly=True)
        history = model.fit(_pydataset(lib, TRAIN, 8), epochs=2, shuffle=False, verbose=0,
                            validation_data=_pydataset(lib, VAL, 8)).history
        return [history["loss"], history["val_loss"]]
    _assert_same(*_both(run))
