"""What the optimizer-state tests of Keras files share: a small regression task, the model
built in kilnet or Keras from one description, one more training step, and the comparison."""

from __future__ import annotations

import re

import numpy as np


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
