"""`model.optimizer = ...` as in Keras: a compile() of yours that sets the optimizer after
super().compile() (keras.io's Zero-DCE) trains with it, and setting it after training goes
on from the trained weights with the new optimizer's fresh state."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    return x, (x @ rng.normal(size=(4, 1))).astype("float32")


def start():
    model = kilnet.Sequential([kilnet.Input((4,)), kilnet.layers.Dense(3, activation="tanh"),
                               kilnet.layers.Dense(1)])
    model.build(seed=1)
    return model.get_weights()


def zero_dce_style(ns, weights):
    class Enhancer(ns.Model):
        def __init__(self):
            super().__init__()
            self.hidden = ns.layers.Dense(3, activation="tanh")
            self.out = ns.layers.Dense(1)

        def call(self, x):
            return self.out(self.hidden(x))

        def compile(self, learning_rate, **kwargs):
            super().compile(**kwargs)
            self.optimizer = ns.optimizers.Adam(learning_rate=learning_rate)

    model = Enhancer()
    model(np.zeros((1, 4), "float32"))
    model.set_weights(weights)
    return model


def test_a_compile_of_yours_that_sets_the_optimizer_trains_with_it_as_keras():
    x, y = data()
    weights = start()
    results = {}
    for ns in (kilnet, keras):
        model = zero_dce_style(ns, weights)
        model.compile(learning_rate=0.05, loss="mse", metrics=["mae"])
        history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history
        results[ns.__name__] = (model.get_weights(), history, model.optimizer)
    ours, theirs = results["kilnet"], results["keras"]
    for got, want in zip(ours[0], theirs[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert sorted(ours[1]) == sorted(theirs[1]) == ["loss", "mae"]
    np.testing.assert_allclose(ours[1]["loss"], theirs[1]["loss"], rtol=1e-5)
    assert type(ours[2]).__name__ == "Adam" and int(ours[2].iterations) == 8


def test_setting_it_after_training_goes_on_from_the_trained_weights():
    x, y = data()
    weights = start()
    results = {}
    for ns in (kilnet, keras):
        model = ns.Sequential([ns.Input((4,)), ns.layers.Dense(3, activation="tanh"),
                               ns.layers.Dense(1)])
        model.set_weights(weights)
        model.compile(optimizer=ns.optimizers.SGD(learning_rate=0.05), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        model.optimizer = ns.optimizers.Adam(learning_rate=0.01)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        results[ns.__name__] = model.get_weights()
    for got, want in zip(results["kilnet"], results["keras"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_before_compile_it_is_kept_and_compile_replaces_it():
    model = kilnet.Sequential([kilnet.Input((4,)), kilnet.layers.Dense(1)])
    adam = kilnet.optimizers.Adam()
    model.optimizer = adam
    assert model.optimizer is adam
    model.compile(optimizer="sgd", loss="mse")
    assert type(model.optimizer).__name__ == "SGD"
