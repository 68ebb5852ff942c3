"""Your callbacks' training batch hooks fire for every batch, as Keras's (the training guide's
LossHistory got one call per epoch: kilnet runs an epoch's batches as compiled chunks).
An end-only callback is called for each batch after its chunk, with that batch's logs; one
that stops training in such a hook stops after that batch; one with a begin hook gets chunks
of one batch, so what it changes applies to the next batch. Compared with Keras itself, from
the same weights."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
Y = X.sum(axis=1, keepdims=True)


def _models():
    found = {}
    for lib in (keras, kilnet):
        inputs = lib.Input((4,))
        found[lib] = lib.Model(inputs, lib.layers.Dense(1)(inputs))
    found[kilnet].set_weights(found[keras].get_weights())
    return found


def _fit(lib, model, callback, epochs=2):
    model.compile(optimizer=lib.optimizers.SGD(0.01), loss="mse", metrics=["mae"])
    return model.fit(X, Y, batch_size=4, epochs=epochs, callbacks=[callback], shuffle=False,
                     verbose=0)


def _recorder(lib, stop_at=None):
    class LossHistory(lib.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seen = []

        def on_batch_end(self, batch, logs=None):
            self.seen.append((batch, logs["loss"], logs["mae"]))
            if stop_at is not None and len(self.seen) == stop_at:
                self.model.stop_training = True

    return LossHistory()


def test_every_batch_end_is_reported_with_its_logs():
    seen = {}
    for lib, model in _models().items():
        recorder = _recorder(lib)
        _fit(lib, model, recorder)
        seen[lib] = recorder.seen
    assert [b for b, _, _ in seen[kilnet]] == [b for b, _, _ in seen[keras]] == \
        list(range(16)) * 2
    np.testing.assert_allclose([v[1:] for v in seen[kilnet]], [v[1:] for v in seen[keras]],
                               rtol=1e-5)


def test_stopping_in_a_batch_end_hook_stops_after_that_batch():
    found = {}
    for lib, model in _models().items():
        recorder = _recorder(lib, stop_at=5)
        history = _fit(lib, model, recorder)
        found[lib] = (len(recorder.seen), history.history["loss"], model.get_weights())
    assert found[kilnet][0] == found[keras][0] == 5
    np.testing.assert_allclose(found[kilnet][1], found[keras][1], rtol=1e-5)
    for mine, theirs in zip(found[kilnet][2], found[keras][2]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5)


def test_a_begin_hook_acts_before_each_batch():
    """A warm-up written in on_train_batch_begin: the rate it sets is the next batch's."""
    found = {}
    for lib, model in _models().items():
        class WarmUp(lib.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                self.model.optimizer.learning_rate = 0.001 * (batch + 1)

        _fit(lib, model, WarmUp(), epochs=1)
        found[lib] = model.get_weights()
    for mine, theirs in zip(found[kilnet], found[keras]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5)


def test_compile_steps_per_execution_keeps_one_call_per_execution():
    """Keras's own batching of the hooks: steps_per_execution=4 calls them every 4 batches."""
    seen = {}
    for lib, model in _models().items():
        recorder = _recorder(lib)
        model.compile(optimizer="sgd", loss="mse", metrics=["mae"], steps_per_execution=4)
        model.fit(X, Y, batch_size=4, epochs=1, callbacks=[recorder], shuffle=False, verbose=0)
        seen[lib] = [b for b, _, _ in recorder.seen]
    assert seen[kilnet] == seen[keras] == [3, 7, 11, 15]
