"""compile(run_eagerly=True), keras.io's debugging tip ("to debug what happens during fit(),
use run_eagerly=True"): each batch's step runs as Python on concrete arrays, so prints show
each step's values and Python side effects run once a step, with everything else as compiled
(callbacks, metrics, validation, dropout keys, the non-finite guard). Keras 3 on JAX is the
reference."""

from __future__ import annotations

import os
import re

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.errors import NonFiniteError  # noqa: E402

LIBS = (kilnet, keras)
X = np.random.default_rng(0).random((96, 8)).astype("float32")
Y = np.arange(96) % 3


def _printing_model(lib):
    """keras.io's pattern: a train_step of Keras's JAX form that prints its loss with "%.4f"
    and counts its steps in a Python attribute."""
    class Printing(lib.Model):
        def train_step(self, state, data):
            self.steps_seen += 1
            tv, ntv, ov, mv = state
            x, y = data

            def loss_of(tv):
                p, _ = self.stateless_call(tv, ntv, x, training=True)
                return lib.ops.mean(lib.losses.sparse_categorical_crossentropy(y, p))

            loss, grads = jax.value_and_grad(loss_of)(tv)
            print("step %d: loss %.4f, max grad %.4f" % (self.steps_seen, loss,
                                                           lib.ops.max(grads[0])))
            tv, ov = self.optimizer.stateless_apply(ov, grads, tv)
            return {"loss": loss}, (tv, ntv, ov, mv)

    inputs = lib.Input((8,))
    model = Printing(inputs, lib.layers.Dense(3, activation="softmax")(inputs))
    model.steps_seen = 0
    return model


def _numbers(text):
    return [[float(v) for v in re.findall(r"-?\d+\.\d+", line)] for line in text.splitlines()
            if line.startswith("step")]


def test_a_train_step_that_prints_runs_once_a_batch_with_keras_numbers(capsys):
    weights = None
    printed, counts = [], []
    for lib in LIBS:
        model = _printing_model(lib)
        weights = model.get_weights() if weights is None else weights
        model.set_weights(weights)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      run_eagerly=True)
        capsys.readouterr()
        model.fit(X, Y, batch_size=32, epochs=2, shuffle=False, verbose=0)
        printed.append(_numbers(capsys.readouterr().out))
        counts.append(model.steps_seen)
    assert counts == [6, 6]   # 3 batches, 2 epochs: steps, not traces
    assert len(printed[0]) == len(printed[1]) == 6
    np.testing.assert_allclose(printed[0], printed[1], atol=2e-4)


def _recording_layer(lib, seen):
    """A call that takes float() and NumPy of an intermediate value, as one debugs with
    prints: concrete where nothing differentiates it (evaluate, predict, validation), JAX's
    gradient tracer in a training step (as in Keras on JAX, where float() refuses it)."""
    class Recording(lib.layers.Layer):
        def call(self, x):
            mean = lib.ops.mean(x)
            try:
                seen.append((float(mean), float(lib.ops.convert_to_numpy(mean))))
            except jax.errors.JAXTypeError:
                seen.append("traced")
            return x
    return Recording()


def test_a_call_reads_concrete_values_in_evaluate_predict_and_validation_as_keras():
    records = []
    weights = None
    for lib in LIBS:
        seen = []
        inputs = lib.Input((8,))
        model = lib.Model(inputs, _recording_layer(lib, seen)(lib.layers.Dense(3)(inputs)))
        weights = model.get_weights() if weights is None else weights
        model.set_weights(weights)
        model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
        del seen[:]   # the symbolic calls that made the model
        model.fit(X[:64], np.zeros((64, 3)), batch_size=32, epochs=1, shuffle=False,
                  validation_data=(X[64:], np.zeros((32, 3))), verbose=0)
        model.evaluate(X[:48], np.zeros((48, 3)), batch_size=16, verbose=0)
        model.predict(X[:40], batch_size=20, verbose=0)
        records.append(seen)
    concrete = [[r for r in seen if r != "traced"] for seen in records]
    assert len(concrete[0]) == 1 + 3 + 2   # validation's batch, evaluate's 3, predict's 2
    np.testing.assert_allclose(concrete[0], concrete[1], rtol=1e-5)
    assert records[0].count("traced") == 2   # the training steps: under jax.grad
    assert records[1].count("traced") >= 2   # Keras's too (and its build at fit's start)


def _dense_model(lib, dropout, calls=None):
    inputs = lib.Input((8,))
    hidden = lib.layers.Dense(16, activation="relu")(inputs)
    if calls is not None:
        class Counting(lib.layers.Layer):
            def call(self, x):
                calls.append(1)
                return x
        hidden = Counting()(hidden)
    if dropout:
        hidden = lib.layers.Dropout(0.3)(hidden)
    return lib.Model(inputs, lib.layers.Dense(3, activation="softmax")(hidden))


def _fit_numbers(model, seed=None):
    weight = np.linspace(0.5, 1.5, 96).astype("float32")
    history = model.fit(X, Y, batch_size=20, epochs=2, shuffle=False, sample_weight=weight,
                        validation_data=(X[:30], Y[:30]), verbose=0,
                        **({} if seed is None else {"seed": seed}))
    return history.history, model.get_weights()


def test_the_default_step_eagerly_trains_as_compiled_kilnet_and_as_keras():
    # with dropout: the eager steps draw the compiled steps' keys
    runs = []
    weights = None
    calls = []
    for eager in (False, True):
        model = _dense_model(kilnet, dropout=True, calls=calls)
        weights = model.get_weights() if weights is None else weights
        model.set_weights(weights)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], run_eagerly=eager)
        del calls[:]
        runs.append(_fit_numbers(model, seed=5))
    assert len(calls) == 2 * (5 + 2)   # eagerly: 5 steps and 2 validation batches an epoch
    (compiled, compiled_w), (eager, eager_w) = runs
    assert sorted(compiled) == sorted(eager)
    for name in compiled:
        np.testing.assert_allclose(eager[name], compiled[name], rtol=1e-5, atol=1e-6)
    for a, b in zip(eager_w, compiled_w):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # without dropout: Keras's run_eagerly gives the same numbers
    runs = []
    for lib in LIBS:
        model = _dense_model(lib, dropout=False)
        weights = model.get_weights() if lib is kilnet else weights
        model.set_weights(weights)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], run_eagerly=True)
        runs.append(_fit_numbers(model))
    (mine, mine_w), (theirs, theirs_w) = runs
    for name in theirs:
        np.testing.assert_allclose(mine[name], theirs[name], rtol=1e-4, atol=1e-5)
    for a, b in zip(mine_w, theirs_w):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _counting_model(calls):
    class Counting(kilnet.layers.Layer):
        def call(self, x):
            calls.append(1)
            return x * 2.0
    inputs = kilnet.Input((8,))
    return kilnet.Model(inputs, kilnet.layers.Dense(3)(Counting()(inputs)))


def test_evaluate_predict_and_the_on_batch_calls_run_each_batch_eagerly_as_compiled():
    results = {}
    weights = None
    for eager in (False, True):
        calls = []
        model = _counting_model(calls)
        weights = model.get_weights() if weights is None else weights
        model.set_weights(weights)
        model.compile(optimizer="sgd", loss="mse", metrics=["mae"], run_eagerly=eager)
        del calls[:]
        y = np.ones((50, 3), "float32")
        got = [model.evaluate(X[:50], y, batch_size=16, verbose=0),
               model.predict(X[:50], batch_size=16, verbose=0),
               model.test_on_batch(X[:10], y[:10]),
               model.predict_on_batch(X[:10]),
               model.train_on_batch(X[:10], y[:10]),
               model.get_weights()]
        results[eager] = got, len(calls)
    (compiled, compiled_calls), (eager, eager_calls) = results[False], results[True]
    assert eager_calls == 4 + 4 + 1 + 1 + 1   # one call a batch
    assert compiled_calls < eager_calls        # a trace a program
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(compiled)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_batch_hooks_come_around_each_eager_step_with_its_logs_as_keras(capsys):
    events = []
    for lib in LIBS:
        seen = []

        class Hooks(lib.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                seen.append(("begin", batch))

            def on_train_batch_end(self, batch, logs=None):
                seen.append(("end", batch, round(logs["loss"], 4)))

        model = _printing_model(lib)
        if lib is kilnet:
            weights = model.get_weights()
        model.set_weights(weights)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                      run_eagerly=True)

        class Shown(Hooks):
            def on_train_batch_begin(self, batch, logs=None):
                super().on_train_batch_begin(batch, logs)
                capsys.readouterr()

            def on_train_batch_end(self, batch, logs=None):
                seen.append(("printed", len(_numbers(capsys.readouterr().out))))
                super().on_train_batch_end(batch, logs)

        model.fit(X, Y, batch_size=32, epochs=1, shuffle=False, verbose=0,
                  callbacks=[Shown()])
        events.append(seen)
    assert [e[:2] for e in events[0]] == [e[:2] for e in events[1]]
    assert events[0][:3] == [("begin", 0), ("printed", 1), events[0][2]]
    np.testing.assert_allclose([e[2] for e in events[0] if e[0] == "end"],
                               [e[2] for e in events[1] if e[0] == "end"], atol=2e-4)


def test_model_run_eagerly_is_read_and_set_as_keras_and_decides_each_call():
    for lib in LIBS:
        model = _printing_model(lib)
        assert model.run_eagerly is False
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        assert (model.run_eagerly, bool(model.jit_compile)) == (False, True)
        model.run_eagerly = True   # after compile, as Keras allows
        assert model.run_eagerly is True
        model.fit(X, Y, batch_size=32, epochs=1, verbose=0)
        assert model.steps_seen == 3
    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(1)])
    with _no_warning():
        model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    assert (model.run_eagerly, model.jit_compile) == (True, False)


class _no_warning:
    def __enter__(self):
        import warnings
        self._catch = warnings.catch_warnings(record=True)
        self.caught = self._catch.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
        assert not [w for w in self.caught if "run_eagerly" in str(w.message)]


def test_the_non_finite_guard_checks_each_eager_step_and_runs_it_once():
    calls = []

    class GoesBad(kilnet.layers.Layer):
        def call(self, x):
            calls.append(1)
            return x * np.nan if len(calls) == 3 else x

    inputs = kilnet.Input((8,))
    model = kilnet.Model(inputs, kilnet.layers.Dense(3)(GoesBad()(inputs)))
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    del calls[:]
    model.fit(X[:64], np.zeros((64, 3)), batch_size=32, epochs=1, shuffle=False, verbose=0)
    before = model.get_weights()
    with pytest.raises(NonFiniteError) as caught:
        model.fit(X[:64], np.zeros((64, 3)), batch_size=32, epochs=1, shuffle=False,
                  verbose=0)
    assert caught.value.step == 0 and len(calls) == 3   # that step ran once, not replayed
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def _own_eval_steps(lib, seen):
    """A model's own test_step and predict_step (Keras's JAX form) that print a value of
    each batch with "%.4f"."""
    class OwnSteps(lib.Model):
        def test_step(self, state, data):
            tv, ntv, mv = state
            x, y = data
            p, ntv = self.stateless_call(tv, ntv, x)
            loss = lib.ops.mean((p - y) ** 2)
            seen.append("test %.4f" % loss)
            return {"mse": loss}, (tv, ntv, mv)

        def predict_step(self, state, data):
            tv, ntv = state
            x = data[0] if isinstance(data, tuple) else data
            p, ntv = self.stateless_call(tv, ntv, x)
            seen.append("predict %.4f" % lib.ops.mean(p))
            return {"p": p, "twice": 2 * p}, ntv

    inputs = lib.Input((8,))
    return OwnSteps(inputs, lib.layers.Dense(3)(inputs))


def test_a_models_own_test_and_predict_steps_run_eagerly_as_keras():
    results, weights = [], None
    for lib in LIBS:
        seen = []
        model = _own_eval_steps(lib, seen)
        weights = model.get_weights() if weights is None else weights
        model.set_weights(weights)
        model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
        logs = model.evaluate(X[:40], np.ones((40, 3)), batch_size=16, verbose=0,
                              return_dict=True)
        predicted = model.predict(X[:40], batch_size=16, verbose=0)
        results.append((seen, logs, predicted))
    (mine, my_logs, my_pred), (theirs, their_logs, their_pred) = results
    assert [s.split()[0] for s in mine] == ["test"] * 3 + ["predict"] * 3
    assert [s.split()[0] for s in theirs] == [s.split()[0] for s in mine]
    np.testing.assert_allclose([float(s.split()[1]) for s in mine],
                               [float(s.split()[1]) for s in theirs], atol=2e-4)
    np.testing.assert_allclose(my_logs["mse"], their_logs["mse"], rtol=1e-5)
    assert sorted(my_pred) == ["p", "twice"] and my_pred["p"].shape == (40, 3)
    for name in my_pred:
        np.testing.assert_allclose(my_pred[name], their_pred[name], rtol=1e-5, atol=1e-6)
