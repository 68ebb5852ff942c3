"""What the optimizer tests share: a small regression task, the model built in kilnet or Keras
from one description, one more training step, the comparison, and the check of an optimizer
class's signature and config against Keras's."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest


def data(samples=32, offset=0.1):
    """A linear target of 5 features plus `offset`, `samples` rows, seed 0."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, 5)).astype("float32")
    y = (x @ rng.normal(size=(5, 1)) + offset).astype("float32")
    return x, y


def layers(ns):
    """The layers of the model, from `ns` = kilnet or keras."""
    return [ns.Input(shape=(5,)), ns.layers.Dense(4, activation="tanh"), ns.layers.Dense(1)]


def one_more_step(model, x, y):
    model.fit(x[:16], y[:16], batch_size=16, epochs=1, shuffle=False, verbose=0)
    return model.get_weights()


def assert_same(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def unnumbered(name: str) -> str:
    """An optimizer's default name without the number Keras and kilnet give each further
    instance in a process ("adam_3" -> "adam"): the two libraries' counts differ."""
    return re.sub(r"_\d+$", "", name)


def assert_signature_and_config_are_keras(name: str) -> None:
    """kilnet's optimizer class `name` has Keras's defaults, learning rate, get() name and
    get_config (round trip through from_config; keys, values and name as Keras's)."""
    import keras

    from kilnet import optimizers
    ours, theirs = getattr(optimizers, name), getattr(keras.optimizers, name)
    keras_defaults = {p.name: p.default for p in inspect.signature(theirs.__init__).parameters
                      .values() if p.default is not p.empty}
    for key, value in ours.defaults.items():
        assert keras_defaults[key] == value, key
    assert keras_defaults["learning_rate"] == ours().learning_rate
    config = ours(learning_rate=0.01).get_config()
    assert type(optimizers.get(name.lower())) is ours
    assert ours.from_config(config).get_config() == config
    keras_config = theirs(learning_rate=0.01).get_config()
    assert keras_config["learning_rate"] == pytest.approx(config.pop("learning_rate"))
    assert unnumbered(keras_config["name"]) == unnumbered(config.pop("name"))
    assert {k: keras_config[k] for k in config} == config
