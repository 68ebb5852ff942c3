"""Adamax, Adadelta and Lion against Keras 3's own optimizers: the same variables and gradient
sequence through both, step by step; signatures and configs; training through compile();
their state in Keras's .keras files both ways (tests/_optimizer_parity.py)."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import _optimizer_parity as parity  # noqa: E402
import kilnet  # noqa: E402
from kilnet import optimizers  # noqa: E402
from kilnet.models import load_model  # noqa: E402

CASES = [
    ("Adamax", {}), ("Adamax", dict(learning_rate=0.05, beta_1=0.8, beta_2=0.9, epsilon=1e-4)),
    ("Adamax", dict(learning_rate=0.02, weight_decay=0.1)),
    ("Adadelta", {}), ("Adadelta", dict(learning_rate=1.0, rho=0.9, epsilon=1e-6)),
    ("Adadelta", dict(learning_rate=0.5, weight_decay=0.05)),
    ("Lion", {}), ("Lion", dict(learning_rate=0.01, beta_1=0.5, beta_2=0.9)),
    ("Lion", dict(learning_rate=0.01, weight_decay=0.2)),
]


def _gradients(steps=6, seed=0):
    rng = np.random.default_rng(seed)
    return [{"w": rng.normal(size=(3, 2)).astype(np.float32),
             "b": rng.normal(size=(2,)).astype(np.float32)} for _ in range(steps)]


@pytest.mark.parametrize("name, kwargs", CASES,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_updates_are_keras_step_by_step(name, kwargs):
    start = {"w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
             "b": np.array([0.5, -0.25], np.float32)}
    theirs = getattr(keras.optimizers, name)(**kwargs)
    variables = {k: keras.Variable(v, name=k) for k, v in start.items()}
    tx = getattr(optimizers, name)(**kwargs).transformation()
    params = jax.tree.map(jnp.asarray, start)
    state = tx.init(params)
    for step, grads in enumerate(_gradients()):
        theirs.apply_gradients([(grads[k], variables[k]) for k in ("w", "b")])
        updates, state = tx.update(grads, state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        for k in ("w", "b"):
            np.testing.assert_allclose(params[k], variables[k].numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} {k} after step {step + 1}")


@pytest.mark.parametrize("name", ["Adamax", "Adadelta", "Lion"])
def test_signatures_configs_and_names_are_keras(name):
    parity.assert_signature_and_config_are_keras(name)


@pytest.mark.parametrize("name", ["adamax", "adadelta", "lion"])
def test_a_model_trains_with_each(name):
    x, y = parity.data()
    model = kilnet.Sequential(parity.layers(kilnet))
    learning_rate = {"adadelta": 1.0, "adamax": 0.05, "lion": 0.005}[name]
    model.compile(optimizer=optimizers.get(name).from_config(
        {"learning_rate": learning_rate}), loss="mse")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=8, epochs=20, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.8 * before


@pytest.mark.parametrize("name", ["Adamax", "Adadelta", "Lion"])
def test_their_state_crosses_keras_files_both_ways(name, tmp_path):
    x, y = parity.data()
    theirs = keras.Sequential(parity.layers(keras))
    theirs.compile(optimizer=getattr(keras.optimizers, name)(learning_rate=0.01), loss="mse")
    theirs.fit(x, y, batch_size=8, epochs=2, verbose=0)
    theirs.save(tmp_path / "k.keras")
    ours = load_model(tmp_path / "k.keras")
    assert type(ours.optimizer) is getattr(optimizers, name)
    parity.assert_same(parity.one_more_step(ours, x, y), parity.one_more_step(theirs, x, y))
    ours.save(tmp_path / "ours.keras")
    back = keras.models.load_model(tmp_path / "ours.keras")
    parity.assert_same(parity.one_more_step(back, x, y), parity.one_more_step(ours, x, y))
