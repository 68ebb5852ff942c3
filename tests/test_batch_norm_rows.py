"""BatchNormalization in training on a tensor whose rows are not the batch's samples:
keras.io's graph network runs it on the node-feature table its model holds, then takes the
batch's nodes. Its statistics are the whole table's at every step (a padded last batch's
sample mask does not apply to those rows), as Keras computes them."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402

TABLE = np.random.default_rng(0).random((50, 4)).astype("float32")


def node_classifier(ns):
    class NodeClassifier(ns.Model):
        def __init__(self):
            super().__init__()
            self.norm = ns.layers.BatchNormalization(
                activity_regularizer=ns.regularizers.L2(0.01))
            self.head = ns.layers.Dense(3)

        def call(self, node_indices, training=None):
            states = self.norm(TABLE, training=training)   # the table's 50 rows
            return self.head(ns.ops.take(states, node_indices, axis=0))

    return NodeClassifier()


def test_statistics_of_a_held_table_are_keras_s_with_a_padded_last_batch():
    nodes = np.arange(20, dtype="int32")
    labels = (nodes % 3).astype("int32")
    models = []
    for ns in (kilnet, keras):
        model = node_classifier(ns)
        model(nodes[:2])
        models.append(model)
    models[0].set_weights(models[1].get_weights())
    histories = []
    for model in models:
        model.compile(optimizer="sgd", loss=kilnet.losses.SparseCategoricalCrossentropy(
            from_logits=True) if model is models[0] else
            keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        # 20 samples in batches of 8: the last batch holds 4 (kilnet pads it)
        histories.append(model.fit(nodes, labels, batch_size=8, epochs=2, shuffle=False,
                                   verbose=0).history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)
    for ours, theirs in zip(models[0].norm.get_weights(), models[1].norm.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    # six steps, each with the whole table's mean
    np.testing.assert_allclose(models[0].norm.moving_mean,
                               TABLE.mean(axis=0) * (1 - 0.99 ** 6), rtol=1e-5)
