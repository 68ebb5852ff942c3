"""compile(steps_per_execution=N) reaches evaluate, predict and fit's validation as Keras's:
their batch hooks come every N batches (with the batch indices Keras gives), and the results
are those of a run without callbacks."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

RNG = np.random.default_rng(0)
X = RNG.random((300, 6), dtype=np.float32)   # batches of 64: 4 full and one of 44
Y = RNG.random((300, 1), dtype=np.float32)


def hooks_seen(lib, model):
    class Seen(lib.callbacks.Callback):
        calls = []

        def on_test_batch_end(self, batch, logs=None):
            Seen.calls.append(("test", batch))

        def on_predict_batch_end(self, batch, logs=None):
            Seen.calls.append(("predict", batch, len(logs["outputs"])))

    model.compile(optimizer="sgd", loss="mse", steps_per_execution=2)
    result = model.evaluate(X, Y, batch_size=64, verbose=0, callbacks=[Seen()])
    predicted = model.predict(X, batch_size=64, verbose=0, callbacks=[Seen()])
    return Seen.calls, result, predicted


def test_eval_and_predict_hooks_come_every_steps_per_execution_batches():
    ours = kilnet.Sequential([kilnet.Input((6,)), kilnet.layers.Dense(1)])
    theirs = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1)])
    theirs.set_weights(ours.get_weights())
    our_calls, our_result, our_predicted = hooks_seen(kilnet, ours)
    their_calls, their_result, their_predicted = hooks_seen(keras, theirs)
    assert our_calls == [("test", 1), ("test", 3), ("test", 4),
                         ("predict", 1, 128), ("predict", 3, 128), ("predict", 4, 44)]
    # Keras calls the same hooks; for a last, shorter run it names the batch that run would
    # end at with N batches (5 here, one past the last); kilnet names the last batch run
    assert [c[:1] + c[2:] for c in our_calls] == [c[:1] + c[2:] for c in their_calls]
    assert [c[1] for c in their_calls] == [1, 3, 5, 1, 3, 5]
    assert our_result == pytest.approx(their_result, rel=1e-6)
    np.testing.assert_allclose(our_predicted, their_predicted, rtol=1e-6)
    np.testing.assert_allclose(our_predicted, ours.predict(X, batch_size=64, verbose=0))
