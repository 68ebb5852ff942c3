"""Keras's base-optimizer argument gradient_accumulation_steps on kilnet's optimizers: the
gradients of N steps averaged and applied at every N-th step, `iterations` counting updates,
a schedule reading every step, the setting in configs, and the summed gradients in .keras
files (Keras's `gradient_accumulator` variables) and across a kilnet file's resume, compared
with Keras's own training from the same weights."""

import os
import warnings

import jax
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _optimizer_parity import assert_same, data, layers, unnumbered  # noqa: E402
from kilnet import optimizers  # noqa: E402
from kilnet.keras_files import _optimizer as keras_layout  # noqa: E402

CASES = [
    ("Adam", dict(learning_rate=0.05)),
    ("SGD", dict(learning_rate=0.05, momentum=0.9)),
    ("RMSprop", dict(learning_rate=0.01, clipnorm=0.5)),
    ("Adam", dict(learning_rate=0.05, use_ema=True, ema_momentum=0.8,
                  ema_overwrite_frequency=3)),
]


def _twins(seed=4):
    mine = kilnet.Sequential(layers(kilnet))
    mine.build(seed=seed)
    theirs = keras.Sequential(layers(keras))
    theirs.set_weights(mine.get_weights())
    return mine, theirs


@pytest.mark.parametrize("name,kwargs", CASES)
def test_training_matches_keras(name, kwargs):
    x, y = data(samples=40)
    mine, theirs = _twins()
    histories = []
    for model, ns in ((mine, kilnet), (theirs, keras)):
        model.compile(optimizer=getattr(ns.optimizers, name)(
            gradient_accumulation_steps=3, **kwargs), loss="mse")
        # 5 batches an epoch: the accumulation runs across the epochs' boundaries
        histories.append(model.fit(x, y, batch_size=8, epochs=3, shuffle=False,
                                   verbose=0).history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)
    assert_same(mine.get_weights(), theirs.get_weights())
    assert int(mine.optimizer.iterations) == int(theirs.optimizer.iterations) == 5


def test_a_schedule_reads_every_step_as_keras():
    x, y = data(samples=40)
    mine, theirs = _twins(seed=6)
    for model, ns in ((mine, kilnet), (theirs, keras)):
        decay = ns.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
        model.compile(optimizer=ns.optimizers.SGD(decay, gradient_accumulation_steps=2),
                      loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert_same(mine.get_weights(), theirs.get_weights())
    # 10 steps, 5 updates: the rate shown is the schedule's at Keras's raw step count
    assert int(mine.optimizer.iterations) == int(theirs.optimizer.iterations) == 5
    np.testing.assert_allclose(float(mine.optimizer.learning_rate),
                               float(theirs.optimizer.learning_rate), rtol=1e-6)
    np.testing.assert_allclose(float(mine.optimizer.learning_rate), 0.1 * 0.5 ** 5, rtol=1e-6)


def test_epochs_and_programs_that_split_an_accumulation_train_as_keras():
    """5 batches an epoch, 2 steps a compiled program, 3 steps an update: updates fall inside
    programs and epochs, and an epoch's last program runs 1 step."""
    x, y = data(samples=40)
    mine, theirs = _twins(seed=10)
    for model, ns in ((mine, kilnet), (theirs, keras)):
        model.compile(optimizer=ns.optimizers.Adam(0.05, gradient_accumulation_steps=3),
                      loss="mse", steps_per_execution=2)
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    assert_same(mine.get_weights(), theirs.get_weights())
    assert int(mine.optimizer.iterations) == int(theirs.optimizer.iterations) == 5


def test_weight_decay_acts_on_update_steps_only_as_keras():
    x, y = data(samples=40)
    mine, theirs = _twins(seed=11)
    for model, ns in ((mine, kilnet), (theirs, keras)):
        model.compile(optimizer=ns.optimizers.SGD(0.05, momentum=0.9, weight_decay=0.2,
                                                  gradient_accumulation_steps=3), loss="mse")
        model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    assert_same(mine.get_weights(), theirs.get_weights())


def test_the_setting_is_checked_and_configured_as_keras():
    for bad in (1, 0.5, "2"):
        with pytest.raises(ValueError, match="gradient_accumulation_steps must be an integer"):
            optimizers.Adam(gradient_accumulation_steps=bad)
    opt = optimizers.Adam(5e-05, gradient_accumulation_steps=2)
    assert opt.get_config()["gradient_accumulation_steps"] == 2
    assert optimizers.Adam.from_config(opt.get_config()).gradient_accumulation_steps == 2
    ours = optimizers.serialize(opt)
    keras_made = keras.optimizers.serialize(
        keras.optimizers.Adam(5e-05, gradient_accumulation_steps=2))
    assert unnumbered(keras_made["config"].pop("name")) == unnumbered(ours["config"].pop("name"))
    assert ours["config"] == keras_made["config"]
    assert keras.optimizers.deserialize(ours).gradient_accumulation_steps == 2
    assert optimizers.deserialize(keras_made).gradient_accumulation_steps == 2
    for name in optimizers.OPTIMIZER_TYPES:   # every optimizer takes it
        assert getattr(optimizers, name)(gradient_accumulation_steps=4).get_config()[
            "gradient_accumulation_steps"] == 4


def _fit_steps(model, x, y, steps):
    model.fit(x[:8 * steps], y[:8 * steps], batch_size=8, epochs=1, shuffle=False, verbose=0)


def test_kilnet_state_mid_accumulation_continues_in_keras(tmp_path):
    x, y = data(samples=40)
    mine, theirs = _twins(seed=7)
    for model, ns in ((mine, kilnet), (theirs, keras)):
        model.compile(optimizer=ns.optimizers.Adam(0.05, gradient_accumulation_steps=3),
                      loss="mse")
        _fit_steps(model, x, y, 4)   # one update, one step's gradients held
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the state is written, the accumulators included
        mine.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras")
    # the layers' names differ (numbered per process): compare what each variable is
    kinds = lambda opt: [v.path.split("/")[-1].split("_")[-1] for v in opt.variables]
    assert kinds(back.optimizer) == kinds(theirs.optimizer)
    assert kinds(back.optimizer)[2:6] == ["accumulator"] * 4
    assert_same([np.asarray(v) for v in back.optimizer.variables],
                [np.asarray(v) for v in theirs.optimizer.variables])
    assert_same(keras_layout.export_arrays(mine.compiled),
                [np.asarray(v) for v in theirs.optimizer.variables])
    _fit_steps(back, x, y, 2)   # the update that completes the held accumulation
    _fit_steps(mine, x, y, 2)
    assert_same(back.get_weights(), mine.get_weights())


def test_keras_state_mid_accumulation_continues_in_kilnet(tmp_path):
    x, y = data(samples=40)
    mine, theirs = _twins(seed=8)
    for model, ns in ((mine, kilnet), (theirs, keras)):
        model.compile(optimizer=ns.optimizers.SGD(0.05, momentum=0.9,
                                                  gradient_accumulation_steps=3), loss="mse")
        _fit_steps(model, x, y, 5)
    theirs.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is left out
        loaded = kilnet.models.load_model(tmp_path / "k.keras")
    assert loaded.optimizer.gradient_accumulation_steps == 3
    _fit_steps(loaded, x, y, 2)
    _fit_steps(mine, x, y, 2)
    assert_same(loaded.get_weights(), mine.get_weights())
    assert int(loaded.optimizer.iterations) == 2


def test_kilnet_file_resumes_mid_accumulation_exactly(tmp_path):
    x, y = data(samples=48)
    made = []
    for _ in range(2):
        model = kilnet.Sequential(layers(kilnet))
        model.build(seed=9)
        model.compile(optimizer=kilnet.optimizers.Adam(0.05, gradient_accumulation_steps=3),
                      loss="mse")
        made.append(model)
    straight, halted = made
    _fit_steps(straight, x, y, 6)
    _fit_steps(halted, x, y, 4)   # one update, step 4's gradients held
    halted.save(tmp_path / "m.kilnet")
    resumed = kilnet.models.load_model(tmp_path / "m.kilnet")
    assert resumed.optimizer.gradient_accumulation_steps == 3
    held = lambda model: jax.tree.leaves(optimizers.accumulation_state(
        model.compiled.state.opt_state).summed_gradients)
    assert any(np.any(np.asarray(s) != 0) for s in held(halted))
    for got, want in zip(held(resumed), held(halted)):
        np.testing.assert_array_equal(got, want)
    # steps 5 and 6: step 6's update reads the sum of steps 4 and 5
    resumed.fit(x[32:48], y[32:48], batch_size=8, epochs=1, shuffle=False, verbose=0)
    for got, want in zip(resumed.get_weights(), straight.get_weights()):
        np.testing.assert_array_equal(got, want)
