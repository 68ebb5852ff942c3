"""What a model's metrics and its own JAX-form train_step / test_step report, as Keras 3
reports it: the paths of metric variables, and the order and names of the logs a step
returns (nested result dicts flattened where their key sorts, as Keras's logs are). Each case
runs Keras itself on the same data and weights."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import jax  # noqa: E402
import numpy as np  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

X = np.linspace(0, 1, 32, dtype="float32").reshape(8, 4)
Y = np.ones((8, 1), "float32")


def _dense_model(lib, cls=None):
    inputs = lib.Input((4,), name="x")
    outputs = lib.layers.Dense(1, kernel_initializer="ones", name="d")(inputs)
    return (cls or lib.Model)(inputs, outputs)


def test_metric_variable_paths_follow_the_metric_name():
    paths = {}
    for lib in (keras, kilnet):
        lib.utils.clear_session()
        model = _dense_model(lib)
        model.compile("sgd", "mse", metrics=["mae", lib.metrics.RootMeanSquaredError()])
        model.fit(X, Y, epochs=1, batch_size=8, verbose=0)
        held = lib.metrics.Mean()
        paths[lib] = ([v.path for v in model.metrics_variables],
                      [v.path for v in held.variables])
    assert paths[kilnet] == paths[keras]
    assert paths[keras][1] == ["mean/total", "mean/count"]
