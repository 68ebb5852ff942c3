"""A metric given as a function is logged under its name in snake case, as Keras's compile
names it (keras.io's EDSR reads `history.history["psnr"]` of its `def PSNR(...)`)."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import functools  # noqa: E402

import kilnet  # noqa: E402


def logged_keys(ns):
    def PSNR(y_true, y_pred):
        return -ns.ops.mean(ns.ops.square(y_true - y_pred))

    def myMeanError(y_true, y_pred):
        return ns.ops.mean(y_true - y_pred)

    def scaled_error(y_true, y_pred, scale):
        return scale * ns.ops.mean(ns.ops.abs(y_true - y_pred))

    model = ns.Sequential([ns.Input((3,)), ns.layers.Dense(1)])
    model.compile("sgd", "mse", metrics=[PSNR, myMeanError, "mae",
                                         functools.partial(scaled_error, scale=2.0)])
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    history = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0)
    return sorted(history.history), sorted(model.evaluate(x, y, verbose=0, return_dict=True))


def test_function_metrics_are_logged_under_keras_s_names():
    ours, theirs = logged_keys(kilnet), logged_keys(keras)
    assert ours == theirs
    assert "psnr" in ours[0] and "val_my_mean_error" in ours[0]
