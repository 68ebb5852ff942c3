"""Keras's `weight_decay` on SGD, RMSprop and Adagrad (a base argument of every Keras 3
optimizer: p <- p - lr * wd * p before the step): training against Keras's twin from the same
weights, configs, serialize / deserialize and .keras files both ways."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

import _optimizer_parity as parity  # noqa: E402
import kilnet  # noqa: E402
from kilnet import optimizers  # noqa: E402

CASES = [("SGD", dict(learning_rate=0.1, momentum=0.9, weight_decay=0.01)),
         ("SGD", dict(learning_rate=0.05, momentum=0.5, nesterov=True, weight_decay=0.1)),
         ("SGD", dict(learning_rate=0.1, weight_decay=0.2)),
         ("RMSprop", dict(learning_rate=0.01, weight_decay=0.01)),
         ("RMSprop", dict(learning_rate=0.01, momentum=0.5, centered=True, weight_decay=0.3)),
         ("Adagrad", dict(learning_rate=0.1, weight_decay=0.01)),
         ("Adagrad", dict(learning_rate=0.2, initial_accumulator_value=0.5, weight_decay=0.2,
                          clipnorm=0.5))]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]


def _trained(ns, name, kwargs, epochs=4):
    """(loss history, weights) of the same small model trained in kilnet or Keras."""
    x, y = parity.data()
    model = ns.Sequential([ns.Input(shape=(5,)),
                           ns.layers.Dense(4, activation="tanh", name="hidden",
                                           kernel_initializer="ones", bias_initializer="ones"),
                           ns.layers.Dense(1, name="out", kernel_initializer="ones",
                                           bias_initializer="ones")])
    model.compile(optimizer=getattr(ns.optimizers, name)(**kwargs), loss="mse")
    history = model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0)
    return history.history["loss"], model.get_weights()


@pytest.mark.parametrize("name, kwargs", CASES, ids=IDS)
def test_training_with_weight_decay_is_keras(name, kwargs):
    ours_loss, ours_weights = _trained(kilnet, name, kwargs)
    theirs_loss, theirs_weights = _trained(keras, name, kwargs)
    np.testing.assert_allclose(ours_loss, theirs_loss, rtol=1e-5)
    parity.assert_same(ours_weights, theirs_weights)
    # the decay changed the result: without it the weights end elsewhere
    _, undecayed = _trained(kilnet, name, {**kwargs, "weight_decay": None})
    assert not np.allclose(undecayed[0], ours_weights[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adagrad"])
def test_weight_decay_is_in_the_config_as_keras(name):
    ours = getattr(optimizers, name)(learning_rate=0.5, weight_decay=0.05)
    config = ours.get_config()
    assert config["weight_decay"] == 0.05
    assert getattr(optimizers, name).from_config(config).get_config() == config
    theirs = keras.optimizers.serialize(getattr(keras.optimizers, name)(learning_rate=0.5,
                                                                        weight_decay=0.05))
    entry = optimizers.serialize(ours)
    assert list(entry["config"]) == list(theirs["config"])   # Keras's key order
    assert entry["config"]["weight_decay"] == theirs["config"]["weight_decay"] == 0.05
    back = optimizers.deserialize(theirs)
    assert type(back) is type(ours) and back.hyper["weight_decay"] == 0.05
    assert getattr(optimizers, name)().get_config()["weight_decay"] is None   # off by default


@pytest.mark.parametrize("name", ["SGD", "RMSprop"])
def test_keras_files_carry_weight_decay_both_ways(name, tmp_path):
    """A Keras model saved mid-training continues in kilnet as in Keras, decay included, and
    kilnet's .keras file gives Keras the same optimizer back."""
    x, y = parity.data()
    kwargs = dict(learning_rate=0.05, momentum=0.5, weight_decay=0.1)
    keras.utils.clear_session()
    theirs = keras.Sequential(parity.layers(keras))
    theirs.compile(optimizer=getattr(keras.optimizers, name)(**kwargs), loss="mse")
    theirs.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    theirs.save(tmp_path / "k.keras")
    ours = kilnet.models.load_model(tmp_path / "k.keras")
    assert ours.optimizer.hyper["weight_decay"] == pytest.approx(0.1)
    again = keras.models.load_model(tmp_path / "k.keras")
    parity.assert_same(parity.one_more_step(ours, x, y), parity.one_more_step(again, x, y))
    ours.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")
    assert back.optimizer.weight_decay == pytest.approx(0.1)
    parity.assert_same(parity.one_more_step(back, x, y), parity.one_more_step(ours, x, y))


def test_weight_decay_keeps_the_optax_state_keras_files_map():
    """With or without weight_decay the state is Optax's own SGD's (the one Keras files map)."""
    params = {"w": np.ones(3, np.float32)}
    ours = optimizers.SGD(0.1, momentum=0.9).transformation().init(params)
    plain = optax.sgd(0.1, momentum=0.9).init(params)
    decayed = optimizers.SGD(0.1, momentum=0.9, weight_decay=0.1).transformation().init(params)
    inner = lambda s: s[0].inner_state   # the chain's inject_hyperparams stage
    assert type(inner(ours)) is type(plain) is type(inner(decayed))
