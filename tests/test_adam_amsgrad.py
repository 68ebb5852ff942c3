"""Adam and AdamW with amsgrad=True, as Keras's: the step divides by the largest second moment
so far (velocity_hat). Checked against a NumPy transcription of Keras's update, against Keras's
own training from the same weights, in .keras files both ways (velocity_hat after every
momentum and velocity), in Keras's optimizer configs, and across a kilnet file's resume."""

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _optimizer_parity import assert_same, data, layers, one_more_step, unnumbered  # noqa: E402,E501
from kilnet import optimizers  # noqa: E402
from kilnet.keras_files import _optimizer as keras_layout  # noqa: E402

# Gradients that shrink after the first step: with a short memory (beta_2=0.5) v decays
# below its largest value, so the amsgrad step (divided by v_hat) differs from plain Adam's.
GRADIENTS = [np.array([2.0, -1.0, 0.5], np.float32), np.array([0.1, -0.2, 0.4], np.float32),
             np.array([0.05, 0.3, -0.1], np.float32)]


def numpy_keras_amsgrad(p, gradients, lr, b1=0.9, b2=0.999, eps=1e-7, wd=None):
    """Keras's Adam.update_step with amsgrad (and AdamW's decay before it), in NumPy float64."""
    p = p.astype(np.float64)
    m, v, v_hat = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(gradients, start=1):
        if wd:
            p = p - lr * wd * p
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        v_hat = np.maximum(v_hat, v)
        p = p - m * alpha / (np.sqrt(v_hat) + eps)
    return p, v, v_hat


@pytest.mark.parametrize("weight_decay", [None, 0.1])
def test_update_is_keras_formula(weight_decay):
    tx = optimizers.keras_adam(0.1, beta_2=0.5, amsgrad=True, weight_decay=weight_decay)
    params = jnp.array([1.0, -2.0, 0.5])
    state = tx.init(params)
    for g in GRADIENTS:
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = params + updates
    want, v, v_hat = numpy_keras_amsgrad(np.array([1.0, -2.0, 0.5]), GRADIENTS, 0.1,
                                         b2=0.5, wd=weight_decay)
    np.testing.assert_allclose(params, want, rtol=1e-5)
    np.testing.assert_allclose(state.nu_hat, v_hat, rtol=1e-5)
    assert np.any(v_hat > v * 1.5)   # the case where amsgrad changes the step


def test_amsgrad_changes_the_step_and_plain_adam_keeps_two_moments():
    params = jnp.array([1.0, -2.0, 0.5])
    finals = {}
    for amsgrad in (False, True):
        tx = optimizers.Adam(learning_rate=0.1, beta_2=0.5, amsgrad=amsgrad).transformation()
        state, p = tx.init(params), params
        for g in GRADIENTS:
            updates, state = tx.update(jnp.asarray(g), state, p)
            p = p + updates
        finals[amsgrad] = p
    assert not np.allclose(finals[False], finals[True], rtol=1e-3)
    plain = optimizers.Adam().transformation().init(params)
    assert "nu_hat" not in str(jax.tree_util.tree_structure(plain))


@pytest.mark.parametrize("name,kwargs", [
    ("Adam", dict(learning_rate=0.05, amsgrad=True)),
    ("AdamW", dict(learning_rate=0.05, weight_decay=0.05, amsgrad=True)),
    ("Adam", dict(learning_rate=0.05, amsgrad=True, global_clipnorm=0.5)),
])
def test_training_matches_keras(name, kwargs):
    x, y = data(samples=48)
    mine = kilnet.Sequential(layers(kilnet))
    mine.build(seed=4)
    theirs = keras.Sequential(layers(keras))
    theirs.set_weights(mine.get_weights())
    plain = kilnet.Sequential(layers(kilnet))
    plain.build(seed=4)
    for model, ns, extra in ((mine, kilnet, {}), (theirs, keras, {}),
                             (plain, kilnet, {"amsgrad": False})):
        model.compile(optimizer=getattr(ns.optimizers, name)(**{**kwargs, **extra}),
                      loss="mse")
        model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0)
    assert_same(mine.get_weights(), theirs.get_weights())
    assert not np.allclose(mine.get_weights()[0], plain.get_weights()[0], atol=1e-4)


def test_kilnet_trained_amsgrad_continues_in_keras(tmp_path):
    x, y = data()
    model = kilnet.Sequential(layers(kilnet))
    model.build(seed=3)
    model.compile(optimizer=kilnet.optimizers.Adam(learning_rate=0.02, amsgrad=True),
                  loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the state is written, velocity_hat included
        model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert theirs.optimizer.amsgrad is True
    names = [v.path.split("/")[-1] for v in theirs.optimizer.variables]
    assert [n.endswith("velocity_hat") for n in names] == [False] * 10 + [True] * 4
    assert_same([np.asarray(v) for v in theirs.optimizer.variables[2:]],
                keras_layout.export_arrays(model.compiled)[2:])
    assert_same(one_more_step(theirs, x, y), one_more_step(model, x, y))


def test_keras_trained_amsgrad_continues_in_kilnet(tmp_path):
    x, y = data()
    km = keras.Sequential(layers(keras))
    km.compile(optimizer=keras.optimizers.AdamW(learning_rate=0.02, amsgrad=True), loss="mse")
    km.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    km.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is left out
        mine = kilnet.models.load_model(tmp_path / "k.keras")
    assert type(mine.optimizer).__name__ == "AdamW" and mine.optimizer.hyper["amsgrad"]
    assert_same([np.asarray(v) for v in km.optimizer.variables[2:]],
                keras_layout.export_arrays(mine.compiled)[2:])
    assert_same(one_more_step(mine, x, y), one_more_step(km, x, y))


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_configs_are_keras(name):
    ours = optimizers.serialize(getattr(optimizers, name)(learning_rate=0.5, amsgrad=True))
    keras_made = keras.optimizers.serialize(
        getattr(keras.optimizers, name)(learning_rate=0.5, amsgrad=True))
    assert unnumbered(keras_made["config"].pop("name")) == unnumbered(ours["config"].pop("name"))
    assert ours["config"] == keras_made["config"]
    assert list(ours["config"]) == list(keras_made["config"])
    assert keras.optimizers.deserialize(ours).amsgrad is True
    assert optimizers.deserialize(keras_made).hyper["amsgrad"] is True


def test_kilnet_file_resumes_amsgrad_exactly(tmp_path):
    x, y = data()
    straight = kilnet.Sequential(layers(kilnet))
    straight.build(seed=5)
    straight.compile(optimizer=kilnet.optimizers.Adam(0.02, amsgrad=True), loss="mse")
    halted = kilnet.Sequential(layers(kilnet))
    halted.build(seed=5)
    halted.compile(optimizer=kilnet.optimizers.Adam(0.02, amsgrad=True), loss="mse")
    straight.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    halted.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    halted.save(tmp_path / "m.kilnet")
    resumed = kilnet.models.load_model(tmp_path / "m.kilnet")
    assert resumed.optimizer.hyper["amsgrad"] is True
    resumed.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for got, want in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_nadam_still_refuses_amsgrad():
    with pytest.raises(TypeError, match="'amsgrad'"):
        optimizers.Nadam(amsgrad=True)
