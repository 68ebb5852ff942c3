"""A model that calls itself inside its own call(), keras.io's graph attention network: called
on node indices, the model runs itself on [node features, integer edges] and picks the
indices' rows. Keras's __call__ runs call() again on the same weights; kilnet does the same,
in the scope already open (building nothing anew, the edges staying integers), and its
training gives Keras's numbers from the same weights."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _training import sgd_mse_losses  # noqa: E402

FEATURES = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
EDGES = np.array([[0, 1], [2, 3], [4, 0], [5, 2], [1, 5]], "int64")   # (target, source)


def graph_model(ns):
    """The GAT pattern in a few lines, on the library `ns` (kilnet or keras)."""
    ops = ns.ops

    class Neighbours(ns.layers.Layer):
        def call(self, inputs):
            states, edges = inputs
            sources = ops.take(states, edges[:, 1], axis=0)
            return ops.segment_sum(sources, edges[:, 0], num_segments=FEATURES.shape[0])

    class GraphModel(ns.Model):
        def __init__(self):
            super().__init__()
            self.dense = ns.layers.Dense(4, activation="tanh")
            self.neighbours = Neighbours()
            self.head = ns.layers.Dense(2)

        def call(self, inputs):
            if not isinstance(inputs, (list, tuple)):   # node indices
                return ops.take(self([FEATURES, EDGES]), inputs, axis=0)
            states, edges = inputs
            return self.head(self.neighbours([self.dense(states), edges]))

    return GraphModel()


def twins():
    ours, theirs = graph_model(kilnet), graph_model(keras)
    nodes = np.array([0, 1, 2, 3], "int32")
    theirs(nodes)
    ours(nodes)
    ours.set_weights(theirs.get_weights())
    return ours, theirs


def test_a_model_calling_itself_predicts_as_keras():
    ours, theirs = twins()
    assert len(ours.weights) == len(theirs.weights) == 4   # no second set of weights
    nodes = np.array([5, 0, 3], "int32")
    np.testing.assert_allclose(ours.predict(nodes, verbose=0),
                               np.asarray(theirs.predict(nodes, verbose=0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours([FEATURES, EDGES]), np.asarray(theirs([FEATURES, EDGES])),
                               rtol=1e-5, atol=1e-6)


def test_a_model_calling_itself_trains_as_keras():
    ours, theirs = twins()
    nodes = np.arange(6, dtype="int32")
    targets = np.random.default_rng(1).normal(size=(6, 2)).astype("float32")
    our_losses, their_losses = sgd_mse_losses([ours, theirs], nodes, targets, batch_size=2,
                                              epochs=3)
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-5)
    assert our_losses[-1] < our_losses[0]


def test_a_model_calling_itself_builds_in_fit():
    """fit builds the model by tracing its call on the indices, the self-call inside it on
    the integer edges (this failed with "indices must have an integer type")."""
    model = graph_model(kilnet)
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(np.array([0, 2, 4, 5]), np.zeros((4, 2), "float32"), batch_size=2,
                        epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.count_params() == 3 * 4 + 4 + 4 * 2 + 2
