"""Numeric faults during training: a non-finite step is never applied.

The fault is injected honestly through the compiled step: every input passes the input checks
(all values are finite), but one sample is so large (3e38, near float32's maximum) that the
first Dense layer, whose kernel is all ones, overflows to infinity on it, so the loss of the
batch holding it is NaN. With shuffle=False and batch_size=4, sample 9 sits in step 2 (0-based)
of every epoch. The kernel initializer makes the models deterministic without a seed.
"""

import re

import jax
import numpy as np
import pytest

import kilnet
from kilnet import layers
from kilnet.errors import KilnetError, NonFiniteError
from kilnet.validation import assert_all_finite

N, BATCH, POISONED = 16, 4, 9
FAULT_STEP = POISONED // BATCH  # 2


def _model(on_nonfinite="stop"):
    model = kilnet.Sequential([
        layers.Dense(3, activation="softmax", kernel_initializer="ones", input_shape=(4,)),
    ])
    model.compile(optimizer=kilnet.optimizers.Adam(learning_rate=0.05),
                  loss="sparse_categorical_crossentropy", on_nonfinite=on_nonfinite)
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (N, 4)).astype(np.float32)
    y = (np.arange(N) % 3).astype(np.int32)
    poisoned = x.copy()
    poisoned[POISONED] = 3e38  # finite, so the input checks accept it
    return x, y, poisoned


def _params(model):
    return [np.asarray(a) for a in jax.tree.leaves(model.params)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


def test_stop_raises_at_the_step_and_keeps_the_last_finite_parameters():
    x, y, poisoned = _data()
    model = _model()
    initial = _params(model)
    with pytest.raises(NonFiniteError, match=r"epoch 1, step 3\b.*not finite") as info:
        model.fit(poisoned, y, batch_size=BATCH, epochs=3, shuffle=False, verbose=0)
    assert (info.value.epoch, info.value.step) == (0, FAULT_STEP)
    assert "learning rate" in str(info.value) and "on_nonfinite='skip'" in str(info.value)
    faulted = _params(model)
    assert all(np.isfinite(p).all() for p in faulted)
    assert any(not np.allclose(p, q) for p, q in zip(faulted, initial))  # it did train

    # Reference: exactly the steps before the fault, on a fresh identical model.
    reference = _model()
    reference.fit(x[:FAULT_STEP * BATCH], y[:FAULT_STEP * BATCH], batch_size=BATCH, epochs=1,
                  shuffle=False, verbose=0)
    _assert_same(faulted, _params(reference))

    # The fault does not stick to the model: the next fit starts clean and names its own epoch.
    with pytest.raises(NonFiniteError, match=r"epoch 3, step 3\b") as info:
        model.fit(poisoned, y, batch_size=BATCH, epochs=3, initial_epoch=2, shuffle=False,
                  verbose=0)
    assert (info.value.epoch, info.value.step) == (2, FAULT_STEP)
    history = model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.isfinite(model.evaluate(x, y, batch_size=BATCH, verbose=0))


def test_skip_skips_counts_and_reports(capsys):
    x, y, poisoned = _data()
    model = _model(on_nonfinite="skip")
    history = model.fit(poisoned, y, batch_size=BATCH, epochs=2, shuffle=False, verbose=2)
    assert history.skipped_steps == 2  # one per epoch
    assert int(model.compiled.state.skipped) == 2
    assert all(np.isfinite(v) for v in history.history["loss"])
    out = capsys.readouterr().out
    assert re.search(r"skipped 2 training step", out)
    assert len([line for line in out.splitlines() if "skipped" in line]) == 1

    # A skipped step changes nothing, not even Adam's step count: the same as training
    # without the poisoned batch.
    keep = np.r_[0:FAULT_STEP * BATCH, (FAULT_STEP + 1) * BATCH:N]
    reference = _model()
    reference.fit(x[keep], y[keep], batch_size=BATCH, epochs=2, shuffle=False, verbose=0)
    _assert_same(_params(model), _params(reference))

    # A clean fit afterwards reports no skipped step.
    assert model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0).skipped_steps == 0
    assert int(model.compiled.state.skipped) == 2


def test_error_types():
    assert issubclass(NonFiniteError, FloatingPointError)
    assert issubclass(NonFiniteError, KilnetError)
    assert kilnet.NonFiniteError is NonFiniteError


def test_assert_all_finite_for_checkpoint_writers():
    import jax.numpy as jnp

    good = {"dense": {"kernel": jnp.ones((2, 3)), "bias": np.zeros(3, np.float32)},
            "count": np.int32(4), "half": jnp.ones(2, jnp.bfloat16), "none": None}
    assert_all_finite(good, "checkpoint 'epoch_1'")
    bad = {"dense": {"kernel": jnp.ones((2, 3)).at[1, 2].set(jnp.nan),
                     "bias": np.array([0.0, np.inf, -np.inf], np.float32)},
           "half": jnp.ones(2, jnp.bfloat16).at[0].set(jnp.inf)}
    with pytest.raises(NonFiniteError, match=r"Refusing to save checkpoint 'epoch_2'") as info:
        assert_all_finite(bad, "checkpoint 'epoch_2'")
    message = str(info.value)
    assert "['dense']['kernel'] (1 of 6)" in message
    assert "['dense']['bias'] (2 of 3)" in message
    assert "['half'] (1 of 2)" in message
