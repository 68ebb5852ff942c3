"""A model's own test_step and predict_step in Keras's JAX form ("customizing what happens in
fit() with JAX"): evaluate, fit's validation and predict run them inside kilnet's compiled
loops; their results are checked against NumPy on the model's own weights."""

import numpy as np
import pytest

import kilnet
from kilnet import layers, ops

RNG = np.random.default_rng(0)


class TrackedEval(kilnet.Model):
    """The guide's test_step: stateless_call, compute_loss, metrics updated statelessly;
    here it also logs the mean absolute error of the batch it saw last."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(1)
        self.loss_tracker = kilnet.metrics.Mean(name="loss")
        self.mae = kilnet.metrics.MeanAbsoluteError(name="mae")

    def call(self, inputs, training=None):
        return self.dense(inputs)

    def test_step(self, state, data):
        x, y = data
        trainable, non_trainable, metric_vars = state
        y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x,
                                                    training=False)
        loss = self.compute_loss(x, y, y_pred)   # the padding of a last batch does not count
        loss_vars = self.loss_tracker.stateless_update_state(metric_vars[:2], loss)
        mae_vars = self.mae.stateless_update_state(metric_vars[2:], y, y_pred)
        logs = {"loss": self.loss_tracker.stateless_result(loss_vars),
                "mae": self.mae.stateless_result(mae_vars),
                "last_batch_mae": ops.mean(ops.abs(y - y_pred))}
        return logs, (trainable, non_trainable, loss_vars + mae_vars)

    @property
    def metrics(self):
        return [self.loss_tracker, self.mae]


def _linear(model, x):
    kernel, bias = model.dense.get_weights()
    return x @ kernel + bias


def test_evaluate_runs_the_model_s_own_test_step():
    x, y = RNG.normal(size=(40, 3)).astype("f4"), RNG.normal(size=(40, 1)).astype("f4")
    model = TrackedEval()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    logs = model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    assert list(logs) == ["last_batch_mae", "loss", "mae"]   # by name, as Keras's
    pred = _linear(model, x)
    # The loss tracker averages the three batch means (16, 16, 8 rows: the padded rows of
    # the last batch are not counted by Mean, as the sample mask reaches the metrics).
    batch_losses = [np.mean((y[a:b] - pred[a:b]) ** 2) for a, b in ((0, 16), (16, 32), (32, 40))]
    np.testing.assert_allclose(logs["loss"], np.mean(batch_losses), rtol=1e-5)
    np.testing.assert_allclose(logs["mae"], np.mean(np.abs(y - pred)), rtol=1e-5)
    # Keras logs what the last step returned: with batches of 8, rows 32..39 alone
    last = model.evaluate(x, y, batch_size=8, return_dict=True, verbose=0)["last_batch_mae"]
    np.testing.assert_allclose(last, np.mean(np.abs(y[32:] - pred[32:])), rtol=1e-5)
    history = model.fit(x, y, epochs=1, batch_size=8, validation_data=(x, y), verbose=0)
    assert {"val_loss", "val_mae", "val_last_batch_mae"} <= set(history.history)
    np.testing.assert_allclose(history.history["val_mae"][0],
                               np.mean(np.abs(y - _linear(model, x))), rtol=1e-5)


class ClassesOut(kilnet.Model):
    """predict_step returning a structure of its own: the class ids and their scores."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = layers.Dense(3)

    def call(self, inputs, training=None):
        return self.dense(inputs)

    def predict_step(self, state, data):
        x = data   # one input: the batch itself, as Keras hands it
        trainable, non_trainable = state
        logits, non_trainable = self.stateless_call(trainable, non_trainable, x)
        return {"ids": ops.argmax(logits, axis=-1),
                "scores": ops.softmax(logits, axis=-1)}, non_trainable


def test_predict_runs_the_model_s_own_predict_step_and_keeps_its_structure():
    x = RNG.normal(size=(21, 4)).astype("f4")
    model = ClassesOut()
    model.compile(optimizer="sgd",
                  loss=kilnet.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, RNG.integers(0, 3, 21), epochs=1, batch_size=8, verbose=0)
    out = model.predict(x, batch_size=8, verbose=0)
    logits = _linear(model, x)
    assert set(out) == {"ids", "scores"} and out["ids"].dtype == np.int32
    np.testing.assert_array_equal(out["ids"], logits.argmax(-1))
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(out["scores"], expected, rtol=1e-5, atol=1e-6)
    one = model.predict_on_batch(x[:5])   # the same step on one batch
    assert set(one) == {"ids", "scores"}
    np.testing.assert_array_equal(one["ids"], out["ids"][:5])
    np.testing.assert_allclose(one["scores"], out["scores"][:5], rtol=1e-6)
    # evaluate still runs kilnet's own step: the compiled loss on the same weights
    y = logits.argmax(-1)
    loss = model.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(loss, -np.mean(np.log(expected[np.arange(21), y])), rtol=1e-5)


def test_a_predict_step_returning_a_scalar_is_refused_by_predict():
    class Summed(ClassesOut):
        def predict_step(self, state, data):
            trainable, non_trainable = state
            logits, non_trainable = self.stateless_call(trainable, non_trainable, data)
            return ops.sum(logits), non_trainable

    model = Summed()
    # Keras's predict fails joining the batches' scalars; the message says how to return one
    with pytest.raises(ValueError, match=r"returned a scalar.*ops.reshape\(value, \(1,\)\)"):
        model.predict(np.zeros((4, 4), "f4"), verbose=0)


class StatefulOwnSteps(kilnet.Model):
    """A stateful LSTM under the model's own test_step / predict_step: the non-trainable
    variables they return (the LSTM's states) carry to the next batch, as Keras keeps them."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.lstm = layers.LSTM(3, stateful=True)

    def call(self, inputs, training=None):
        return self.lstm(inputs)

    def test_step(self, state, data):
        x, y = data
        trainable, non_trainable, metric_vars = state
        y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x,
                                                    training=False)
        return {"out": ops.mean(y_pred)}, (trainable, non_trainable, metric_vars)

    def predict_step(self, state, data):
        trainable, non_trainable = state
        x = data[0] if isinstance(data, tuple) else data
        return self.stateless_call(trainable, non_trainable, x, training=False)


def test_own_test_and_predict_steps_carry_a_stateful_layer_s_states():
    x = RNG.normal(size=(4, 6, 2)).astype("f4")
    model = StatefulOwnSteps()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros((4, 3), "f4"), batch_size=2, shuffle=False, verbose=0)
    reference = layers.LSTM(3, return_state=True)
    reference(x[:2, :1])
    reference.set_weights(model.lstm.get_weights())

    def run(states):   # the two batches of 2 rows, row i of the second continuing the first
        out, *states = reference(x[:2], initial_state=states)
        second, *states = reference(x[2:], initial_state=states)
        return np.concatenate([out, second]), states

    model.lstm.reset_state()
    got = model.predict(x, batch_size=2, verbose=0)
    want, states = run(None)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    model.evaluate(x, np.zeros((4, 3), "f4"), batch_size=2, verbose=0)
    _, states = run(states)
    for got_state, want_state in zip(model.lstm.states, states):
        np.testing.assert_allclose(np.asarray(got_state), np.asarray(want_state), rtol=1e-5,
                                   atol=1e-6)


def test_an_own_train_step_with_a_stateful_layer_is_refused_with_the_ways_out():
    class OwnTrainStep(StatefulOwnSteps):
        def train_step(self, state, data):
            return {}, state

    model = OwnTrainStep()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"own train_step and stateful layers \(\['lstm'\]\).*"
                                         r"initial_state="):
        model.fit(np.zeros((4, 6, 2), "f4"), np.zeros((4, 3), "f4"), batch_size=2,
                  shuffle=False, verbose=0)


def test_a_compute_metrics_override_with_a_stateful_layer_is_refused_naming_the_override():
    # Such a model trains with Keras's form of train_step (which calls compute_metrics): the
    # message names the override it has, not a train_step it does not have.
    class OwnMetrics(StatefulOwnSteps):
        def compute_metrics(self, x, y, y_pred, sample_weight=None):
            return super().compute_metrics(x, y, y_pred, sample_weight)

    model = OwnMetrics()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"overrides compute_metrics and has stateful layers "
                                         r"\(\['lstm'\]\).*Drop the compute_metrics override"):
        model.fit(np.zeros((4, 6, 2), "f4"), np.zeros((4, 3), "f4"), batch_size=2,
                  shuffle=False, verbose=0)
