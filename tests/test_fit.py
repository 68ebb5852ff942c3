"""fit / evaluate / predict end to end on tiny data: learning, agreement with NumPy and with a
step-by-step JAX reference loop, exact partial batches, bitwise equality whatever the chunk
length, seeded reproducibility, the progress output, History and callbacks.

Every model here has the same shapes (4 features, 70 samples, 3 classes) so the compiled
programs are shared through JAX's compilation cache and the file stays fast.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import kilnet
from kilnet import callbacks, layers, optimizers
from kilnet import fit as fit_lib

N, FEATURES, CLASSES = 70, 4, 3


def rng(seed=0):
    return np.random.default_rng(seed)


def blobs(n=N, seed=0):
    """Three well-separated Gaussian blobs: learnable in a few epochs."""
    r = rng(seed)
    centers = 3.0 * np.eye(CLASSES, FEATURES)
    y = r.integers(0, CLASSES, n)
    x = centers[y] + 0.7 * r.normal(size=(n, FEATURES))
    return x.astype(np.float32), y


def mlp(dropout=0.0):
    stack = [layers.Input(shape=(FEATURES,)), layers.Dense(8, activation="relu")]
    if dropout:
        stack.append(layers.Dropout(dropout))
    stack.append(layers.Dense(CLASSES, activation="softmax"))
    return kilnet.Sequential(stack)


def compiled_mlp(optimizer=None, seed=0, dropout=0.0, **compile_kwargs):
    model = mlp(dropout)
    model.build(seed=seed)
    model.compile(optimizer=optimizer or optimizers.Adam(learning_rate=0.05),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  **compile_kwargs)
    return model


def np_forward(weights, x):
    k1, b1, k2, b2 = [w.astype(np.float64) for w in weights]
    return np.maximum(x @ k1 + b1, 0) @ k2 + b2


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def same_weights(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


# -- learning, evaluate, predict -------------------------------------------------------------------
def test_fit_learns_and_history_records_each_epoch():
    x, y = blobs()
    model = compiled_mlp()
    history = model.fit(x, y, batch_size=32, epochs=8, verbose=0, seed=0)
    assert history is model.history
    assert isinstance(history, callbacks.History)
    assert list(history.history) == ["accuracy", "loss"]   # by name, as Keras's
    assert history.epoch == list(range(8))
    assert all(len(v) == 8 for v in history.history.values())
    loss, acc = history.history["loss"], history.history["accuracy"]
    assert loss[-1] < 0.5 * loss[0]
    assert acc[-1] > acc[0] and acc[-1] >= 0.9
    assert all(isinstance(v, float) for v in loss)


def test_evaluate_and_predict_agree_with_numpy_on_a_partial_last_batch():
    x, y = blobs()
    model = compiled_mlp()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=0)
    weights = model.get_weights()
    z = np_forward(weights, x)
    per_sample = -np_log_softmax(z)[np.arange(N), y]
    expected_acc = np.mean(z.argmax(-1) == y)

    # 70 samples in batches of 32: 32 + 32 + 6, the last padded and masked.
    loss, acc = model.evaluate(x, y, batch_size=32, verbose=0)
    assert loss == pytest.approx(per_sample.mean(), rel=1e-5)
    assert acc == pytest.approx(expected_acc, abs=1e-7)
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert logs == {"loss": loss, "accuracy": acc}
    # Had the 26 padded samples been counted, the mean would differ.
    padded_mean = np.concatenate([per_sample, np.repeat(per_sample[:1], 26)]).mean()
    assert not np.isclose(loss, padded_mean, rtol=1e-4)

    probs = model.predict(x, batch_size=32, verbose=0)
    assert probs.shape == (N, CLASSES) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, np.exp(np_log_softmax(z)), rtol=1e-5, atol=1e-6)


def test_fit_reports_three_steps_for_70_samples_in_batches_of_32(capsys):
    x, y = blobs()
    model = compiled_mlp()
    params = {}
    probe = callbacks.LambdaCallback(on_train_begin=lambda logs: params.update(probe.params))
    model.fit(x, y, batch_size=32, epochs=1, verbose=2, seed=0, callbacks=[probe])
    assert params["steps"] == 3 and params["samples"] == 70 and params["batch_size"] == 32
    assert " - 3/3 - " in capsys.readouterr().out


# -- whole-epoch programs equal a step-by-step loop ---------------------------------------------
SGD = dict(learning_rate=0.1, momentum=0.9)


def reference_training(weights, x, y, *, seed, epochs, batch_size):
    """Plain JAX, one step per batch: the order kilnet documents (NumPy permutation seeded with
    (seed, fit call, epoch)), a mean loss over the batch's real samples, the same optimizer.
    Returns the final weights and exact per-epoch means of the loss and accuracy."""
    tx = optimizers.SGD(**SGD).transformation()
    params = [jnp.asarray(w) for w in weights]
    opt_state = tx.init(params)

    def per_sample(p, xb, yb):
        logits = jax.nn.relu(xb @ p[0] + p[1]) @ p[2] + p[3]
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=1)[:, 0]
        return nll, logits

    @jax.jit
    def step(p, s, xb, yb):
        def mean_loss(p):
            nll, logits = per_sample(p, xb, yb)
            return nll.mean(), (nll, logits)
        (_, (nll, logits)), grads = jax.value_and_grad(mean_loss, has_aux=True)(p)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s, nll, logits

    history = {"loss": [], "accuracy": []}
    for epoch in range(epochs):
        order = np.random.default_rng([seed, 1, epoch]).permutation(len(x))
        loss_sum = hits = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            params, opt_state, nll, logits = step(params, opt_state, x[idx], y[idx])
            loss_sum += float(np.sum(nll))
            hits += float(np.sum(np.argmax(logits, -1) == y[idx]))
        history["loss"].append(loss_sum / len(x))
        history["accuracy"].append(hits / len(x))
    return [np.asarray(p) for p in params], history


def chunked_fit(monkeypatch, chunk, weights, x, y, *, seed=3, epochs=2, batch_size=8):
    """fit with chunks of exactly `chunk` steps (None: the whole epoch in one chunk)."""
    monkeypatch.setattr(fit_lib, "_initial_chunk",
                        lambda trainer, total: total if chunk is None else chunk)
    monkeypatch.setattr(fit_lib.Chunker, "observe", lambda self, steps, seconds: None)
    model = compiled_mlp(optimizers.SGD(**SGD))
    model.set_weights(weights)
    ends = []
    probe = callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(batch))
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, seed=seed,
                        callbacks=[probe])
    return model.get_weights(), history.history, ends


def test_any_chunk_length_gives_bitwise_the_same_training(monkeypatch):
    x, y = blobs()
    start = compiled_mlp(seed=1).get_weights()
    runs = {}
    for chunk in (1, 7, None):
        runs[chunk] = chunked_fit(monkeypatch, chunk, start, x, y)
    # 70 samples in batches of 8: 9 steps per epoch, the last one of 6 samples; a callback
    # of yours hears of every batch whatever the chunks (kilnet.callbacks)
    for chunk in (1, 7, None):
        assert runs[chunk][2] == list(range(9)) * 2
    reference_weights, reference_history = runs[None][0], runs[None][1]
    for chunk in (1, 7):
        assert same_weights(runs[chunk][0], reference_weights), chunk
        assert runs[chunk][1] == reference_history, chunk

    # The adaptive chunker (here pushed to 1-step chunks) changes nothing either.
    monkeypatch.undo()
    monkeypatch.setattr(fit_lib, "CHUNK_SECONDS", 1e-9)
    model = compiled_mlp(optimizers.SGD(**SGD))
    model.set_weights(start)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=3)
    assert same_weights(model.get_weights(), reference_weights)
    assert history.history == reference_history


def test_fit_equals_a_step_by_step_reference_loop(monkeypatch):
    x, y = blobs()
    start = compiled_mlp(seed=1).get_weights()
    weights, history, _ = chunked_fit(monkeypatch, None, start, x, y, epochs=2)
    expected_weights, expected_history = reference_training(start, x, y, seed=3, epochs=2,
                                                            batch_size=8)
    for got, want in zip(weights, expected_weights):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Epoch metrics are exact means over the 70 samples (not means of batch means).
    for name in ("loss", "accuracy"):
        np.testing.assert_allclose(history[name], expected_history[name], rtol=1e-5,
                                   atol=1e-7, err_msg=name)
    assert history["loss"][1] < history["loss"][0]


# -- reproducibility --------------------------------------------------------------------------
def seeded_run(seed):
    """set_random_seed, then build, compile and fit with Dropout and shuffling."""
    kilnet.utils.set_random_seed(seed)
    x, y = blobs()
    model = mlp(dropout=0.25)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=True)
    return model.get_weights(), history.history


def test_set_random_seed_makes_training_bitwise_reproducible():
    first, second, other = seeded_run(5), seeded_run(5), seeded_run(6)
    assert same_weights(first[0], second[0])
    assert first[1] == second[1]
    assert not np.array_equal(first[0][0], other[0][0])


def test_fit_seed_makes_training_bitwise_reproducible():
    x, y = blobs()
    start = compiled_mlp(seed=2, dropout=0.25).get_weights()

    def run(seed, shuffle=True):
        model = compiled_mlp(seed=9, dropout=0.25)
        model.set_weights(start)
        model.fit(x, y, batch_size=16, epochs=2, verbose=0, seed=seed, shuffle=shuffle)
        return model.get_weights()

    a, b = run(7), run(7)
    assert same_weights(a, b)
    assert not np.array_equal(a[0], run(8)[0])
    # Without shuffling only the dropout masks depend on the seed.
    assert not np.array_equal(run(7, shuffle=False)[0], run(8, shuffle=False)[0])


# -- progress output ----------------------------------------------------------------------------
EPOCH_LINE = re.compile(   # the logs by name, as Keras's line: accuracy before loss
    r"^Epoch (\d+)/5 - 3/3 - \d+\.\ds - accuracy: \d+\.\d{4}( \([^)]*\))?"
    r" - loss: \d+\.\d{4}( \([^)]*\))?$")


@pytest.mark.parametrize("verbose", ["auto", 1, 2])
def test_progress_off_a_terminal_is_one_plain_line_per_epoch(capsys, monkeypatch, verbose):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    x, y = blobs()
    model = compiled_mlp()
    model.fit(x, y, batch_size=32, epochs=5, verbose=verbose, seed=0)
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\b" not in out
    epoch_lines = [line for line in out.splitlines() if line.startswith("Epoch")]
    assert len(epoch_lines) == 5
    assert out.splitlines()[:5] == epoch_lines  # one line per epoch, in order, first
    for number, line in enumerate(epoch_lines, start=1):
        match = EPOCH_LINE.match(line)
        assert match, line
        assert int(match.group(1)) == number


def test_verbose_zero_prints_nothing(capsys):
    x, y = blobs()
    model = compiled_mlp()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=0)
    model.evaluate(x, y, batch_size=32, verbose=0)
    model.predict(x, batch_size=32, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# -- callbacks ------------------------------------------------------------------------------------
class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


def test_callback_hooks_run_in_keras_order(monkeypatch):
    # One step per chunk, so on_train_batch_end runs after every batch, as in Keras.
    monkeypatch.setattr(fit_lib, "_initial_chunk", lambda trainer, total: 1)
    monkeypatch.setattr(fit_lib.Chunker, "observe", lambda self, steps, seconds: None)
    x, y = blobs()
    model = compiled_mlp()
    recorder = Recorder()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=0, callbacks=[recorder])
    assert recorder.model is model
    epoch = lambda e: [("epoch_begin", e), ("batch_end", 0), ("batch_end", 1), ("batch_end", 2),
                       ("epoch_end", e, ["accuracy", "loss"])]
    assert recorder.events == [("train_begin",)] + epoch(0) + epoch(1) + [("train_end",)]


def test_lambda_callback_and_stop_training():
    x, y = blobs()
    model = compiled_mlp()
    seen = []

    def on_epoch_end(epoch, logs):
        seen.append((epoch, logs["loss"]))
        if epoch == 1:
            model.stop_training = True

    history = model.fit(x, y, batch_size=32, epochs=5, verbose=0, seed=0,
                        callbacks=[callbacks.LambdaCallback(on_epoch_end=on_epoch_end)])
    assert [e for e, _ in seen] == [0, 1]
    assert history.epoch == [0, 1]
    assert [loss for _, loss in seen] == history.history["loss"]


def test_learning_rate_changes_between_fits_without_recompiling():
    x, y = blobs()
    model = compiled_mlp()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, seed=0)
    programs = len(model.compile_report.programs)
    assert model.compiled.learning_rate == pytest.approx(0.05)
    model.compiled.learning_rate = 1e-9
    assert model.compiled.learning_rate == pytest.approx(1e-9)
    before = model.get_weights()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, seed=0)
    assert len(model.compile_report.programs) == programs
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-7)


class ScriptedMetric(callbacks.Callback):
    """Puts a scripted value into the epoch logs (callbacks run in list order, sharing logs)."""

    def __init__(self, values):
        super().__init__()
        self.values = values
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        logs["score"] = self.values[epoch]
        self.weights.append(self.model.get_weights())


def test_early_stopping_restores_the_best_weights():
    x, y = blobs()
    model = compiled_mlp()
    script = ScriptedMetric([3.0, 1.0, 2.0, 2.5, 0.5, 0.1])
    stop = callbacks.EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    history = model.fit(x, y, batch_size=32, epochs=6, verbose=0, seed=0,
                        callbacks=[script, stop])
    assert history.epoch == [0, 1, 2, 3]        # best at epoch 1, two epochs without gain
    assert history.history["score"] == [3.0, 1.0, 2.0, 2.5]
    assert stop.stopped_epoch == 3 and stop.best_epoch == 1 and stop.best == 1.0
    assert same_weights(model.get_weights(), script.weights[1])
    assert not same_weights(model.get_weights(), script.weights[3])


class FakeModel:
    """Just what EarlyStopping touches."""

    def __init__(self):
        self.stop_training = False
        self.weights = 0

    def get_weights(self):
        return self.weights

    def set_weights(self, weights):
        self.weights = weights


def run_early_stopping(values, **kwargs):
    """Keras's EarlyStopping loop (keras/src/callbacks/early_stopping.py) on scripted values;
    returns the epochs that ran and the callback."""
    stop, model = callbacks.EarlyStopping(monitor="m", **kwargs), FakeModel()
    stop.set_model(model)
    stop.on_train_begin()
    ran = []
    for epoch, value in enumerate(values):
        model.weights = epoch
        ran.append(epoch)
        stop.on_epoch_end(epoch, {"m": value})
        if model.stop_training:
            break
    stop.on_train_end()
    return ran, stop, model


@pytest.mark.parametrize("values, kwargs, epochs_run", [
    ([1.0, 0.9, 0.95, 0.93, 0.8], {"patience": 2}, 4),
    ([1.0, 0.9, 0.8, 0.7, 0.6], {"patience": 0}, 5),          # improving: never stops
    ([1.0, 1.0, 0.5], {"patience": 0}, 2),                     # equal is no improvement
    ([1.0, 0.97, 0.96, 0.9], {"patience": 1, "min_delta": 0.05}, 2),
    ([1.0, 0.94, 0.88, 0.87, 0.8], {"patience": 1, "min_delta": 0.05}, 4),
    ([0.1, 0.2, 0.3, 0.2, 0.5], {"patience": 1, "mode": "max"}, 4),
    ([0.3, 0.2, 0.1], {"patience": 1, "mode": "max"}, 2),
    # baseline: the wait restarts only on values that beat both the best and the baseline
    ([0.9, 0.95, 0.4], {"patience": 2, "baseline": 0.5}, 2),
    ([0.4, 0.45, 0.46, 0.3], {"patience": 2, "baseline": 0.5}, 3),
    ([0.9, 0.8, 0.7, 0.6, 0.55], {"patience": 2, "baseline": 0.5}, 5),
    # nothing stops before start_from_epoch
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], {"patience": 0, "start_from_epoch": 3}, 5),
])
def test_early_stopping_semantics(values, kwargs, epochs_run):
    ran, stop, model = run_early_stopping(values, **kwargs)
    assert len(ran) == epochs_run
    assert model.stop_training == (epochs_run < len(values))


def test_early_stopping_restore_and_mode():
    _, stop, model = run_early_stopping([1.0, 0.5, 0.7, 0.8, 0.9], patience=2,
                                        restore_best_weights=True)
    assert stop.stopped_epoch == 3 and stop.best_epoch == 1
    assert model.weights == 1  # restored from the best epoch
    _, stop, model = run_early_stopping([1.0, 0.5, 0.7], patience=5, restore_best_weights=True)
    assert model.weights == 1  # Keras restores at the end of training even without a stop
    _, _, model = run_early_stopping([1.0, 0.5, 0.7], patience=5)
    assert model.weights == 2
    assert callbacks.EarlyStopping(monitor="val_accuracy").mode == "max"
    assert callbacks.EarlyStopping(monitor="loss").mode == "min"
    with pytest.raises(ValueError, match="mode must be"):
        callbacks.EarlyStopping(mode="up")


def test_early_stopping_warns_on_a_missing_monitor():
    stop = callbacks.EarlyStopping(monitor="val_loss")
    stop.set_model(FakeModel())
    stop.on_train_begin()
    with pytest.warns(UserWarning, match="val_loss"):
        stop.on_epoch_end(0, {"loss": 1.0})


def test_terminate_on_nan(capsys):
    model = FakeModel()
    stop = callbacks.TerminateOnNaN()
    stop.set_model(model)
    stop.on_train_batch_end(3, {"loss": 1.0})
    assert not model.stop_training
    stop.on_train_batch_end(4, {"loss": math.nan})
    assert model.stop_training
    assert "invalid loss" in capsys.readouterr().out


def test_terminate_on_nan_stops_fit():
    """With on_nonfinite='skip' the non-finite steps are skipped; an epoch where every step
    was skipped has a NaN loss, which TerminateOnNaN turns into a stop."""
    x, y = blobs()
    model = compiled_mlp(on_nonfinite="skip")
    model.set_weights([w * np.float32(1e38) for w in model.get_weights()])  # logits overflow
    before = model.get_weights()
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, seed=0,
                        callbacks=[callbacks.TerminateOnNaN()])
    assert history.epoch == [0]
    assert math.isnan(history.history["loss"][0])
    assert same_weights(model.get_weights(), before)  # no step was applied
