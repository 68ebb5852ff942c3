"""A Loss class that defines its own `__call__(y_true, y_pred, sample_weight=None)` (keras.io's
supervised-contrastive-learning SupervisedContrastiveLoss returns one number for the batch):
Keras's compile calls `loss(y_true, y_pred, sample_weight)`, so that `__call__` is what trains.
kilnet's compiled steps call it too, and a padded last batch reaches it at its own size, so
the epoch's loss is Keras's (batches weighted by their size). Checked against Keras from the
same weights, with a partial last batch."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.normal(size=(20, 6)).astype("float32")     # batches of 8, 8 and 4
Y = RNG.integers(0, 3, (20, 1))
WEIGHTS = RNG.random(20).astype("float32")


def _batch_loss_class(lib):
    """keras.io's SupervisedContrastiveLoss, its arithmetic written with each library's ops."""
    ops = lib.ops

    class BatchLoss(lib.losses.Loss):
        def __init__(self, temperature=1.0, name=None):
            super().__init__(name=name)
            self.temperature = temperature

        def __call__(self, labels, feature_vectors, sample_weight=None):
            f = lib.utils.normalize(feature_vectors, axis=1, order=2)
            logits = ops.matmul(f, ops.transpose(f)) / self.temperature
            same = ops.cast(ops.equal(ops.expand_dims(ops.squeeze(labels), -1),
                                      ops.squeeze(labels)), "float32")
            same = same / ops.sum(same, 1, keepdims=True)
            return ops.mean(lib.losses.categorical_crossentropy(same, logits, from_logits=True))

    return BatchLoss


def _weighted_loss_class(lib):
    """A __call__ that uses the sample weights itself: a weighted sum over the batch."""
    ops = lib.ops

    class WeightedSum(lib.losses.Loss):
        def __call__(self, y_true, y_pred, sample_weight=None):
            values = ops.sum(ops.square(y_pred - ops.cast(y_true, "float32")), axis=-1)
            if sample_weight is not None:
                values = values * sample_weight
            return ops.sum(values)

    return WeightedSum


def _scaled_crossentropy_class(lib):
    """A built-in loss's subclass whose __call__ scales the built-in's own, reduced as its
    reduction says ("sum" here, which compile refuses for a loss it reduces itself; a softmax
    output: the logits shortcut must not replace what __call__ computes)."""
    class Scaled(lib.losses.SparseCategoricalCrossentropy):
        def __call__(self, y_true, y_pred, sample_weight=None):
            return 2.0 * super().__call__(y_true, y_pred, sample_weight)

    return Scaled


def _model(lib, weights, activation=None):
    model = lib.Sequential([lib.Input((6,)), lib.layers.Dense(3, activation=activation)])
    model.set_weights(weights)
    return model


def _start(activation=None):
    return _model(keras, keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
                  .get_weights(), activation).get_weights()


def _fit_both(make_loss, activation=None, **fit_args):
    start = _start(activation)
    results = []
    for lib in (kilnet, keras):
        model = _model(lib, start, activation)
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss=make_loss(lib))
        history = model.fit(X, Y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                            **fit_args)
        results.append((history.history["loss"], model.get_weights(),
                        model.evaluate(X, Y, batch_size=8, verbose=0)))
    return results


def test_a_batch_loss_from_its_own_call_trains_as_in_keras():
    mine, theirs = _fit_both(lambda lib: _batch_loss_class(lib)(temperature=0.5))
    np.testing.assert_allclose(mine[0], theirs[0], rtol=1e-5)
    for a, b in zip(mine[1], theirs[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mine[2], theirs[2], rtol=1e-5)


def test_its_call_gets_the_sample_weights():
    mine, theirs = _fit_both(lambda lib: _weighted_loss_class(lib)(), sample_weight=WEIGHTS)
    np.testing.assert_allclose(mine[0], theirs[0], rtol=1e-5)
    for a, b in zip(mine[1], theirs[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_built_in_loss_subclass_calling_super_trains_as_in_keras():
    mine, theirs = _fit_both(lambda lib: _scaled_crossentropy_class(lib)(reduction="sum"),
                             activation="softmax")
    np.testing.assert_allclose(mine[0], theirs[0], rtol=1e-5)
    for a, b in zip(mine[1], theirs[1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mine[2], theirs[2], rtol=1e-5)
