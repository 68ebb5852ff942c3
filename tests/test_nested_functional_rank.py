"""A functional model takes inputs one axis short of a declared last axis of size 1 (or with
an extra one) wherever it is called, as Keras's Functional adjusts them in its call
(`_adjust_input_rank`): fit's data, an eager call, `stateless_call`, a symbolic call inside
another model, and a subclassed trainer's JAX-style `train_step` (keras.io's trainer_pattern,
which fits (n, 28, 28) images through a model declared for `Input((28, 28, 1))`). Checked
against Keras from the same weights."""

import os

import jax
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.random.default_rng(0).random((12, 4, 4)).astype("float32")
Y = np.arange(12) % 3


def _inner(lib, weights=None):
    inputs = lib.Input(shape=(4, 4, 1))
    hidden = lib.layers.Dense(5, activation="relu")(lib.layers.Flatten()(inputs))
    model = lib.Model(inputs, lib.layers.Dense(3, activation="softmax")(hidden))
    if weights is not None:
        model.set_weights(weights)
    return model


def _trainer_class(lib, own_step):
    """keras.io's trainer_pattern in Keras 3's JAX form (own_step), or with fit's own step."""
    class Trainer(lib.Model):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def loss_and_updates(self, trainable, non_trainable, x, y):
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x)
            return self.compute_loss(x, y, y_pred), (y_pred, non_trainable)

        def jax_train_step(self, state, data):
            trainable, non_trainable, optimizer_vars, metrics_vars = state
            x, y = data
            grad_fn = jax.value_and_grad(self.loss_and_updates, has_aux=True)
            (loss, (y_pred, non_trainable)), grads = grad_fn(trainable, non_trainable, x, y)
            trainable, optimizer_vars = self.optimizer.stateless_apply(
                optimizer_vars, grads, trainable)
            new_metrics_vars, logs = [], {}
            for metric in self.metrics:
                own = metrics_vars[len(new_metrics_vars):
                                   len(new_metrics_vars) + len(metric.variables)]
                if metric.name == "loss":
                    own = metric.stateless_update_state(own, loss)
                else:
                    own = metric.stateless_update_state(own, y, y_pred)
                logs[metric.name] = metric.stateless_result(own)
                new_metrics_vars += own
            return logs, (trainable, non_trainable, optimizer_vars, new_metrics_vars)

        def call(self, x):
            return self.model(x)

    if own_step:
        Trainer.train_step = Trainer.jax_train_step
    return Trainer


@pytest.mark.parametrize("own_step", [True, False], ids=["jax_train_step", "fit_step"])
def test_a_trainer_fits_a_wrapped_model_on_data_without_the_channel_axis(own_step):
    start = _inner(keras).get_weights()
    histories, predictions = [], []
    for lib in (kilnet, keras):
        inner = _inner(lib)
        trainer = _trainer_class(lib, own_step)(inner)
        trainer.build((None, 4, 4))   # builds the wrapped model for (4, 4) samples
        inner.set_weights(start)
        trainer.compile(optimizer=lib.optimizers.SGD(0.5),
                        loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = trainer.fit(X, Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        histories.append(history.history)
        predictions.append(trainer.predict(X, verbose=0))
    mine, theirs = histories
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(mine[key], theirs[key], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predictions[0], predictions[1], rtol=1e-5, atol=1e-6)


def test_eager_and_stateless_calls_adjust_the_rank_as_keras():
    theirs = _inner(keras)
    mine = _inner(kilnet)
    mine(X)   # built by its first call, on (4, 4) samples
    mine.set_weights(theirs.get_weights())
    expected = np.asarray(theirs(X))
    np.testing.assert_allclose(np.asarray(mine(X)), expected, rtol=1e-6, atol=1e-6)
    # an extra last axis of size 1 goes
    np.testing.assert_allclose(np.asarray(mine(X[..., None, None])), expected, rtol=1e-6,
                               atol=1e-6)
    out, _ = mine.stateless_call([v.value for v in mine.trainable_variables],
                                 [v.value for v in mine.non_trainable_variables], X)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-6, atol=1e-6)
    # the model keeps its declared input: fit on the declared shape still works
    assert mine.build_shape == (4, 4, 1) and mine.input_shape == (None, 4, 4, 1)


@pytest.mark.parametrize("sample_shape", [(4, 4), (4, 4, 1, 1)])
def test_a_functional_model_called_inside_another_on_another_rank(sample_shape):
    weights = _inner(keras).get_weights()
    data = X.reshape((len(X),) + sample_shape)
    outputs = []
    for lib in (kilnet, keras):
        inner = _inner(lib, weights)
        inputs = lib.Input(shape=sample_shape)
        outer = lib.Model(inputs, inner(inputs))
        assert outer.output_shape == (None, 3)
        outer.compile(optimizer=lib.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        loss = outer.fit(data, Y, batch_size=4, epochs=1, shuffle=False,
                         verbose=0).history["loss"]
        outputs.append((loss, outer.predict(data, verbose=0)))
    np.testing.assert_allclose(outputs[0][0], outputs[1][0], rtol=1e-5)
    np.testing.assert_allclose(outputs[0][1], outputs[1][1], rtol=1e-5, atol=1e-6)
