"""fit(x, y, steps_per_epoch=N) on arrays, as Keras reads them: each epoch takes N batches of
the current pass over the data, an epoch that reaches the pass's end stops there with Keras's
warning, and the next one starts a new pass: the same batches, losses and weights as Keras's."""

from __future__ import annotations

import os
import warnings

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 5)).astype(np.float32)   # 7 batches of 32, the last of 8
Y = (X @ RNG.normal(size=(5, 1)) + 0.1).astype(np.float32)


def run(lib, model):
    class Batches(lib.callbacks.Callback):
        seen = []

        def on_train_batch_end(self, batch, logs=None):
            Batches.seen.append(batch)

    model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse", steps_per_execution=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(X, Y, batch_size=32, steps_per_epoch=3, epochs=4, shuffle=False,
                            verbose=0, callbacks=[Batches()])
    ran_out = [w for w in caught if "ran out of data" in str(w.message)]
    return history.history["loss"], model.get_weights(), Batches.seen, len(ran_out)


def test_steps_per_epoch_on_arrays_walks_the_pass_as_keras():
    ours = kilnet.Sequential([kilnet.Input((5,)), kilnet.layers.Dense(1)])
    theirs = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    theirs.set_weights(ours.get_weights())
    our_loss, our_weights, our_batches, our_warnings = run(kilnet, ours)
    their_loss, their_weights, their_batches, their_warnings = run(keras, theirs)
    # epochs of 3, 3, 1 (the pass ends) and 3 batches (a new pass)
    assert our_batches == their_batches == [0, 1, 2, 0, 1, 2, 0, 0, 1, 2]
    assert our_warnings == their_warnings == 1
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)
    for a, b in zip(our_weights, their_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
