"""Batches whose arrays hold different numbers of rows, for a model without its own step:
keras.io's mpnn-molecular-graphs merges each batch of molecules into one disjoint graph (atom
rows, bond rows, an atom-to-molecule index) whose labels have one row per molecule. Keras's
JAX trainer hands each batch of a PyDataset, a generator or a tf.data dataset to its step as
given; kilnet runs its built-in step on each batch as given too, the loss reducing over the
labels' rows, and predict joining each batch's outputs. Keras 3 on JAX, from the same
weights, is the reference."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.errors import InputError  # noqa: E402

MOLECULES = 4
SOURCES = ["pydataset", "generator", "tf_data"]


def _graph(seed, atoms, bonds, weighted=False):
    """One disjoint-graph batch: ({atoms, bonds, pairs, molecule}, labels[, weights]), the
    atoms split evenly over MOLECULES molecules."""
    r = np.random.default_rng(seed)
    x = {"atoms": r.random((atoms, 3)).astype("float32"),
         "bonds": r.random((bonds, 2)).astype("float32"),
         "pairs": r.integers(0, atoms, (bonds, 2)).astype("int32"),
         "molecule": np.repeat(np.arange(MOLECULES), atoms // MOLECULES).astype("int32")}
    y = r.integers(0, 2, (MOLECULES, 1)).astype("float32")
    if weighted:
        return x, y, np.linspace(0.5, 2.0, MOLECULES).astype("float32")
    return x, y


def _source(lib, kind, batches):
    """The batches as a PyDataset, a generator or a tf.data dataset."""
    if kind == "pydataset":
        class Graphs(lib.utils.PyDataset):
            def __len__(self):
                return len(batches)

            def __getitem__(self, index):
                return batches[index]
        return Graphs()
    if kind == "generator":
        return (batch for batch in batches)
    tf = pytest.importorskip("tensorflow")
    dataset = tf.data.Dataset.from_tensors(batches[0])
    for batch in batches[1:]:
        dataset = dataset.concatenate(tf.data.Dataset.from_tensors(batch))
    return dataset


def _pool_model(lib):
    """The sweep's repro: atoms summed per molecule plus the bonds' mean, then a sigmoid."""
    class Pool(lib.layers.Layer):
        def call(self, inputs):
            atoms, bonds, molecule = inputs
            return (lib.ops.segment_sum(atoms, molecule, num_segments=MOLECULES)
                    + lib.ops.mean(bonds))

    atoms = lib.Input((3,), name="atoms")
    bonds = lib.Input((2,), name="bonds")
    molecule = lib.Input((), dtype="int32", name="molecule")
    pooled = Pool(name="pool")([atoms, bonds, molecule])
    out = lib.layers.Dense(1, activation="sigmoid", name="out")(pooled)
    return lib.Model([atoms, bonds, molecule], out, name="pool_model")


def _message_passing_model(lib):
    """An MPNN in small: each bond's message (its neighbour's atom state times a projection
    of the bond) summed onto its atom with ops.segment_sum, then the atoms summed per
    molecule."""
    class Messages(lib.layers.Layer):
        def call(self, inputs):
            atoms, bonds, pairs = inputs
            neighbours = lib.ops.take(atoms, pairs[:, 1], axis=0)
            return atoms + lib.ops.segment_sum(neighbours * bonds, pairs[:, 0],
                                               num_segments=atoms.shape[0])

    class Readout(lib.layers.Layer):
        def call(self, inputs):
            atoms, molecule = inputs
            return lib.ops.segment_sum(atoms, molecule, num_segments=MOLECULES)

    L = lib.layers
    atoms = lib.Input((3,), name="atoms")
    bonds = lib.Input((2,), name="bonds")
    pairs = lib.Input((2,), dtype="int32", name="pairs")
    molecule = lib.Input((), dtype="int32", name="molecule")
    state = L.Dense(6, activation="tanh", name="embed")(atoms)
    edges = L.Dense(6, name="edge")(bonds)
    state = Messages(name="messages")([state, edges, pairs])
    pooled = Readout(name="readout")([state, molecule])
    out = L.Dense(1, activation="sigmoid", name="out")(pooled)
    return lib.Model([atoms, bonds, pairs, molecule], out, name="mpnn")


def _without(batches, *names):
    """The batches with the x entries `names` left out (the pool model reads three)."""
    return [({k: v for k, v in batch[0].items() if k not in names},) + tuple(batch[1:])
            for batch in batches]


def _run(lib, make_model, kind, batches, weights, epochs=2):
    """(fit history, evaluate's results, predict's outputs) of a model from `weights`."""
    if lib is keras:
        keras.backend.clear_session()
    model = make_model(lib)
    model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.SGD(0.1), loss="binary_crossentropy",
                  metrics=["mae"])
    history = model.fit(_source(lib, kind, batches), epochs=epochs, verbose=0, shuffle=False,
                        **({"steps_per_epoch": len(batches) // epochs}
                           if kind == "generator" else {}))
    results = model.evaluate(_source(lib, kind, batches), verbose=0)
    predicted = model.predict(_source(lib, kind, batches), verbose=0)
    return history.history, results, np.asarray(predicted)


def _weights(make_model):
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    return make_model(keras).get_weights()


def _assert_same(got, want):
    got_history, got_results, got_predicted = got
    want_history, want_results, want_predicted = want
    assert sorted(got_history) == sorted(want_history) == ["loss", "mae"]
    for name in want_history:
        np.testing.assert_allclose(got_history[name], want_history[name], atol=1e-6)
    np.testing.assert_allclose(got_results, want_results, atol=1e-6)
    assert got_predicted.shape == want_predicted.shape
    np.testing.assert_allclose(got_predicted, want_predicted, atol=1e-6)


@pytest.mark.parametrize("kind", SOURCES)
def test_disjoint_graph_batches_train_as_keras(kind):
    """Batches of 24 atom rows, 40 bond rows and a 24-row index, with labels of 4 molecules:
    fit's history, evaluate and predict (each batch's 4 rows, joined) equal Keras's."""
    batches = _without([_graph(seed, 24, 40) for seed in range(2)], "pairs")
    if kind == "generator":   # one generator per call: fit reads both epochs from it
        batches = batches * 2
    weights = _weights(_pool_model)
    got = _run(kilnet, _pool_model, kind, batches, weights)
    want = _run(keras, _pool_model, kind, batches, weights)
    _assert_same(got, want)
    assert got[2].shape == (MOLECULES * len(batches), 1)


@pytest.mark.parametrize("kind", SOURCES)
def test_message_passing_over_graphs_of_changing_sizes_trains_as_keras(kind):
    """An MPNN-like model on batches of 12, 8 and 12 atoms (24, 10 and 24 bonds) with
    sample weights per molecule: each set of shapes runs as given, and fit, evaluate and
    predict equal Keras's."""
    batches = [_graph(10, 12, 24, True), _graph(11, 8, 10, True), _graph(12, 12, 24, True)]
    if kind == "generator":
        batches = batches * 2
    weights = _weights(_message_passing_model)
    got = _run(kilnet, _message_passing_model, kind, batches, weights)
    want = _run(keras, _message_passing_model, kind, batches, weights)
    _assert_same(got, want)


def _pool_batches(labels=MOLECULES, weights=None):
    x, y = _without([_graph(0, 24, 40)], "pairs")[0]
    y = np.zeros((labels, 1), "float32")
    while True:
        yield (x, y) if weights is None else (x, y, weights)


def _compiled_pool_model():
    model = _pool_model(kilnet)
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    return model


def test_outputs_of_other_rows_than_the_labels_are_refused():
    """Labels of 3 rows for a model that gives one row per each of its 4 molecules: the
    error names both and the fix."""
    with pytest.raises(InputError, match=r"output 0 of shape \(4, 1\) for labels of 3 rows"):
        _compiled_pool_model().fit(_pool_batches(labels=3), steps_per_epoch=1, verbose=0)


def test_sample_weights_must_match_the_labels_rows():
    """Sample weights of the atoms' 24 rows for labels of 4 molecules are refused."""
    with pytest.raises(InputError, match="sample_weight"):
        _compiled_pool_model().fit(_pool_batches(weights=np.ones(24, "float32")),
                                   steps_per_epoch=1, verbose=0)


def test_arrays_in_memory_still_need_one_length():
    """fit(x=dict of arrays of different lengths) is refused, as Keras refuses it."""
    x, y = _without([_graph(0, 24, 40)], "pairs")[0]
    with pytest.raises(InputError):
        _compiled_pool_model().fit(x, y, verbose=0)
