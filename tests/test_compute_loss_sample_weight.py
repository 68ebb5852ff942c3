"""compute_loss and sample weights as Keras's customizing-fit guide uses them: a custom step
passing the batch's sample_weight to (stateless_)compute_loss gets Keras's
sum(loss * weight) / samples, and an override of compute_loss gets the labels and fit's
sample weights; compared with Keras 3 from the same weights."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402


def regressor(lib, steps=None):
    inputs = lib.Input(shape=(3,) if steps is None else (steps, 3))
    return inputs, lib.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")(
        inputs)


def data(steps=None, n=10, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n,) if steps is None else (n, steps)
    x = rng.normal(size=shape + (3,)).astype(np.float32)
    y = rng.normal(size=shape + (1,)).astype(np.float32)
    return x, y, rng.uniform(0, 2, shape).astype(np.float32)


def own_test_step_model(lib):
    class Stepped(lib.Model):
        def test_step(self, state, data):
            x, y, sample_weight = data
            trainable, non_trainable, metrics_variables = state
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x)
            loss, _ = self.stateless_compute_loss(trainable, non_trainable, metrics_variables,
                                                  x=x, y=y, y_pred=y_pred,
                                                  sample_weight=sample_weight)
            return {"my_loss": loss}, (trainable, non_trainable, metrics_variables)
    return Stepped


@pytest.mark.parametrize("steps", [None, 4])
def test_a_custom_step_weighs_compute_loss_as_keras(steps):
    x, y, w = data(steps)
    results = []
    for lib in (kilnet, keras):
        inputs, outputs = regressor(lib, steps)
        model = own_test_step_model(lib)(inputs, outputs)
        model.compile(loss="mse")
        results.append(model.evaluate(x, y, sample_weight=w, batch_size=len(x), verbose=0,
                                      return_dict=True)["my_loss"])
    predictions = x.sum(-1, keepdims=True)
    squared = ((predictions - y) ** 2)[..., 0]
    by_hand = (squared * w).sum() / squared.size   # not / w.sum()
    assert results[0] == pytest.approx(by_hand, rel=1e-5)
    assert results[0] == pytest.approx(results[1], rel=1e-5)


def overriding_model(lib, seen):
    class Doubled(lib.Model):
        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                         training=True):
            seen.append((type(y).__name__, None if sample_weight is None
                         else tuple(sample_weight.shape)))
            return 2.0 * super().compute_loss(x=x, y=y, y_pred=y_pred,
                                              sample_weight=sample_weight)
    return Doubled


def test_an_overriding_compute_loss_gets_labels_and_fit_weights_as_keras():
    x, y, w = data(n=10, seed=1)
    histories, weights, seen = [], [], {kilnet: [], keras: []}
    for lib in (kilnet, keras):
        inputs, outputs = regressor(lib)
        model = overriding_model(lib, seen[lib])(inputs, outputs)
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.05), loss="mse")
        # batch 4 of 10 samples: kilnet pads the last batch, Keras's is smaller
        history = model.fit(x, y, sample_weight=w, batch_size=4, epochs=2, shuffle=False,
                            verbose=0)
        histories.append(history.history["loss"])
        weights.append(model.get_weights())
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)
    for ours, theirs in zip(*weights):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    # the labels come as an array (not labels and weights together), the weights per sample
    assert seen[kilnet]
    assert all(kind not in ("tuple", "list") and shape is not None and len(shape) == 1
               for kind, shape in seen[kilnet]), seen[kilnet]
