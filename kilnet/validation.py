"""Input checks that run before anything is traced or compiled.

Every error names the argument, what was expected, what was received, and the likely fix.
"""

from __future__ import annotations

import warnings

import numpy as np

from kilnet import data as data_lib


def _check_batch_size(batch_size, n, warn=True):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, e.g. batch_size=32. "
                         f"Received: batch_size={batch_size!r}")
    if batch_size > n:
        if not warn:  # evaluate/predict: a smaller last batch is normal, as in Keras
            return n
        warnings.warn(f"batch_size={batch_size} is larger than the {n} samples; using one "
                      f"full batch of {n}.", stacklevel=4)
        return n
    return int(batch_size)


def _check_xy(x, y, x_name="x", y_name="y"):
    x = data_lib.as_array(x, x_name)
    y = data_lib.as_array(y, y_name)
    if len(x) != len(y):
        raise ValueError(f"{x_name} and {y_name} must have the same number of samples. "
                         f"Received: {x_name} with {len(x)} and {y_name} with {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{x_name} is empty: there is nothing to train on. "
                         f"Received: {x_name} of shape {x.shape}")
    return x, y


def check_input_shape(model, x, argument="x"):
    expected = model.input_shape
    if expected is not None and tuple(x.shape[1:]) != tuple(expected):
        raise ValueError(
            f"{argument} has samples of shape {tuple(x.shape[1:])} but the model expects "
            f"{tuple(expected)}. Reshape the data, or change the model's input: "
            "input_shape=..., kilnet.Input(shape=...), or a Flatten/Reshape layer."
        )


def check_fit_inputs(model, loss, x, y, *, batch_size, epochs, validation_split,
                     validation_data, initial_epoch, verbose):
    x, y = _check_xy(x, y)
    check_input_shape(model, x)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer. Received: epochs={epochs!r}")
    if not isinstance(validation_split, (int, float)) or not 0 <= validation_split < 1:
        raise ValueError("validation_split must be a number in [0, 1), e.g. 0.1. "
                         f"Received: validation_split={validation_split!r}")
    val = None
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a tuple (x_val, y_val). "
                             f"Received: {type(validation_data).__name__}")
        val = _check_xy(*validation_data, x_name="validation_data[0]",
                        y_name="validation_data[1]")
        check_input_shape(model, val[0], "validation_data[0]")
    n_train = len(x) - int(len(x) * validation_split) if validation_data is None else len(x)
    batch_size = _check_batch_size(batch_size, max(n_train, 1))
    return x, y, val, batch_size


def check_eval_inputs(model, loss, x, y, *, batch_size):
    x, y = _check_xy(x, y)
    check_input_shape(model, x)
    return x, y, _check_batch_size(batch_size, len(x), warn=False)


def check_predict_inputs(model, x, *, batch_size):
    x = data_lib.as_array(x, "x")
    if len(x) == 0:
        raise ValueError(f"x is empty: there is nothing to predict. Received: x of shape {x.shape}")
    check_input_shape(model, x)
    return x, _check_batch_size(batch_size, len(x), warn=False)
