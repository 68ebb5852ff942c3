"""fit() on a model compiled with an optimizer and no loss, and no add_loss: Keras 3 runs it
(keras.io's "Customizing Saving and Serialization" guide fits a model whose compile() of its
own keeps the loss to itself), logging a loss of 0 while the optimizer steps on zero
gradients. kilnet does the same, with Keras's numbers (iterations, weight decay, EMA), and
says in a KerasQuirkWarning that nothing is learned."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import kilnet
from kilnet.errors import KerasQuirkWarning

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)
X = RNG.random((10, 8)).astype("float32")
Y = RNG.random((10, 1)).astype("float32")


def guide_model(lib):
    """The guide's ModelWithCustomCompile: its compile() passes the optimizer only."""
    class ModelWithCustomCompile(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(1, activation="sigmoid")

        def call(self, x):
            return self.dense(x)

        def compile(self, optimizer, loss_fn):
            super().compile(optimizer=optimizer)
            self.model_optimizer = optimizer
            self.loss_fn = loss_fn

    return ModelWithCustomCompile()


def quirks(caught):
    return [str(w.message) for w in caught if issubclass(w.category, KerasQuirkWarning)]


def test_the_guides_fit_runs_as_keras_and_says_nothing_is_learned():
    ours, theirs = guide_model(kilnet), guide_model(keras)
    theirs(X), ours(X)   # built by a first call
    ours.set_weights(theirs.get_weights())
    before = theirs.get_weights()
    for model, lib in ((ours, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.1, momentum=0.9),
                      loss_fn=lib.losses.MeanSquaredError())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = ours.fit(X, Y, batch_size=4, epochs=2, verbose=0)
    expected = theirs.fit(X, Y, batch_size=4, epochs=2, verbose=0)
    assert history.history == expected.history == {"loss": [0.0, 0.0]}
    assert int(ours.optimizer.iterations) == int(theirs.optimizer.iterations) == 6
    for mine, start in zip(ours.get_weights(), before):
        np.testing.assert_array_equal(mine, start)   # zero gradients: nothing moves
    told = quirks(caught)
    assert len(told) == 1, told   # once per compile()
    for part in ("no loss", "nothing is learned", "As in Keras", "super().compile()",
                 "add_loss"):
        assert part in told[0], told[0]


def functional(lib):
    x = lib.Input((8,))
    return lib.Model(x, lib.layers.Dense(1, activation="sigmoid")(x))


@pytest.mark.parametrize("make", [
    lambda lib: lib.optimizers.AdamW(0.1, weight_decay=0.5),
    lambda lib: lib.optimizers.Lion(0.1, weight_decay=0.5),
    lambda lib: lib.optimizers.Adam(0.1, weight_decay=0.2),
    lambda lib: lib.optimizers.Adam(0.1, use_ema=True, ema_momentum=0.5),
], ids=["adamw", "lion", "adam_decay", "adam_ema"])
def test_the_optimizer_steps_on_zero_gradients_as_keras_s(make):
    ours, theirs = functional(kilnet), functional(keras)
    ours.set_weights(theirs.get_weights())
    ours.compile(optimizer=make(kilnet), metrics=["mae"])
    theirs.compile(optimizer=make(keras), metrics=["mae"])
    with pytest.warns(KerasQuirkWarning):
        history = ours.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    expected = theirs.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert history.history["loss"] == [0.0, 0.0]
    np.testing.assert_allclose(history.history["mae"], expected.history["mae"], rtol=1e-5)
    assert int(ours.optimizer.iterations) == int(theirs.optimizer.iterations) == 6
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)


def test_train_on_batch_test_on_batch_and_evaluate_give_zero_as_keras():
    ours, theirs = functional(kilnet), functional(keras)
    ours.compile(optimizer="adam")
    theirs.compile(optimizer="adam")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ours.evaluate(X, Y, verbose=0) == theirs.evaluate(X, Y, verbose=0) == 0.0
        assert quirks(caught) == []   # evaluating trains nothing: no warning
        assert ours.test_on_batch(X, Y) == theirs.test_on_batch(X, Y) == 0.0
        assert ours.train_on_batch(X, Y) == theirs.train_on_batch(X, Y) == 0.0
    assert len(quirks(caught)) == 1
    assert int(ours.optimizer.iterations) == int(theirs.optimizer.iterations) == 1


def test_compile_without_a_loss_for_predict_alone_says_nothing():
    model = functional(kilnet)
    with warnings.catch_warnings():
        warnings.simplefilter("error", KerasQuirkWarning)
        model.compile(optimizer="adam")   # costs the step: no warning there
        assert model.predict(X, verbose=0).shape == (10, 1)


def test_a_model_whose_add_loss_is_its_loss_trains_without_a_warning():
    class Penalized(kilnet.layers.Layer):
        def call(self, x):
            self.add_loss(kilnet.ops.mean(x ** 2))
            return x

    x = kilnet.Input((8,))
    model = kilnet.Model(x, Penalized()(kilnet.layers.Dense(2)(x)))
    model.compile(optimizer="sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("error", KerasQuirkWarning)
        history = model.fit(X, verbose=0, epochs=2)
    assert history.history["loss"][1] < history.history["loss"][0]
