"""A step whose loss and gradients are finite but whose update is not (a huge learning rate,
Adam with epsilon=0 on a feature that is always zero, BatchNormalization statistics that
overflow) is never applied either: the compiled loop checks the training state once per chunk
and, when it is not finite, replays the chunk step by step from a copy of its start, so the
model keeps the state of its last finite step, and the error names the update as the cause."""

from __future__ import annotations

import numpy as np
import pytest

import kilnet
from kilnet import layers
from kilnet.errors import NonFiniteError


def _finite(model) -> bool:
    return all(np.isfinite(w).all() for w in model.get_weights())


def _zero_feature_data(n=24):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    x[:, 2] = 0.0  # the weights from this feature get zero gradients: Adam divides 0 by 0
    return x, rng.normal(size=(n, 1)).astype(np.float32)


def _epsilon_zero_model(on_nonfinite="stop"):
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), layers.Dense(1)])
    model.compile(optimizer=kilnet.optimizers.Adam(learning_rate=0.01, epsilon=0.0),
                  loss="mse", on_nonfinite=on_nonfinite)
    model.build(seed=0)
    return model


def test_a_non_finite_update_stops_fit_with_the_weights_before_it():
    x, y = _zero_feature_data()
    model = _epsilon_zero_model()
    initial = [w.copy() for w in model.get_weights()]
    with pytest.raises(NonFiniteError, match=r"epoch 1, step 1\b.*update") as info:
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    message = str(info.value)
    assert "loss and the gradients were finite" in message
    assert "epsilon" in message and "learning rate" in message
    assert info.value.step == 0
    for before, after in zip(initial, model.get_weights()):
        np.testing.assert_array_equal(before, after)  # the first step was not applied
    state = model.compiled.state
    import jax
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(state.opt_state))


def test_skip_mode_skips_each_non_finite_update_and_counts_it():
    x, y = _zero_feature_data()
    model = _epsilon_zero_model("skip")
    initial = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert history.skipped_steps == 6  # 3 steps an epoch, every update is 0/0 somewhere
    for before, after in zip(initial, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_a_huge_learning_rate_stops_before_the_weights_overflow():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = rng.normal(size=(64, 1)).astype(np.float32) * 1e3
    model = kilnet.Sequential([kilnet.Input(shape=(4,)), layers.Dense(8), layers.Dense(1)])
    model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=1e6), loss="mse")
    with pytest.raises(NonFiniteError) as info:
        model.fit(x, y, batch_size=8, epochs=20, verbose=0, seed=0)
    assert _finite(model)
    assert "learning rate" in str(info.value)


def test_batch_normalization_statistics_that_overflow_are_not_kept():
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(32, 3)) * 1e20).astype(np.float32)  # x**2 overflows float32
    y = rng.integers(0, 2, 32)
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), layers.BatchNormalization(),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(NonFiniteError, match="update"):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, seed=0)
    assert _finite(model)  # moving_variance too


def test_the_weights_kept_are_those_after_the_last_finite_step():
    """Divergence that overflows mid-chunk: the chunk is replayed from its start, and the
    weights kept equal, bitwise, those of the same run stopped just before the bad step."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 2)).astype(np.float32) * 10
    y = rng.normal(size=(400, 1)).astype(np.float32)

    def model():
        m = kilnet.Sequential([kilnet.Input(shape=(2,)), layers.Dense(1)])
        m.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.5), loss="mse")
        m.build(seed=0)
        return m

    diverging = model()
    with pytest.raises(NonFiniteError) as info:
        diverging.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    bad_step = info.value.step
    assert 2 < bad_step < 100  # several finite steps first, inside the first chunk
    assert _finite(diverging)
    reference = model()
    reference.fit(x[:4 * bad_step], y[:4 * bad_step], batch_size=4, epochs=1, shuffle=False,
                  verbose=0)
    for kept, expected in zip(diverging.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(kept, expected)
