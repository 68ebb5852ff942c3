"""Keras's Adam update in one native pass per weight (kilnet/optimizers/_adam_kernel.py and
the "adam_update" handler of kilnet/_kernels/onednn.cc): the same numbers, to the bit, as
Optax's update followed by optax.apply_updates (itself checked against a NumPy transcription
of Keras's formula in tests/test_optimizers.py), in one step, over several steps, with weight
decay, a schedule, non-finite gradients, and in a whole fit."""

import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import kilnet
from kilnet import layers, optimizers
from kilnet._kernels import onednn
from kilnet.optimizers import _adam_kernel

pytestmark = pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64"),
    reason="kilnet's native kernels are built against oneDNN's x86-64 Linux wheels")

# A Dense kernel of four pieces (the handler's unit is 25,088 numbers), one whose last piece
# is ragged, a convolution kernel, a bias, and a bfloat16 weight (left to XLA).
SHAPES = {"dense": (784, 128), "ragged": (2 * 25088 + 7,), "conv": (3, 3, 8, 16),
          "bias": (128,)}


def weights(seed=0, with_bfloat16=True):
    rng = np.random.default_rng(seed)
    tree = {name: jnp.asarray(rng.standard_normal(shape).astype(np.float32) * 0.05)
            for name, shape in SHAPES.items()}
    if with_bfloat16:
        tree["half"] = jnp.asarray(rng.standard_normal((64, 64)), jnp.bfloat16)
    return tree


def gradients(params, seed):
    rng = np.random.default_rng(seed)
    grads = {}
    for name, p in params.items():
        g = rng.standard_normal(p.shape).astype(np.float32) * 10.0 ** rng.integers(-6, 0)
        g.reshape(-1)[::7] = 0.0   # zero gradients: moments decay towards denormals
        grads[name] = jnp.asarray(g, p.dtype)
    return grads


def optax_step(optimizer):
    tx = optimizer.transformation()

    def step(grads, state, params):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state
    return jax.jit(step)


def assert_bitwise(a, b, last_bit_apart=()):
    """Equal leaves, except those whose path names one of `last_bit_apart`: equal but for
    the last bits of some numbers (the weights are about 0.05, one unit in their last place
    4e-9)."""
    flat_a, flat_b = jax.tree.leaves_with_path(a), jax.tree.leaves(b)
    for (path, x), y in zip(flat_a, flat_b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        if any(name in jax.tree_util.keystr(path) for name in last_bit_apart):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=2e-8)
        else:
            np.testing.assert_array_equal(x, y)


OPTIMIZERS = {
    "adam": lambda: optimizers.Adam(learning_rate=0.01),
    "adam_wd": lambda: optimizers.Adam(learning_rate=0.01, weight_decay=0.1),
    "adamw": lambda: optimizers.AdamW(learning_rate=0.003, beta_1=0.8, epsilon=1e-5),
    "schedule": lambda: optimizers.Adam(
        learning_rate=optimizers.schedules.ExponentialDecay(0.01, 2, 0.5)),
}


def test_the_native_handler_is_built_here():
    assert onednn.available(), onednn.status()


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_steps_equal_optax_update_and_apply_updates_to_the_bit(name, at_users_xla_level):
    """With decoupled weight decay, XLA's own code contracts (-alpha m) r - lr wd p into a
    multiply-add on the first product where it vectorizes the update (sizes that are a
    multiple of 8), on the second where it runs it one number at a time (the ragged weight);
    the handler follows the first, so there the two differ in the last bit of a few
    weights."""
    if at_users_xla_level:
        return
    optimizer = OPTIMIZERS[name]()
    ragged = ("ragged",) if optimizer.hyper.get("weight_decay") else ()
    params = weights()
    state = optimizer.transformation().init(params)
    native = jax.jit(optimizer.weights_update())
    expected_params, expected_state = params, state
    for step in range(6):
        grads = gradients(params, seed=step)
        params, state = native(grads, state, params)
        expected_params, expected_state = optax_step(optimizer)(
            grads, expected_state, expected_params)
        assert_bitwise(params, expected_params, ragged)
        assert_bitwise(state, expected_state, ragged)
    # The weights did move, and the float32 ones went through the handler.
    assert float(jnp.max(jnp.abs(params["dense"] - weights()["dense"]))) > 1e-3
    hlo = jax.jit(optimizer.weights_update()).lower(grads, state, params).as_text()
    assert hlo.count("kilnet_onednn_adam_update") == 1


def test_weights_excluded_from_decay_take_the_undecayed_native_pass(at_users_xla_level):
    """exclude_from_weight_decay's mask (here as a tree): the decayed weights in one handler
    call, the excluded ones in another without decay, each the numbers of XLA's update, and
    the excluded ones those of Adam without weight decay."""
    if at_users_xla_level:
        return
    mask = {"dense": True, "ragged": False, "conv": False, "bias": True, "half": True}
    native = optimizers.keras_adam(0.01, weight_decay=0.1, decay_mask=mask, gives_weights=True)
    in_xla = optimizers.keras_adam(0.01, weight_decay=0.1, decay_mask=mask)
    undecayed = optimizers.keras_adam(0.01)

    def xla_step(tx):
        def step(grads, state, params):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state
        return jax.jit(step)

    params = weights()
    state = native.init(params)
    grads = gradients(params, seed=3)
    got, _ = jax.jit(native.update)(grads, state, params)
    expected, _ = xla_step(in_xla)(grads, state, params)
    plain, _ = xla_step(undecayed)(grads, state, params)
    assert_bitwise(got, expected)
    assert_bitwise({k: got[k] for k in ("ragged", "conv")},
                   {k: plain[k] for k in ("ragged", "conv")})
    assert not np.array_equal(got["dense"], plain["dense"])   # the decay did apply there
    hlo = jax.jit(native.update).lower(grads, state, params).as_text()
    assert hlo.count("kilnet_onednn_adam_update") == 2


def test_small_models_stay_in_xla():
    optimizer = optimizers.Adam()
    params = {"w": jnp.ones((8, 8)), "b": jnp.zeros(8)}
    state = optimizer.transformation().init(params)
    hlo = jax.jit(optimizer.weights_update()).lower(params, state, params).as_text()
    assert "kilnet_onednn_adam_update" not in hlo
    assert not _adam_kernel.accepts(list(params.values()))
    assert _adam_kernel.accepts([jnp.ones((64, 64))])


def test_non_finite_gradients_reach_the_weights_and_moments_as_in_optax(at_users_xla_level):
    if at_users_xla_level:
        return
    optimizer = optimizers.Adam()
    params = weights(with_bfloat16=False)
    state = optimizer.transformation().init(params)
    grads = gradients(params, seed=1)
    grads["dense"] = grads["dense"].at[3, 5].set(jnp.nan).at[7, 1].set(jnp.inf)
    new, new_state = jax.jit(optimizer.weights_update())(grads, state, params)
    expected, expected_state = optax_step(optimizer)(grads, state, params)
    assert_bitwise(new, expected)
    assert_bitwise(new_state, expected_state)
    assert np.isnan(new["dense"][3, 5]) and not np.isfinite(new["dense"][7, 1])
    assert np.isfinite(np.delete(np.asarray(new["dense"]).ravel(), [3 * 128 + 5, 7 * 128 + 1])).all()


def test_clipping_and_moving_averages_keep_the_optax_path():
    assert optimizers.Adam(clipnorm=1.0).weights_update() is None
    assert optimizers.Adam(use_ema=True).weights_update() is None
    assert optimizers.RMSprop().weights_update() is None
    assert optimizers.AdamW().weights_update() is not None


def make_model():
    return kilnet.Sequential([layers.Input((28, 28)), layers.Flatten(),
                              layers.Dense(128, activation="relu"),
                              layers.Dense(10, activation="softmax")])


def test_a_fit_trains_the_same_weights_as_through_optax(monkeypatch, at_users_xla_level):
    if at_users_xla_level:
        return
    traced = []
    native = _adam_kernel._native
    monkeypatch.setattr(_adam_kernel, "_native", lambda *a: traced.append(1) or native(*a))
    rng = np.random.default_rng(0)
    x = rng.random((640, 28, 28), np.float32)
    y = rng.integers(0, 10, 640)
    trained = []
    for optimizer in (optimizers.Adam(learning_rate=0.003),
                      optimizers.Adam(learning_rate=0.003).transformation()):
        kilnet.utils.set_random_seed(3)
        model = make_model()
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        trained.append((model.get_weights(), history.history["loss"]))
    assert traced, "the kilnet Adam's fit did not go through the native update"
    assert trained[0][1] == trained[1][1]
    for a, b in zip(trained[0][0], trained[1][0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert trained[0][1][1] < trained[0][1][0]
