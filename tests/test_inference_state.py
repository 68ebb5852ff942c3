"""What a forward pass assigns to a layer's non-trainable variables stays, in predict,
evaluate, predict_on_batch and test_on_batch as in fit and eager calls, as Keras 3 keeps a
predict or test step's non-trainable variables (a running count of yours, a stateful RNN's
states)."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.arange(30, dtype="float32").reshape(10, 3)
Y = np.ones((10, 1), "float32")


def _counting_model(lib):
    class Counter(lib.layers.Layer):
        """Counts its calls and sums the rows it saw."""

        def build(self, input_shape):
            self.count = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                         name="count")
            self.total = self.add_weight(shape=(input_shape[-1],), initializer="zeros",
                                         trainable=False, name="total")

        def call(self, x):
            self.count.assign(self.count + 1.0)
            self.total.assign(self.total + lib.ops.sum(x, axis=0))
            return x

    counter = Counter()
    model = lib.Sequential([lib.Input((3,)), counter, lib.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    return model, counter


def _counts_after_each_job(lib):
    model, counter = _counting_model(lib)
    jobs = [lambda: model.predict(X, batch_size=4, verbose=0),
            lambda: model.evaluate(X, Y, batch_size=4, verbose=0),
            lambda: model.predict_on_batch(X),
            lambda: model.test_on_batch(X, Y),
            lambda: model.fit(X, Y, batch_size=4, epochs=1, verbose=0),
            lambda: model.fit(X, Y, batch_size=4, epochs=1, verbose=0, validation_data=(X, Y)),
            lambda: model(X)]
    seen = []
    for job in jobs:
        job()
        seen.append((float(np.asarray(counter.count)), np.asarray(counter.total).tolist()))
    return seen


def test_every_job_keeps_what_the_forward_pass_assigns_as_keras():
    mine = _counts_after_each_job(kilnet)
    theirs = _counts_after_each_job(keras)
    assert mine == theirs
    # predict alone ran 3 batches (4 + 4 + 2 rows) over the data once
    assert mine[0] == (3.0, X.sum(axis=0).tolist())
