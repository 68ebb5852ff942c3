"""Learning-rate schedules (kilnet.optimizers.schedules) against Keras 3: values step by step,
signatures and configs, the step a training update sees (weights after SGD with a schedule equal
Keras's), your own schedule, saving in .kilnet and Keras's .keras both ways, refusals."""

from __future__ import annotations

import inspect
import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers, ops  # noqa: E402
from kilnet.models import load_model  # noqa: E402

schedules = kilnet.optimizers.schedules
STEPS = [0, 1, 2, 5, 9, 10, 11, 17, 30, 31, 69, 70, 71, 150, 1000]
CASES = [
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5)),
    ("ExponentialDecay", dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5,
                              staircase=True)),
    ("PiecewiseConstantDecay", dict(boundaries=[10, 30, 70], values=[1.0, 0.5, 0.0, 0.2])),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=30)),
    ("PolynomialDecay", dict(initial_learning_rate=0.1, decay_steps=30, end_learning_rate=0.01,
                             power=0.5, cycle=True)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5)),
    ("InverseTimeDecay", dict(initial_learning_rate=0.1, decay_steps=10, decay_rate=0.5,
                              staircase=True)),
    ("CosineDecay", dict(initial_learning_rate=0.1, decay_steps=70, alpha=0.1)),
    ("CosineDecay", dict(initial_learning_rate=0.0, decay_steps=60, warmup_target=0.2,
                         warmup_steps=10)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=10)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=10, t_mul=1.0,
                                 m_mul=0.5, alpha=0.1)),
    ("CosineDecayRestarts", dict(initial_learning_rate=0.1, first_decay_steps=7, t_mul=3.0,
                                 m_mul=0.8)),
]


@pytest.mark.parametrize("name, kwargs", CASES, ids=[
    f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_values_are_keras(name, kwargs):
    ours = getattr(schedules, name)(**kwargs)
    theirs = getattr(keras.optimizers.schedules, name)(**kwargs)
    got = [float(ours(np.int32(s))) for s in STEPS]
    want = [float(theirs(np.int32(s))) for s in STEPS]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert ours.get_config() == theirs.get_config()
    again = schedules.deserialize(schedules.serialize(ours))
    assert type(again) is type(ours) and again.get_config() == ours.get_config()


@pytest.mark.parametrize("name", sorted(schedules.SCHEDULES))
def test_signatures_are_keras(name):
    def signature(cls):
        return [(p.name, p.default) for p in inspect.signature(cls.__init__).parameters.values()]

    assert signature(getattr(schedules, name)) == signature(
        getattr(keras.optimizers.schedules, name))


def _regression(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3).astype(np.float32)
    return x, y


def test_training_with_a_schedule_updates_as_keras():
    """Plain SGD over 12 full-batch steps: kilnet's weights equal Keras's only if each update
    sees the same step (0 at the first) and the same rate."""
    x, y = _regression()
    kernel = np.array([[0.1], [0.2], [-0.3]], np.float32)
    results = []
    for ns, opt in ((kilnet, kilnet.optimizers.SGD), (keras, keras.optimizers.SGD)):
        schedule = ns.optimizers.schedules.CosineDecay(0.0, 8, warmup_target=0.2,
                                                       warmup_steps=4)
        model = ns.Sequential([ns.Input(shape=(3,)), ns.layers.Dense(1)])
        model.compile(optimizer=opt(learning_rate=schedule), loss="mse")
        model.layers[0].set_weights([kernel, np.zeros(1, np.float32)])
        model.fit(x, y, batch_size=64, epochs=12, shuffle=False, verbose=0)
        results.append(model.layers[0].get_weights())
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@kilnet.saving.register_serializable(package="TestSchedules")
class WarmupInverseSqrt(schedules.LearningRateSchedule):
    """The Transformer tutorial's schedule, imports changed."""

    def __init__(self, d_model, warmup_steps=4000):
        self.d_model = d_model
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = ops.cast(step, "float32") + 1.0
        arg1 = ops.rsqrt(step)
        arg2 = step * (self.warmup_steps ** -1.5)
        return ops.rsqrt(ops.cast(self.d_model, "float32")) * ops.minimum(arg1, arg2)

    def get_config(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps}


def test_your_own_schedule_trains_and_saves(tmp_path):
    x, y = _regression()
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), layers.Dense(1)])
    model.compile(optimizer=kilnet.optimizers.Adam(WarmupInverseSqrt(16, warmup_steps=5)),
                  loss="mse")
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model.save(tmp_path / "m.kilnet")
    again = load_model(tmp_path / "m.kilnet")
    schedule = again.optimizer.learning_rate.schedule
    assert isinstance(schedule, WarmupInverseSqrt) and schedule.warmup_steps == 5
    # the loaded model continues exactly as the original does
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    again.fit(x, y, batch_size=16, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.warns(UserWarning, match="WarmupInverseSqrt is yours, not one of Keras"):
        model.save(tmp_path / "m.keras")


def test_keras_files_keep_the_schedule_and_the_state_both_ways(tmp_path):
    x, y = _regression()
    theirs = keras.Sequential([keras.Input(shape=(3,)), keras.layers.Dense(1)])
    theirs.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(
        0.05, 5, 0.7)), loss="mse")
    theirs.fit(x, y, batch_size=16, epochs=2, verbose=0)
    theirs.save(tmp_path / "k.keras")
    ours = load_model(tmp_path / "k.keras")
    schedule = ours.optimizer.learning_rate.schedule
    assert type(schedule) is schedules.ExponentialDecay and schedule.decay_rate == 0.7
    # the optimizer state came with it: one more epoch in each gives the same weights
    theirs.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    ours.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "ours.keras")
    back = keras.models.load_model(tmp_path / "ours.keras")
    rate = back.optimizer._learning_rate
    assert isinstance(rate, keras.optimizers.schedules.ExponentialDecay) and rate.decay_steps == 5
    assert int(back.optimizer.iterations) == 12


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match=r"decay_steps must be > 0. Received: decay_steps=0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="one more value than boundaries"):
        schedules.PiecewiseConstantDecay([10], [1.0])
    with pytest.raises(ValueError, match="must increase strictly"):
        schedules.PiecewiseConstantDecay([10, 5], [1.0, 0.5, 0.1])
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'os.system'"):
        schedules.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match="a plain function cannot"):
        kilnet.optimizers.SGD(learning_rate=lambda step: 0.1).get_config()


def test_schedules_import_as_a_module_the_keras_way():
    from kilnet.optimizers.schedules import CosineDecay, ExponentialDecay

    import kilnet.optimizers.schedules as schedules_module
    assert ExponentialDecay is kilnet.optimizers.schedules.ExponentialDecay
    assert CosineDecay.__module__ == schedules_module.__name__ == "kilnet.optimizers.schedules"


def _rate_and_count(lib):
    """The training guide's reading of a schedule's rate and the step count after 8 steps."""
    x, y = _regression()
    model = lib.Sequential([lib.Input(shape=(3,)), lib.layers.Dense(1)])
    decay = lib.optimizers.schedules.ExponentialDecay(0.1, 4, 0.5, staircase=True)
    model.compile(optimizer=lib.optimizers.RMSprop(learning_rate=decay), loss="mse")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return (float(np.array(model.optimizer.learning_rate)),
            float(np.array(model.optimizer.iterations)))


def test_a_schedules_rate_and_the_step_count_read_as_keras():
    ours, theirs = _rate_and_count(kilnet), _rate_and_count(keras)
    assert ours == pytest.approx(theirs) and ours == pytest.approx((0.025, 8.0))


def test_learning_rate_assign_reaches_the_compiled_step():
    x, y = _regression()
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), layers.Dense(1)])
    model.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    model.optimizer.learning_rate.assign(0.0)   # Keras's Variable form
    assert float(model.optimizer.learning_rate) == 0.0 == model.compiled.learning_rate
    before = model.get_weights()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)   # a zero rate: no change
    with pytest.raises(TypeError, match="schedule"):
        kilnet.optimizers.SGD(kilnet.optimizers.schedules.ExponentialDecay(
            0.1, 4, 0.5)).learning_rate.assign(0.1)
