"""fit / evaluate / predict options as Keras has them: kilnet.utils.to_categorical and normalize,
verbose values, validation_freq / validation_steps / validation_batch_size, callbacks in
evaluate and predict, the batch hooks of fit (once per compiled chunk), and a finite generator
that runs out of data. Keras 3 (JAX backend) is the reference where it can run the same thing.

Every kilnet model here has the same shapes (4 features, 3 classes) so the compiled programs are
shared through JAX's compilation cache and the file stays fast.
"""

from __future__ import annotations

import os
import re
import sys
import warnings

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import callbacks, layers, optimizers  # noqa: E402
from kilnet import fit as fit_lib  # noqa: E402
from kilnet.errors import InputError  # noqa: E402

FEATURES, CLASSES = 4, 3


def blobs(n=70, seed=0):
    r = np.random.default_rng(seed)
    centers = 3.0 * np.eye(CLASSES, FEATURES)
    y = r.integers(0, CLASSES, n)
    x = centers[y] + 0.7 * r.normal(size=(n, FEATURES))
    return x.astype(np.float32), y


def compiled_mlp(seed=0):
    model = kilnet.Sequential([layers.Input(shape=(FEATURES,)),
                               layers.Dense(8, activation="relu"),
                               layers.Dense(CLASSES, activation="softmax")])
    model.build(seed=seed)
    model.compile(optimizer=optimizers.Adam(learning_rate=0.05),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def keras_twin(model, **compile_kwargs):
    """The Keras model of compiled_mlp with the same weights."""
    twin = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(CLASSES, activation="softmax")])
    twin.set_weights(model.get_weights())
    twin.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"], **compile_kwargs)
    return twin


def batches(x, y, batch_size):
    """A one-shot generator of (x, y) batches, or (x,) batches when y is None."""
    for start in range(0, len(x), batch_size):
        if y is None:
            yield (x[start:start + batch_size],)
        else:
            yield x[start:start + batch_size], y[start:start + batch_size]


class Batches:
    """A re-iterable source of batches: each pass is a fresh generator (as a PyDataset)."""

    def __init__(self, items):
        self.items = list(items)

    def __iter__(self):
        return iter(list(self.items))


# -- utilities ----------------------------------------------------------------------------------
@pytest.mark.parametrize("ids, num_classes", [
    ([0, 1, 2, 3], None),
    ([2, 0, 1], 5),
    ([[1], [0], [2]], None),                  # a trailing axis of 1 is dropped
    (np.array([[0, 1], [2, 0]]), 4),          # the class axis goes last
    (np.arange(6).reshape(2, 3, 1), None),
    ([1.7, 0.2, 2.9], None),                  # float ids are truncated, as in Keras
    (np.array([3], np.int32), 0),             # num_classes=0 means inferred, as in Keras
])
def test_to_categorical_matches_keras(ids, num_classes):
    ours = kilnet.utils.to_categorical(ids, num_classes=num_classes)
    theirs = keras.utils.to_categorical(ids, num_classes=num_classes)
    assert ours.dtype == theirs.dtype == np.float64
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_to_categorical_refuses_ids_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        kilnet.utils.to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match="in \\[0, 3\\)"):
        kilnet.utils.to_categorical([-1, 2])
    with pytest.raises(ValueError, match="num_classes"):
        kilnet.utils.to_categorical([])


@pytest.mark.parametrize("axis", [-1, 1, 2])
@pytest.mark.parametrize("order", [1, 2, np.inf])
def test_normalize_matches_keras(axis, order):
    x = np.random.default_rng(1).normal(size=(3, 4, 5))
    x[0, 1] = 0.0  # a zero slice stays zero
    ours = kilnet.utils.normalize(x, axis=axis, order=order)
    np.testing.assert_allclose(ours, keras.utils.normalize(x, axis=axis, order=order),
                               rtol=1e-12)
    assert ours.dtype == x.dtype


@pytest.mark.parametrize("order", [1, 2])
def test_normalize_of_a_jax_array_is_keras_backend_tensor_form(order):
    """A JAX array (as keras.io's supervised contrastive learning normalizes a batch's
    features inside the compiled step) goes through ops.normalize, as Keras's does: the same
    numbers eagerly and under jax.jit, a JAX array back."""
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 6)), jnp.float32)
    want = np.asarray(keras.utils.normalize(x, order=order))
    ours = kilnet.utils.normalize(x, order=order)
    assert isinstance(ours, jax.Array)
    np.testing.assert_allclose(np.asarray(ours), want, rtol=1e-6)
    jitted = jax.jit(lambda a: kilnet.utils.normalize(a, order=order))(x)
    np.testing.assert_allclose(np.asarray(jitted), want, rtol=1e-6)


def test_normalize_integer_input_and_axis_zero():
    ours = kilnet.utils.normalize(np.array([[3, 0], [4, 0]]), axis=0)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, [[0.6, 0.0], [0.8, 0.0]], rtol=1e-6)


# -- verbose ------------------------------------------------------------------------------------
# the logs by name, as Keras's progress line: accuracy before loss
EPOCH_LINE = re.compile(
    r"^Epoch (\d)/3 - 3/3 - \d+\.\ds - accuracy: [\d.]+( \([+-][\d.]+\))? - loss: \d+\.\d{4}")


def run_all(verbose, epochs=3):
    x, y = blobs()
    model = compiled_mlp()
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=verbose, seed=0)
    model.evaluate(x, y, batch_size=32, verbose=verbose)
    model.predict(x, batch_size=32, verbose=verbose)


@pytest.mark.parametrize("verbose", [0, False])
def test_verbose_off_is_silent(capsys, verbose):
    run_all(verbose)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("verbose", [2, 1, True, "auto"])
def test_verbose_off_a_terminal_is_one_line_per_epoch(capsys, monkeypatch, verbose):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    run_all(verbose)
    lines = capsys.readouterr().out.splitlines()
    assert [int(EPOCH_LINE.match(line).group(1)) for line in lines[:3]] == [1, 2, 3], lines
    assert not any(line.startswith("Epoch") for line in lines[3:])
    assert sum(line.startswith("Evaluate - 3/3 - ") for line in lines) == 1
    assert sum(line.startswith("Predict - 3/3 - ") for line in lines) == 1


@pytest.mark.parametrize("verbose", [1, True, "auto"])
def test_verbose_one_on_a_terminal_draws_a_progress_bar(capsys, monkeypatch, verbose):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # captured, but "a terminal"
    x, y = blobs()
    compiled_mlp().fit(x, y, batch_size=32, epochs=2, verbose=verbose, seed=0)
    out = capsys.readouterr().out
    assert "\r" in out and "\x1b[K" in out  # a live line, rewritten in place
    assert "3/3" in out
    assert not EPOCH_LINE.search(out)


def test_verbose_two_on_a_terminal_stays_one_plain_line_per_epoch(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    x, y = blobs()
    compiled_mlp().fit(x, y, batch_size=32, epochs=3, verbose=2, seed=0)
    lines = capsys.readouterr().out.splitlines()
    assert [EPOCH_LINE.match(line) is not None for line in lines[:3]] == [True] * 3
    assert "━" not in "\n".join(lines)


@pytest.mark.parametrize("verbose", [3, -1, "yes", None, 1.0])
def test_verbose_refuses_other_values(verbose):
    x, y = blobs()
    model = compiled_mlp()
    for call in (lambda: model.fit(x, y, epochs=1, verbose=verbose),
                 lambda: model.evaluate(x, y, verbose=verbose),
                 lambda: model.predict(x, verbose=verbose)):
        with pytest.raises(ValueError, match="verbose must be"):
            call()


# -- validation options ---------------------------------------------------------------------------
class EpochLogsMixin:
    """Records each epoch's log names."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((epoch, sorted(logs)))


class EpochLogs(EpochLogsMixin, callbacks.Callback):
    pass


class KerasEpochLogs(EpochLogsMixin, keras.callbacks.Callback):
    pass


@pytest.mark.parametrize("freq", [2, [1, 4]])
def test_validation_freq_logs_val_only_on_those_epochs_as_keras(freq):
    x, y = blobs(seed=0)
    xv, yv = blobs(n=30, seed=1)
    model = compiled_mlp()
    twin = keras_twin(model)
    ours, theirs = EpochLogs(), KerasEpochLogs()
    history = model.fit(x, y, batch_size=32, epochs=4, verbose=0, seed=0, shuffle=False,
                        validation_data=(xv, yv), validation_freq=freq, callbacks=[ours])
    reference = twin.fit(x, y, batch_size=32, epochs=4, verbose=0, shuffle=False,
                         validation_data=(xv, yv), validation_freq=freq, callbacks=[theirs])
    validated = [1, 3] if freq == 2 else [0, 3]
    assert [e for e, names in ours.seen if "val_loss" in names] == validated
    assert ours.seen == theirs.seen
    assert history.epoch == reference.epoch == [0, 1, 2, 3]
    assert sorted(history.history) == sorted(reference.history)
    for name, values in reference.history.items():
        assert len(history.history[name]) == len(values), name
    assert len(history.history["val_loss"]) == 2 and len(history.history["loss"]) == 4
    # Same weights, same unshuffled batches: Keras's numbers too.
    for name, values in reference.history.items():
        np.testing.assert_allclose(history.history[name], values, rtol=2e-4, atol=1e-6,
                                   err_msg=name)


def test_validation_batch_size_and_steps_on_arrays():
    x, y = blobs(seed=0)
    xv, yv = blobs(n=30, seed=1)
    logs = []
    for kwargs in ({}, {"validation_batch_size": 7}, {"validation_steps": 2},
                   {"validation_batch_size": 4, "validation_steps": 3}):
        model = compiled_mlp()
        history = model.fit(x, y, batch_size=32, epochs=1, verbose=0, seed=0,
                            validation_data=(xv, yv), **kwargs)
        batch = kwargs.get("validation_batch_size", 32)
        rows = kwargs.get("validation_steps", 10**6) * batch
        expected = model.evaluate(xv[:rows], yv[:rows], batch_size=batch, verbose=0,
                                  return_dict=True)
        assert history.history["val_loss"][0] == pytest.approx(expected["loss"], rel=1e-6)
        assert history.history["val_accuracy"][0] == pytest.approx(expected["accuracy"])
        logs.append(history.history["val_loss"][0])
    assert logs[0] == pytest.approx(logs[1], rel=1e-5)  # a full pass: the batch size is moot
    assert logs[3] != pytest.approx(logs[0], rel=1e-4)  # 12 of the 30 samples


def test_streamed_validation_data_with_validation_steps():
    x, y = blobs(seed=0)
    xv, yv = blobs(n=40, seed=1)

    def endless():
        while True:
            yield from batches(xv, yv, 8)

    model = compiled_mlp()
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=0,
                        validation_data=endless(), validation_steps=3)
    # The one-shot generator continues: epoch 1 reads batches 0-2, epoch 2 batches 3, 4, 0.
    second = np.concatenate([np.arange(24, 40), np.arange(0, 8)])
    expected = model.evaluate(xv[second], yv[second], batch_size=8, verbose=0, return_dict=True)
    assert history.history["val_loss"][1] == pytest.approx(expected["loss"], rel=1e-6)
    assert len(history.history["val_loss"]) == 2


def test_streamed_validation_data_reiterable_without_steps():
    x, y = blobs(seed=0)
    xv, yv = blobs(n=40, seed=1)
    val = Batches(batches(xv, yv, 8))  # re-iterable: read whole each validation
    model = compiled_mlp()
    history = model.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=0, validation_data=val)
    expected = model.evaluate(xv, yv, batch_size=8, verbose=0, return_dict=True)
    assert history.history["val_loss"][1] == pytest.approx(expected["loss"], rel=1e-6)


def test_one_shot_validation_generator_needs_validation_steps():
    x, y = blobs()
    xv, yv = blobs(n=40, seed=1)
    with pytest.raises(InputError, match="validation_steps"):
        compiled_mlp().fit(x, y, epochs=1, verbose=0, validation_data=batches(xv, yv, 8))


@pytest.mark.parametrize("kwargs, match", [
    ({"validation_freq": 0}, "validation_freq"),
    ({"validation_freq": "2"}, "validation_freq"),
    ({"validation_freq": 1.5}, "validation_freq"),
    ({"validation_steps": 0}, "validation_steps"),
    ({"validation_batch_size": -2}, "validation_batch_size"),
])
def test_validation_options_refuse_bad_values(kwargs, match):
    x, y = blobs()
    with pytest.raises(ValueError, match=match):
        compiled_mlp().fit(x, y, epochs=1, verbose=0, validation_data=(x, y), **kwargs)


# -- callbacks in evaluate and predict ------------------------------------------------------------
def _record(hook, indexed):
    if indexed:
        def record(self, index, logs=None):
            self.events.append((hook, index, None if logs is None else dict(logs)))
    else:
        def record(self, logs=None):
            self.events.append((hook, None if logs is None else dict(logs)))
    return record


class RecorderMixin:
    """Records every hook as (hook, [batch or epoch,] logs)."""

    def __init__(self):
        super().__init__()
        self.events = []


for _hook in ("train_begin", "train_end", "test_begin", "test_end", "predict_begin",
              "predict_end"):
    setattr(RecorderMixin, "on_" + _hook, _record(_hook, False))
for _hook in ("epoch_begin", "epoch_end", "train_batch_begin", "train_batch_end",
              "test_batch_begin", "test_batch_end", "predict_batch_begin", "predict_batch_end"):
    setattr(RecorderMixin, "on_" + _hook, _record(_hook, True))


class Recorder(RecorderMixin, callbacks.Callback):
    pass


class KerasRecorder(RecorderMixin, keras.callbacks.Callback):
    pass


def names(events):
    """Hook, batch index and the logs' sorted names (no values)."""
    return [(e[0], *e[1:-1], sorted(e[-1] or {})) for e in events]


def test_evaluate_callbacks_fire_in_keras_order_with_keras_arguments():
    x, y = blobs()
    model = compiled_mlp()
    twin = keras_twin(model)
    ours, theirs = Recorder(), KerasRecorder()
    result = model.evaluate(x, y, batch_size=32, verbose=0, callbacks=[ours], return_dict=True)
    reference = twin.evaluate(x, y, batch_size=32, verbose=0, callbacks=[theirs],
                              return_dict=True)
    # a callback of yours with batch hooks gets every batch, with the running logs, as Keras's
    each = [event for batch in range(3) for event in (
        ("test_batch_begin", batch, []), ("test_batch_end", batch, ["accuracy", "loss"]))]
    assert names(ours.events) == names(theirs.events) == [
        ("test_begin", []), *each, ("test_end", ["accuracy", "loss"])]
    assert ours.events[-1][-1] == result
    for name, value in reference.items():
        assert ours.events[-1][-1][name] == pytest.approx(value, rel=1e-5)
        for at in (2, 4, 6):
            assert ours.events[at][-1][name] == pytest.approx(theirs.events[at][-1][name],
                                                              rel=1e-5)
    assert ours.params == {"epochs": 1, "steps": 3, "verbose": 0}
    assert ours.params == {k: theirs.params[k] for k in ours.params}


def test_predict_callbacks_fire_in_keras_order_with_the_outputs():
    x, _ = blobs()
    model = compiled_mlp()
    twin = keras_twin(model)
    ours, theirs = Recorder(), KerasRecorder()
    out = model.predict(x, batch_size=32, verbose=0, callbacks=[ours])
    twin.predict(x, batch_size=32, verbose=0, callbacks=[theirs])
    each = [event for batch in range(3) for event in (
        ("predict_batch_begin", batch, []), ("predict_batch_end", batch, ["outputs"]))]
    assert names(ours.events) == names(theirs.events) == [
        ("predict_begin", []), *each, ("predict_end", [])]
    np.testing.assert_array_equal(
        np.concatenate([ours.events[at][-1]["outputs"] for at in (2, 4, 6)]), out)
    for at in (2, 4, 6):
        np.testing.assert_allclose(ours.events[at][-1]["outputs"],
                                   np.asarray(theirs.events[at][-1]["outputs"]), rtol=1e-5,
                                   atol=1e-6)


def test_batch_hooks_of_kilnet_callbacks_alone_keep_whole_blocks():
    recorder = Recorder()
    recorder.chunk_batch_hooks = True   # as kilnet's own callbacks, written for chunks
    x, y = blobs()
    model = compiled_mlp()
    model.evaluate(x, y, batch_size=32, verbose=0, callbacks=[recorder])
    assert [e[:2] for e in recorder.events[1:3]] == [("test_batch_begin", 0),
                                                     ("test_batch_end", 2)]


def test_stop_evaluating_and_stop_predicting_from_a_callback():
    x, y = blobs(n=48)
    model = compiled_mlp()

    class Stop(callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            self.model.stop_evaluating = True

        def on_predict_batch_end(self, batch, logs=None):
            self.model.stop_predicting = True

    recorder = Recorder()
    logs = model.evaluate(batches(x, y, 8), verbose=0, callbacks=[Stop(), recorder],
                          return_dict=True)
    assert [e[:2] for e in recorder.events] == [("test_begin", {}), ("test_batch_begin", 0),
                                                ("test_batch_end", 0), ("test_end", logs)]
    expected = model.evaluate(x[:8], y[:8], batch_size=8, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert model.predict(batches(x, None, 8), verbose=0, callbacks=[Stop()]).shape == (
        8, CLASSES)
    assert model.predict(x, batch_size=8, verbose=0, callbacks=[Stop()]).shape == (8, CLASSES)


def test_evaluate_and_predict_steps_on_arrays():
    x, y = blobs()
    model = compiled_mlp()
    logs = model.evaluate(x, y, batch_size=16, steps=2, verbose=0, return_dict=True)
    expected = model.evaluate(x[:32], y[:32], batch_size=16, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    out = model.predict(x, batch_size=16, steps=2, verbose=0)
    np.testing.assert_allclose(out, model.predict(x[:32], batch_size=16, verbose=0),
                               rtol=1e-6)


# -- batch hooks in fit ---------------------------------------------------------------------------
def chunk_ranges(events, begin="train_batch_begin", end="train_batch_end"):
    """[(first, last)] per chunk from alternating begin/end events; fails if they don't pair."""
    hooks = [e for e in events if e[0] in (begin, end)]
    assert [e[0] for e in hooks] == [begin, end] * (len(hooks) // 2)
    return [(b[1], e[1]) for b, e in zip(hooks[::2], hooks[1::2])]


def assert_cover_each_batch_once(ranges, steps):
    assert ranges and ranges[0][0] == 0 and ranges[-1][1] == steps - 1
    for (first, last), (next_first, _) in zip(ranges, ranges[1:]):
        assert first <= last and next_first == last + 1
    assert sum(last - first + 1 for first, last in ranges) == steps


@pytest.mark.parametrize("chunk", [1, 2, 3, 5])
def test_fit_batch_hooks_cover_every_batch_once_per_epoch(monkeypatch, chunk):
    monkeypatch.setattr(fit_lib, "_initial_chunk", lambda trainer, total: chunk)
    monkeypatch.setattr(fit_lib.Chunker, "observe", lambda self, steps, seconds: None)
    x, y = blobs(n=70)
    model = compiled_mlp()
    recorder = Recorder()
    recorder.chunk_batch_hooks = True   # written for chunks: one begin and end per chunk
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0, callbacks=[recorder])
    steps = 9
    epochs = [[], []]
    current = None
    for event in recorder.events:
        if event[0] == "epoch_begin":
            current = epochs[event[1]]
        elif event[0] == "epoch_end":
            current = None
        elif current is not None:
            current.append(event)
    for events in epochs:
        ranges = chunk_ranges(events)
        assert_cover_each_batch_once(ranges, steps)
        assert all(last - first + 1 <= chunk for first, last in ranges)
        assert len(ranges) == -(-steps // chunk)
        # begin logs are empty, end logs hold the running means
        assert all(e[-1] == {} for e in events if e[0] == "train_batch_begin")
        assert all(sorted(e[-1]) == ["accuracy", "loss"] for e in events
                   if e[0] == "train_batch_end")


def test_fit_batch_hooks_with_the_real_chunker_and_a_stream(monkeypatch):
    monkeypatch.setattr(kilnet.feeds, "STREAM_BLOCK_BYTES", 3 * 8 * FEATURES * 4)  # 3 batches
    x, y = blobs(n=70)
    model = compiled_mlp()
    recorder = Recorder()
    model.fit(Batches(batches(x, y, 8)), epochs=2, verbose=0, seed=0, callbacks=[recorder])
    events = recorder.events
    ends = [i for i, e in enumerate(events) if e[0] == "epoch_end"]
    assert len(ends) == 2
    assert_cover_each_batch_once(chunk_ranges(events[:ends[0]]), 9)
    assert_cover_each_batch_once(chunk_ranges(events[ends[0]:ends[1]]), 9)


def test_fit_batch_hook_logs_match_the_epoch_logs_at_the_last_chunk():
    x, y = blobs()
    model = compiled_mlp()
    recorder = Recorder()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=0, callbacks=[recorder])
    for i, event in enumerate(recorder.events):
        if event[0] == "epoch_end":
            last_batch = [e for e in recorder.events[:i] if e[0] == "train_batch_end"][-1]
            assert last_batch[-1] == event[-1]


def test_on_batch_aliases_and_lambda_callback_hooks():
    x, y = blobs()
    seen = []

    class Legacy(callbacks.Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch))

    lam = callbacks.LambdaCallback(on_test_end=lambda logs: seen.append(("test_end",
                                                                         sorted(logs))))
    model = compiled_mlp()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, seed=0, validation_data=(x, y),
              callbacks=[Legacy(), lam])
    assert seen[0] == ("begin", 0) and ("end", 2) in seen
    assert seen[-1] == ("test_end", ["accuracy", "loss"])
    with pytest.raises(TypeError, match="unknown hooks"):
        callbacks.LambdaCallback(on_tset_end=print)


def test_validation_in_fit_fires_test_hooks_before_epoch_end(monkeypatch):
    monkeypatch.setattr(fit_lib, "_initial_chunk", lambda trainer, total: total)
    monkeypatch.setattr(fit_lib.Chunker, "observe", lambda self, steps, seconds: None)
    x, y = blobs()
    xv, yv = blobs(n=70, seed=1)
    model = compiled_mlp()
    twin = keras_twin(model, steps_per_execution=3)
    ours, theirs = Recorder(), KerasRecorder()
    ours.chunk_batch_hooks = True   # one begin and end per chunk, as Keras's per execution
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, seed=0, shuffle=False,
              validation_data=(xv, yv), validation_freq=2, callbacks=[ours])
    twin.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False, validation_data=(xv, yv),
             validation_freq=2, callbacks=[theirs])
    # The whole epoch as one chunk for kilnet, one execution of 3 steps for Keras: the same
    # events, in the same order.
    assert names(ours.events) == names(theirs.events)
    assert [e[0] for e in ours.events] == [
        "train_begin",
        "epoch_begin", "train_batch_begin", "train_batch_end", "epoch_end",
        "epoch_begin", "train_batch_begin", "train_batch_end",
        "test_begin", "test_batch_begin", "test_batch_end", "test_end", "epoch_end",
        "train_end"]
    test_end = [e for e in ours.events if e[0] == "test_end"][0][-1]
    epoch_end = ours.events[-2][-1]
    assert test_end == {k[4:]: v for k, v in epoch_end.items() if k.startswith("val_")}


# -- a finite generator that runs out -------------------------------------------------------------
def counted(x, y, n, batch_size=8):
    """A one-shot generator of n batches, cycling over (x, y)."""
    for i in range(n):
        start = (i * batch_size) % (len(x) - batch_size)
        yield x[start:start + batch_size], y[start:start + batch_size]


class EpochHooks(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("end", epoch))

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


def test_a_generator_that_runs_dry_mid_epoch_warns_and_stops():
    x, y = blobs()
    model = compiled_mlp()
    hooks = EpochHooks()
    with pytest.warns(UserWarning, match="ran out of data") as record:
        history = model.fit(counted(x, y, 5), steps_per_epoch=2, epochs=4, verbose=0, seed=0,
                            callbacks=[hooks])
    message = str(record[0].message)
    assert "in epoch 3, after 1 of its 2 steps" in message
    assert "ran 5 steps of the 8 steps" in message
    # As Keras: the epoch it ran out in ends with the logs of the step it ran; then it stops.
    assert history.epoch == [0, 1, 2]
    assert hooks.events == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1), ("begin", 2),
                            ("end", 2), ("train_end",)]


def test_a_generator_that_runs_dry_at_an_epoch_boundary_warns_before_the_next_epoch():
    x, y = blobs()
    model = compiled_mlp()
    hooks = EpochHooks()
    with pytest.warns(UserWarning, match="ran out of data") as record:
        history = model.fit(counted(x, y, 4), steps_per_epoch=2, epochs=4, verbose=0, seed=0,
                            callbacks=[hooks])
    assert "before epoch 3" in str(record[0].message)
    assert "ran 4 steps of the 8 steps" in str(record[0].message)
    assert history.epoch == [0, 1]
    assert hooks.events == [("begin", 0), ("end", 0), ("begin", 1), ("end", 1), ("train_end",)]


def test_a_generator_of_unknown_length_used_up_by_the_first_epoch_warns():
    x, y = blobs()
    model = compiled_mlp()
    with pytest.warns(UserWarning, match="ran out of data") as record:
        history = model.fit(counted(x, y, 3), epochs=3, verbose=0, seed=0)
    assert "before epoch 2" in str(record[0].message)
    assert "ran 3 steps of the 9 steps (3 epochs of 3 steps)" in str(record[0].message)
    assert history.epoch == [0]


def test_enough_data_or_a_reiterable_source_does_not_warn():
    x, y = blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h1 = compiled_mlp().fit(counted(x, y, 8), steps_per_epoch=2, epochs=4, verbose=0,
                                seed=0)
        h2 = compiled_mlp().fit(Batches(counted(x, y, 3)), epochs=3, verbose=0, seed=0)
        h3 = compiled_mlp().fit(counted(x, y, 3), epochs=1, verbose=0, seed=0)
    assert h1.epoch == [0, 1, 2, 3] and h2.epoch == [0, 1, 2] and h3.epoch == [0]


def test_the_dry_epoch_line_shows_the_steps_it_ran(capsys, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "0")
    x, y = blobs()
    with pytest.warns(UserWarning, match="ran out of data"):
        compiled_mlp().fit(counted(x, y, 3), steps_per_epoch=2, epochs=2, verbose=2, seed=0)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Epoch")]
    assert lines[0].startswith("Epoch 1/2 - 2/2 - ")
    assert lines[1].startswith("Epoch 2/2 - 1/2 - ")


def test_steps_per_execution_caps_the_compiled_chunks():
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 3)).astype(np.float32), rng.integers(0, 2, 40)
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  steps_per_execution=3)
    ends = []

    class Ends(kilnet.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(batch)

    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[Ends()])
    # 10 steps in chunks of at most 3: the hooks see batches 2, 5, 8, 9 (or more often)
    assert ends[-1] == 9 and len(ends) >= 4
    assert all(b - a <= 3 for a, b in zip([-1] + ends, ends))
    with pytest.raises(ValueError, match="steps_per_execution must be a positive integer"):
        model.compile(optimizer="sgd", loss="mse", steps_per_execution=0)


def _endpoint_model(lib):
    class Endpoint(lib.layers.Layer):
        def call(self, targets, predictions):
            self.add_loss(lib.ops.mean(lib.ops.square(targets - predictions)))
            return predictions

    features, targets = lib.Input((3,), name="x"), lib.Input((2,), name="t")
    outputs = Endpoint()(targets, lib.layers.Dense(2)(features))
    return lib.Model([features, targets], outputs)


def test_validation_data_of_inputs_only_for_a_model_without_targets_as_keras():
    """keras.io's endpoint and OCR models validate on inputs alone (their loss comes from
    add_loss): validation_data=(x_val,) gives Keras's val_loss from the same weights."""
    rng = np.random.default_rng(3)
    data = {"x": rng.normal(size=(16, 3)).astype("float32"),
            "t": rng.normal(size=(16, 2)).astype("float32")}
    held_out = {"x": rng.normal(size=(8, 3)).astype("float32"),
                "t": rng.normal(size=(8, 2)).astype("float32")}
    ours, theirs = _endpoint_model(kilnet), _endpoint_model(keras)
    theirs.set_weights(ours.get_weights())
    histories = []
    for model in (ours, theirs):
        model.compile(optimizer="sgd")
        histories.append(model.fit(data, validation_data=(held_out,), batch_size=8, epochs=2,
                                   shuffle=False, verbose=0).history)
    assert sorted(histories[0]) == sorted(histories[1]) == ["loss", "val_loss"]
    np.testing.assert_allclose(histories[0]["val_loss"], histories[1]["val_loss"], rtol=1e-5)


def test_run_eagerly_and_jit_compile_read_as_keras():
    """keras.io examples read and set model.run_eagerly; kilnet keeps the setting (and runs
    eagerly by it, with no warning: tests/test_run_eagerly.py) and reads jit_compile as
    Keras's JAX backend does."""
    states = []
    for lib in (kilnet, keras):
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(1)])
        before = model.run_eagerly
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
        after_compile = model.run_eagerly
        model.run_eagerly = False
        states.append((before, after_compile, model.run_eagerly, bool(model.jit_compile)))
        assert not [w for w in caught if "run_eagerly" in str(w.message)]
    assert states[0] == states[1] == (False, True, False, False)   # Keras: no jit when eager


def test_quantize_modes_other_than_int8_and_int4_say_what_to_use():
    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(1)])
    model.build()
    with pytest.raises(NotImplementedError,
                       match=r"mode='float8'.*\('int8', 'int4'\).*mode='int8' or mode='int4'"):
        model.quantize("float8")


def test_validation_inside_fit_gives_every_batch_its_test_hooks_as_keras():
    """keras.io's super-resolution callback averages a metric over on_test_batch_end calls."""
    x, y = blobs()

    def seen(lib, model):
        class TestBatches(lib.callbacks.Callback):
            found = []

            def on_test_batch_end(self, batch, logs=None):
                TestBatches.found.append((batch, logs["loss"]))

        model.fit(x, y, batch_size=32, epochs=1, shuffle=False, validation_data=(x, y),
                  callbacks=[TestBatches()], verbose=0)
        return TestBatches.found

    model = compiled_mlp()
    theirs = seen(keras, keras_twin(model))
    ours = seen(kilnet, model)
    assert [b for b, _ in ours] == [b for b, _ in theirs] == [0, 1, 2]
    np.testing.assert_allclose([v for _, v in ours], [v for _, v in theirs], rtol=1e-5)
