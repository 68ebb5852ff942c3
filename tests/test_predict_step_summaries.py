"""A model's own predict_step (Keras's JAX form) returning outputs whose first axis is not the
batch's samples (a per-batch summary, a (1, k) row, several rows, beside per-sample outputs in
a dict or tuple): predict joins each batch's outputs along their first axis, the last, smaller
batch's at its own size, as Keras's predict concatenates them; predict_on_batch returns the
batch's as they are, a scalar too; predict refuses a scalar, as Keras's fails, with the fix.
"""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402


def summaries(ops, y, kind):
    if kind == "scalar":
        return ops.mean(y)
    if kind == "row":
        return ops.mean(y, axis=0, keepdims=True)
    if kind == "rows":
        return ops.concatenate([ops.mean(y, axis=0, keepdims=True),
                                ops.max(y, axis=0, keepdims=True)], axis=0)
    if kind == "vector":
        return ops.mean(y, axis=1)[:1] + ops.mean(y)
    if kind == "dict":
        return {"summary": ops.mean(y, axis=0, keepdims=True), "per_sample": y}
    if kind == "tuple":
        return ops.mean(y, axis=0, keepdims=True), 2 * y


def summarizer(lib, kind):
    class Summarizer(lib.Model):
        def __init__(self):
            super().__init__(name="summarizer")
            self.dense = lib.layers.Dense(3, kernel_initializer="ones",
                                          bias_initializer="ones", name="dense")

        def call(self, x):
            return self.dense(x)

        def predict_step(self, state, data):
            trainable, non_trainable = state
            x = data[0] if isinstance(data, (tuple, list)) else data
            y, non_trainable = self.stateless_call(trainable, non_trainable, x)
            return summaries(lib.ops, y, kind), non_trainable

    return Summarizer()


X = np.arange(20, dtype="float32").reshape(10, 2)


def assert_same(mine, theirs):
    assert type(mine) is type(theirs)
    if isinstance(theirs, dict):
        assert sorted(mine) == sorted(theirs)
        for key in theirs:
            assert_same(mine[key], theirs[key])
    elif isinstance(theirs, tuple):
        assert len(mine) == len(theirs)
        for m, t in zip(mine, theirs):
            assert_same(m, t)
    else:
        assert np.shape(mine) == np.shape(theirs)
        np.testing.assert_allclose(mine, theirs, rtol=1e-6)


@pytest.mark.parametrize("eagerly", [False, True])
@pytest.mark.parametrize("kind", ["row", "rows", "vector", "dict", "tuple"])
def test_predict_joins_each_batch_output_as_keras(kind, eagerly):
    ours = summarizer(kilnet, kind)
    if eagerly:
        ours.compile(loss="mse", run_eagerly=True)
    mine = ours.predict(X, batch_size=4, verbose=0)   # batches of 4, 4 and 2
    theirs = summarizer(keras, kind).predict(X, batch_size=4, verbose=0)
    assert_same(mine, theirs)


@pytest.mark.parametrize("kind", ["scalar", "row", "dict", "tuple"])
def test_predict_on_batch_returns_the_batch_outputs_as_keras(kind):
    assert_same(summarizer(kilnet, kind).predict_on_batch(X[:4]),
                summarizer(keras, kind).predict_on_batch(X[:4]))


def test_a_scalar_per_batch_is_refused_by_predict_as_by_keras():
    with pytest.raises(ValueError, match="zero-dimensional"):
        summarizer(keras, "scalar").predict(X, batch_size=4, verbose=0)
    with pytest.raises(ValueError, match=r"ops.reshape\(value, \(1,\)\)"):
        summarizer(kilnet, "scalar").predict(X, batch_size=4, verbose=0)


def test_batches_from_a_generator_as_keras():
    def batches():
        for start in range(0, 10, 4):
            yield (X[start:start + 4],)

    mine = summarizer(kilnet, "row").predict(batches(), verbose=0)
    theirs = summarizer(keras, "row").predict(batches(), verbose=0)
    assert_same(mine, theirs)
