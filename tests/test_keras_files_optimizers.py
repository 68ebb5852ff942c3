"""Optimizer state in Keras 3's layout, for RMSprop with momentum and/or centering (velocities,
then momentums, then average gradients, one kind at a time) and for Nadam (momentum and
velocity per variable, then its `u_product` scalar): a kilnet model trained a few steps, saved
as .keras and opened by Keras continues with one more step to the weights kilnet's next step
gives, and the reverse; likewise for Lamb, Ftrl and Adafactor (whose factored slots have
shapes of their own)."""

import os
import warnings

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _optimizer_parity import assert_same, data, layers, one_more_step  # noqa: E402
from kilnet.keras_files import _optimizer as keras_layout  # noqa: E402

OPTIMIZERS = {
    "rmsprop_momentum": dict(learning_rate=0.01, momentum=0.9),
    "rmsprop_centered": dict(learning_rate=0.01, centered=True),
    "rmsprop_both": dict(learning_rate=0.005, rho=0.8, momentum=0.5, centered=True),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_kilnet_trained_rmsprop_continues_in_keras(name, tmp_path):
    x, y = data()
    model = kilnet.Sequential(layers(kilnet))
    model.build(seed=3)
    model.compile(optimizer=kilnet.optimizers.RMSprop(**OPTIMIZERS[name]), loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the state is written
        model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert int(theirs.optimizer.iterations.numpy()) == 4
    assert any(np.abs(np.asarray(v)).max() > 0 for v in theirs.optimizer.variables[2:])
    assert_same(one_more_step(theirs, x, y), one_more_step(model, x, y))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_keras_trained_rmsprop_continues_in_kilnet(name, tmp_path):
    x, y = data()
    km = keras.Sequential(layers(keras))
    km.compile(optimizer=keras.optimizers.RMSprop(**OPTIMIZERS[name]), loss="mse")
    km.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    km.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is left out
        mine = kilnet.models.load_model(tmp_path / "k.keras")
    assert mine.optimizer.hyper["centered"] == OPTIMIZERS[name].get("centered", False)
    assert_same(one_more_step(mine, x, y), one_more_step(km, x, y))


NADAM = {
    "defaults": dict(learning_rate=0.01),
    "tuned": dict(learning_rate=0.02, beta_1=0.8, beta_2=0.99, weight_decay=0.01),
}


def _u_product(steps, beta_1):
    return np.prod([beta_1 * (1 - 0.5 * 0.96 ** t) for t in range(1, steps + 1)])


@pytest.mark.parametrize("name", sorted(NADAM))
def test_kilnet_trained_nadam_continues_in_keras(name, tmp_path):
    x, y = data()
    model = kilnet.Sequential(layers(kilnet))
    model.build(seed=3)
    model.compile(optimizer=kilnet.optimizers.Nadam(**NADAM[name]), loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the state is written, u_product included
        model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert type(theirs.optimizer).__name__ == "Nadam"
    assert int(theirs.optimizer.iterations.numpy()) == 4
    u_product = float(np.asarray(theirs.optimizer.variables[-1]))
    assert u_product == pytest.approx(_u_product(4, NADAM[name].get("beta_1", 0.9)), rel=1e-6)
    assert all(np.abs(np.asarray(v)).max() > 0 for v in theirs.optimizer.variables[2:-1])
    assert_same(one_more_step(theirs, x, y), one_more_step(model, x, y))


@pytest.mark.parametrize("name", sorted(NADAM))
def test_keras_trained_nadam_continues_in_kilnet(name, tmp_path):
    x, y = data()
    km = keras.Sequential(layers(keras))
    km.compile(optimizer=keras.optimizers.Nadam(**NADAM[name]), loss="mse")
    km.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    km.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is left out
        mine = kilnet.models.load_model(tmp_path / "k.keras")
    assert type(mine.optimizer).__name__ == "Nadam"
    assert mine.optimizer.hyper["beta_1"] == NADAM[name].get("beta_1", 0.9)
    assert_same(one_more_step(mine, x, y), one_more_step(km, x, y))
    assert_same([np.asarray(v) for v in km.optimizer.variables[2:]],
                 keras_layout.export_arrays(mine.compiled)[2:])


def test_nadam_never_trained_round_trips_with_a_fresh_schedule(tmp_path):
    """Compiled and built but not trained: u_product is Keras's initial 1.0 and the step 0."""
    model = kilnet.Sequential(layers(kilnet))
    model.build(seed=3)
    model.compile(optimizer=kilnet.optimizers.Nadam(0.01), loss="mse")
    model.compiled.ensure_state()
    arrays = keras_layout.export_arrays(model.compiled)
    assert int(arrays[0]) == 0 and float(arrays[-1]) == 1.0
    assert len(arrays) == 2 + 2 * 4 + 1


# Lamb (momentum and velocity per variable), Ftrl (accumulator and linear per variable) and
# Adafactor (per variable its row means r, column means c and velocity; for a weight of rank < 2,
# r and c are int32 scalar placeholders), both ways.
MORE = {"Lamb": dict(learning_rate=0.01, weight_decay=0.01),
        "Ftrl": dict(learning_rate=0.1, l1_regularization_strength=0.01, beta=0.1),
        "Adafactor": dict(learning_rate=0.02)}


@pytest.mark.parametrize("name", sorted(MORE))
def test_kilnet_trained_lamb_ftrl_adafactor_continue_in_keras(name, tmp_path):
    x, y = data()
    model = kilnet.Sequential(layers(kilnet))
    model.build(seed=3)
    model.compile(optimizer=getattr(kilnet.optimizers, name)(**MORE[name]), loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the state is written
        model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert type(theirs.optimizer).__name__ == name
    assert int(theirs.optimizer.iterations.numpy()) == 4
    assert [np.asarray(v).dtype for v in theirs.optimizer.variables] == [
        np.asarray(a).dtype for a in keras_layout.export_arrays(model.compiled)]
    assert_same(one_more_step(theirs, x, y), one_more_step(model, x, y))


@pytest.mark.parametrize("name", sorted(MORE))
def test_keras_trained_lamb_ftrl_adafactor_continue_in_kilnet(name, tmp_path):
    x, y = data()
    km = keras.Sequential(layers(keras))
    km.compile(optimizer=getattr(keras.optimizers, name)(**MORE[name]), loss="mse")
    km.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    km.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is left out
        mine = kilnet.models.load_model(tmp_path / "k.keras")
    assert type(mine.optimizer).__name__ == name
    assert_same(one_more_step(mine, x, y), one_more_step(km, x, y))
    assert_same([np.asarray(v) for v in km.optimizer.variables[2:]],
                keras_layout.export_arrays(mine.compiled)[2:])
