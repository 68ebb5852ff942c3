"""A model with a loss for each of several outputs whose class overrides compute_loss, run by
kilnet's built-in fit and evaluate steps (no train_step or metric hook of its own): each
output's loss is logged ("a_loss", "val_a_loss") where the override calls
super().compute_loss(...), and not where it never does, as Keras 3 logs them. Compared with
Keras itself from the same weights and data (sample weights, a last partial batch)."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

RNG = np.random.default_rng(3)
X = RNG.random((10, 3)).astype("float32")
Y = [RNG.random((10, 1)).astype("float32"), RNG.random((10, 1)).astype("float32")]
SAMPLE_WEIGHT = RNG.uniform(0, 2, 10).astype("float32")


def calling_super(lib):
    class CallsSuper(lib.Model):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
            return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                        **kwargs)
    return CallsSuper


def not_calling_super(lib):
    class OwnLoss(lib.Model):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
            return lib.ops.mean((y[0] - y_pred[0]) ** 2)
    return OwnLoss


def two_output_model(lib, cls):
    lib.utils.clear_session()
    inputs = lib.Input((3,), name="x")
    a = lib.layers.Dense(1, kernel_initializer="ones", name="a")(inputs)
    b = lib.layers.Dense(1, kernel_initializer="zeros", name="b")(inputs)
    model = cls(lib)(inputs, [a, b])
    model.compile(lib.optimizers.SGD(0.05), ["mse", "mae"], loss_weights=[0.5, 2.0],
                  metrics=[["mae"], ["mse"]])
    return model


def rounded(values):
    if isinstance(values, dict):
        return {name: rounded(value) for name, value in values.items()}
    if isinstance(values, (list, tuple)):
        return [rounded(value) for value in values]
    return round(float(values), 4)


def fit_history(lib, cls):
    model = two_output_model(lib, cls)
    history = model.fit(X, Y, sample_weight=SAMPLE_WEIGHT, epochs=2, batch_size=4,
                        shuffle=False, verbose=0, validation_data=(X, Y)).history
    return list(history), rounded(history)


def test_fit_logs_each_outputs_loss_when_compute_loss_calls_super_as_keras():
    got = {lib: fit_history(lib, calling_super) for lib in (keras, kilnet)}
    assert got[kilnet] == got[keras]
    names = ["a_loss", "a_mae", "b_loss", "b_mse", "loss"]
    assert got[keras][0] == names + ["val_" + name for name in names]


def test_evaluate_logs_each_outputs_loss_when_compute_loss_calls_super_as_keras():
    got = {}
    for lib in (keras, kilnet):
        model = two_output_model(lib, calling_super)   # evaluated before any fit
        as_dict = model.evaluate(X, Y, sample_weight=SAMPLE_WEIGHT, batch_size=4, verbose=0,
                                 return_dict=True)
        as_list = model.evaluate(X, Y, batch_size=4, verbose=0)
        got[lib] = (list(as_dict), rounded(as_dict), rounded(as_list))
    assert got[kilnet] == got[keras]
    assert got[keras][0] == ["a_loss", "a_mae", "b_loss", "b_mse", "loss"]
    assert len(got[keras][2]) == 5   # loss, a_loss, b_loss, then the metrics


def test_a_compute_loss_not_calling_super_logs_no_outputs_loss_as_keras():
    got = {}
    for lib in (keras, kilnet):
        names, history = fit_history(lib, not_calling_super)
        model = two_output_model(lib, not_calling_super)
        logs = model.evaluate(X, Y, batch_size=4, verbose=0, return_dict=True)
        got[lib] = (names, history, rounded(logs))
    assert got[kilnet] == got[keras]
    assert "a_loss" not in got[keras][0] and "val_b_loss" not in got[keras][0]


def test_one_output_under_a_compute_loss_calling_super_logs_as_before_as_keras():
    got = {}
    for lib in (keras, kilnet):
        lib.utils.clear_session()
        inputs = lib.Input((3,), name="x")
        outputs = lib.layers.Dense(1, kernel_initializer="ones", name="a")(inputs)
        model = calling_super(lib)(inputs, outputs)
        model.compile(lib.optimizers.SGD(0.05), "mse", metrics=["mae"])
        history = model.fit(X, Y[0], sample_weight=SAMPLE_WEIGHT, epochs=2, batch_size=4,
                            shuffle=False, verbose=0, validation_data=(X, Y[0])).history
        got[lib] = (list(history), rounded(history),
                    rounded(model.evaluate(X, Y[0], batch_size=4, verbose=0)))
    assert got[kilnet] == got[keras]
    assert got[keras][0] == ["loss", "mae", "val_loss", "val_mae"]


def calling_super_twice(lib):
    class TwiceSuper(lib.Model):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
            loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                        **kwargs)
            return loss + super().compute_loss(x=x, y=y, y_pred=[2 * y_pred[0], y_pred[1]],
                                               sample_weight=sample_weight, **kwargs)
    return TwiceSuper


def test_each_call_of_super_counts_in_the_outputs_losses_as_keras():
    # Keras's compiled loss updates each output's tracker at every call: a step calling it
    # twice logs the mean of both calls' losses, on batches and over an epoch
    got = {}
    for lib in (keras, kilnet):
        names, history = fit_history(lib, calling_super_twice)
        model = two_output_model(lib, calling_super_twice)
        on_batch = model.train_on_batch(X, Y, sample_weight=SAMPLE_WEIGHT, return_dict=True)
        got[lib] = (names, history, rounded(on_batch))
    assert got[kilnet] == got[keras]
    assert "a_loss" in got[keras][2]
