"""kilnet's Nadam is Keras 3's Nadam (keras/src/optimizers/nadam.py: Adam with Nesterov
momentum and the schedule u_t = beta_1 * (1 - 0.5 * 0.96 ** t), whose running product Keras
keeps as `u_product`), not Optax's: the same model trained on the same batches in both
libraries ends with the same weights, also across a learning-rate change and with weight decay,
and one step matches a hand computation of Keras's formula."""

import os

import jax
import numpy as np
import optax
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from kilnet import optimizers  # noqa: E402
from _optimizer_parity import data, layers  # noqa: E402


def _train(model, x, y, new_rate):
    """Five steps of 8 samples, in order; the rate is changed after the third when asked."""
    if new_rate is None:
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    else:
        model.fit(x[:24], y[:24], batch_size=8, epochs=1, shuffle=False, verbose=0)
        model.optimizer.learning_rate = new_rate
        model.fit(x[24:], y[24:], batch_size=8, epochs=1, shuffle=False, verbose=0)
    return model.get_weights()


@pytest.mark.parametrize("config, new_rate", [
    (dict(learning_rate=0.01), None),
    (dict(learning_rate=0.01), 0.003),
    (dict(learning_rate=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4), None),
    (dict(learning_rate=0.01, weight_decay=0.05), 0.03),
])
def test_five_steps_equal_keras_nadam(config, new_rate):
    x, y = data(samples=40, offset=0.3)
    mine = kilnet.Sequential(layers(kilnet))
    mine.build(seed=4)
    theirs = keras.Sequential(layers(keras))
    theirs.set_weights(mine.get_weights())
    start = mine.get_weights()
    mine.compile(optimizer=kilnet.optimizers.Nadam(**config), loss="mse")
    theirs.compile(optimizer=keras.optimizers.Nadam(**config), loss="mse")
    got, want = _train(mine, x, y, new_rate), _train(theirs, x, y, new_rate)
    assert any(np.abs(w - s).max() > 1e-3 for w, s in zip(want, start))   # it trained
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_differs_from_optax_nadam():
    """The reason for writing it out: Optax's nadam has no momentum schedule, and three steps
    at lr 0.01 already move the weights apart by far more than float32 rounding."""
    params = {"w": np.linspace(-1, 1, 6, dtype=np.float32)}
    grads = [{"w": np.cos(np.arange(6, dtype=np.float32) + k)} for k in range(3)]

    def run(tx):
        p, state = params, tx.init(params)
        for g in grads:
            updates, state = tx.update(g, state, p)
            p = optax.apply_updates(p, updates)
        return np.asarray(p["w"])

    ours = run(optimizers.Nadam(0.01).transformation())
    assert np.abs(ours - run(optax.nadam(0.01, eps=1e-7))).max() > 1e-3


def test_one_step_by_hand():
    """Step 1 with g = 0.5, lr = 0.1: m = 0.05, v = 0.00025, u_1 = 0.468, u_2 = 0.48528,
    m_hat = u_2 m / (1 - u_1 u_2) + (1 - u_1) g / (1 - u_1), v_hat = v / 0.001."""
    tx = optimizers.keras_nadam(0.1)
    params = {"w": np.array([2.0], np.float32)}
    updates, state = jax.jit(tx.update)({"w": np.array([0.5], np.float32)}, tx.init(params),
                                        params)
    u1, u2 = 0.9 * (1 - 0.5 * 0.96), 0.9 * (1 - 0.5 * 0.96 ** 2)
    m_hat = u2 * 0.05 / (1 - u1 * u2) + (1 - u1) * 0.5 / (1 - u1)
    expected = -0.1 * m_hat / (np.sqrt(0.00025 / 0.001) + 1e-7)
    np.testing.assert_allclose(np.asarray(updates["w"]), [expected], rtol=1e-6)
    assert float(state.u_product) == pytest.approx(u1, rel=1e-6)
    assert int(state.count) == 1


def test_learning_rate_lives_in_the_state_and_errors_name_the_argument():
    tx = optimizers.Nadam(0.01).transformation()
    state = tx.init({"w": np.zeros(2, np.float32)})
    assert optimizers.get_learning_rate(state) == pytest.approx(0.01)
    assert optimizers.get_learning_rate(
        optimizers.set_learning_rate(state, 0.5)) == pytest.approx(0.5)
    with pytest.raises(TypeError, match="unexpected arguments.*'amsgrad'"):
        optimizers.Nadam(amsgrad=True)
    with pytest.raises(ValueError, match="Received: learning_rate=-1"):
        optimizers.Nadam(learning_rate=-1)


def test_a_file_saved_with_the_earlier_optax_nadam_state_loads_and_keeps_training(
        tmp_path, monkeypatch):
    """kilnet 0.1's Nadam was Optax's: its files hold (count, mu, nu). They load into Keras's
    Nadam with the same moments and the u_product their step count gives."""
    import optax

    from kilnet import layers

    x = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(12, 2)).astype(np.float32)
    with monkeypatch.context() as patch:  # what kilnet 0.1 built for "nadam"
        patch.setattr(kilnet.optimizers.Nadam, "core",
                      lambda self, learning_rate: optax.nadam(learning_rate, eps=1e-7))
        old = kilnet.Sequential([kilnet.Input((3,)), layers.Dense(2)])
        old.compile(optimizer="nadam", loss="mse")
        old.fit(x, y, batch_size=4, epochs=1, verbose=0)  # 3 steps
        old.save(tmp_path / "old.kilnet")
        saved_mu = np.asarray(old.compiled.state.opt_state[0].inner_state[0].mu["dense"]["kernel"])
    model = kilnet.models.load_model(tmp_path / "old.kilnet")
    state = model.compiled.state.opt_state[0].inner_state
    assert int(state.count) == 3
    np.testing.assert_array_equal(np.asarray(state.mu["dense"]["kernel"]), saved_mu)
    expected = np.prod([0.9 * (1 - 0.5 * 0.96 ** t) for t in (1, 2, 3)])
    np.testing.assert_allclose(float(state.u_product), expected, rtol=1e-6)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert int(model.compiled.state.opt_state[0].inner_state.count) == 6
