"""Optimizers against NumPy transcriptions of Keras 3's update rules
(keras/src/optimizers/{adam,adamw,sgd,rmsprop,adagrad}.py and base_optimizer.py: weight decay
`v -= v * wd * lr` before the step, clipnorm `g * c / max(|g|, c)`), the Keras-Adam / optax.adam
difference, learning-rate changes without recompilation, and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kilnet import optimizers


def rng(seed=0):
    return np.random.default_rng(seed)


def make_params(seed=0):
    r = rng(seed)
    return {"w": r.normal(size=(3, 2)).astype(np.float32),
            "b": r.normal(size=(2,)).astype(np.float32)}


def grad_sequence(steps, seed=1, scale=1.0):
    r = rng(seed)
    return [{"w": (scale * r.normal(size=(3, 2))).astype(np.float32),
             "b": (scale * r.normal(size=(2,))).astype(np.float32)} for _ in range(steps)]


def run(optimizer, params, grads_seq):
    """kilnet's transformation applied step by step (one compiled step). Returns the final
    params and each step's update, so steps compare at full float32 precision."""
    tx = optimizers.transformation(optimizer)
    state = tx.init(params)

    @jax.jit
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, updates

    steps = []
    for grads in grads_seq:
        params, state, updates = step(params, state, grads)
        steps.append(jax.tree.map(np.asarray, updates))
    return jax.tree.map(np.asarray, params), steps


def numpy_run(update, params, grads_seq):
    """A NumPy transcription `update(p, g, slots, t) -> p`, leaf by leaf in float64. Returns
    the final params and each step's change."""
    final, steps = {}, [{} for _ in grads_seq]
    for name, p in params.items():
        p = p.astype(np.float64)
        slots = {}
        for t, grads in enumerate(grads_seq, start=1):
            new = update(p, grads[name].astype(np.float64), slots, t)
            steps[t - 1][name], p = new - p, new
        final[name] = p
    return final, steps


def assert_same_steps(got, expected, rtol=1e-5, atol=1e-10):
    """Float32 against float64: besides rounding, 1 - 0.999 is 0.99998713e-3 in float32 (in
    Keras's float32 too), so Adam steps carry a relative error of about 6e-6; give `atol`
    when a step is a difference of larger terms (weight decay)."""
    (got_params, got_steps), (expected_params, expected_steps) = got, expected
    assert len(got_steps) == len(expected_steps)
    for t, (a, b) in enumerate(zip(got_steps, expected_steps), start=1):
        for name in b:
            np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol,
                                       err_msg=f"step {t}, {name}")
    for name in expected_params:
        np.testing.assert_allclose(got_params[name], expected_params[name], rtol=1e-6,
                                   atol=max(1e-7, 2 * atol * len(expected_steps)))


# -- Keras's update rules, transcribed ----------------------------------------------------------
def keras_adam(lr=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None):
    def update(p, g, s, t):
        if weight_decay:  # base_optimizer._apply_weight_decay, before the step
            p = p - p * weight_decay * lr
        m, v = s.get("m", 0.0), s.get("v", 0.0)
        alpha = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        m = m + (g - m) * (1 - beta_1)
        v = v + (g * g - v) * (1 - beta_2)
        s["m"], s["v"] = m, v
        return p - m * alpha / (np.sqrt(v) + epsilon)
    return update


def keras_sgd(lr=0.01, momentum=0.0, nesterov=False):
    def update(p, g, s, t):
        if momentum == 0:
            return p - g * lr
        m = s.get("m", 0.0) * momentum - g * lr
        s["m"] = m
        return p + (m * momentum - g * lr if nesterov else m)
    return update


def keras_rmsprop(lr=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False):
    def update(p, g, s, t):
        v = rho * s.get("v", 0.0) + (1 - rho) * g * g
        s["v"] = v
        if centered:
            a = rho * s.get("a", 0.0) + (1 - rho) * g
            s["a"] = a
            denominator = v - a * a + epsilon
        else:
            denominator = v + epsilon
        increment = lr * g / np.sqrt(denominator)
        if momentum > 0:
            s["mo"] = momentum * s.get("mo", 0.0) + increment
            return p - s["mo"]
        return p - increment
    return update


def keras_adagrad(lr=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
    def update(p, g, s, t):
        acc = s.get("acc", initial_accumulator_value) + g * g
        s["acc"] = acc
        return p - lr * g / np.sqrt(acc + epsilon)
    return update


# -- Adam -----------------------------------------------------------------------------------------
def test_adam_docstring_formula_is_keras():
    doc = optimizers.keras_adam.__doc__
    assert "sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)" in doc
    adam = optimizers.get("adam")
    assert isinstance(adam, optimizers.Adam)
    assert adam.learning_rate == 0.001
    assert adam.hyper == {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False,
                          "weight_decay": None}


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_adam_matches_keras(steps):
    params, grads = make_params(), grad_sequence(steps)
    assert_same_steps(run(optimizers.get("adam"), params, grads),
                      numpy_run(keras_adam(), params, grads))


def test_adam_epsilon_placement_is_keras_not_optax():
    """Tiny gradients make epsilon matter: Keras's placement (next to sqrt(v), before bias
    correction) differs from Optax's by several percent here."""
    params, grads = make_params(), grad_sequence(3, scale=1e-5)
    got = run(optimizers.Adam(), params, grads)
    assert_same_steps(got, numpy_run(keras_adam(), params, grads))
    optax_like = run(optax.adam(0.001, eps=1e-7), params, grads)[1]
    assert not np.allclose(optax_like[0]["w"], got[1][0]["w"], rtol=1e-2)


def test_adam_first_step_is_lr_times_sign():
    """With Keras's epsilon next to sqrt(v), the first step is lr * g / (|g| + eps')."""
    params, grads = make_params(), grad_sequence(1)
    updates = run(optimizers.Adam(), params, grads)[1][0]
    for name in params:
        np.testing.assert_allclose(updates[name], -0.001 * np.sign(grads[0][name]), rtol=1e-4)


def test_adam_custom_hyperparameters():
    params, grads = make_params(), grad_sequence(3, scale=1e-3)
    opt = optimizers.Adam(learning_rate=0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-3)
    expected = numpy_run(keras_adam(0.01, 0.8, 0.99, 1e-3), params, grads)
    assert_same_steps(run(opt, params, grads), expected)


@pytest.mark.parametrize("steps", [1, 2])
def test_adamw_weight_decay_matches_keras(steps):
    params, grads = make_params(), grad_sequence(steps)
    opt = optimizers.AdamW()
    assert opt.hyper["weight_decay"] == 0.004  # Keras's default
    assert_same_steps(run(opt, params, grads),
                      numpy_run(keras_adam(weight_decay=0.004), params, grads))
    opt = optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
    expected = numpy_run(keras_adam(lr=0.1, weight_decay=0.5), params, grads)
    assert_same_steps(run(opt, params, grads), expected, atol=1e-6)


def test_adam_accepts_weight_decay_as_keras_does():
    params, grads = make_params(), grad_sequence(2)
    got = run(optimizers.Adam(learning_rate=0.1, weight_decay=0.5), params, grads)
    expected = numpy_run(keras_adam(lr=0.1, weight_decay=0.5), params, grads)
    assert_same_steps(got, expected, atol=1e-6)


def test_keras_adam_stays_close_to_optax_adam():
    """Keras adds epsilon to sqrt(v) before bias correction, Optax after: Keras's effective
    epsilon is eps / sqrt(1 - b2^t) <= 3.2e-6. On a quadratic with gradients of order 1 the
    per-step difference is below lr * 3.2e-6 / |g| ~ 1e-8, so after 100 steps the parameters
    (moved by about 0.1) agree within 1e-5."""
    r = rng(2)
    target = r.normal(size=(20,)).astype(np.float32)
    curvature = r.uniform(0.5, 2.0, size=(20,)).astype(np.float32)
    loss = lambda p: 0.5 * jnp.sum(curvature * (p - target) ** 2)
    start = (target + r.choice([-1, 1], 20) * r.uniform(0.5, 1.5, 20)).astype(np.float32)

    def train(tx):
        @jax.jit
        def steps(p):
            def body(_, carry):
                p, s = carry
                u, s = tx.update(jax.grad(loss)(p), s, p)
                return optax.apply_updates(p, u), s
            return jax.lax.fori_loop(0, 100, body, (p, tx.init(p)))[0]
        return np.asarray(steps(jnp.asarray(start)))

    keras_like = train(optimizers.transformation(optimizers.Adam()))
    optax_adam = train(optax.adam(0.001, b1=0.9, b2=0.999, eps=1e-7))
    assert np.abs(keras_like - start).min() > 0.05  # both really moved
    np.testing.assert_allclose(keras_like, optax_adam, rtol=0, atol=1e-5)


# -- SGD, RMSprop, Adagrad -----------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True},
                                    {"learning_rate": 0.1, "momentum": 0.5}])
def test_sgd_matches_keras(kwargs):
    params, grads = make_params(), grad_sequence(3)
    opt = optimizers.SGD(**kwargs)
    assert opt.learning_rate == kwargs.get("learning_rate", 0.01)  # Keras's default is 0.01
    keras_kwargs = dict(kwargs)
    lr = keras_kwargs.pop("learning_rate", 0.01)
    expected = numpy_run(keras_sgd(lr, **keras_kwargs), params, grads)
    assert_same_steps(run(opt, params, grads), expected)


@pytest.mark.parametrize("kwargs", [{}, {"momentum": 0.9}, {"centered": True},
                                    {"rho": 0.8, "momentum": 0.5, "centered": True}])
def test_rmsprop_matches_keras(kwargs):
    params, grads = make_params(), grad_sequence(3)
    assert_same_steps(run(optimizers.RMSprop(**kwargs), params, grads),
                      numpy_run(keras_rmsprop(**kwargs), params, grads))


def test_rmsprop_keras_docstring_example():
    # keras.optimizers.RMSprop(learning_rate=0.1) on loss var**2 / 2 from 10.0 gives 9.683772
    params, grads = {"v": np.float32([10.0])}, [{"v": np.float32([10.0])}]
    got, _ = run(optimizers.RMSprop(learning_rate=0.1), params, grads)
    np.testing.assert_allclose(got["v"], [9.683772], rtol=1e-6)


@pytest.mark.parametrize("kwargs", [{}, {"learning_rate": 0.1, "initial_accumulator_value": 1.0}])
def test_adagrad_matches_keras(kwargs):
    params, grads = make_params(), grad_sequence(3)
    keras_kwargs = dict(kwargs)
    lr = keras_kwargs.pop("learning_rate", 0.001)
    expected = numpy_run(keras_adagrad(lr, **keras_kwargs), params, grads)
    assert_same_steps(run(optimizers.Adagrad(**kwargs), params, grads), expected)


# -- gradient clipping ----------------------------------------------------------------------------
def clip_case():
    # "w" has norm 5 (clipped by 2), "b" norm 0.5 (untouched by clipnorm=2).
    return {"w": np.float32([[3.0, 0.0], [0.0, 4.0], [0.0, 0.0]]), "b": np.float32([0.3, -0.4])}


def one_sgd_step(**clip):
    params = jax.tree.map(np.zeros_like, clip_case())
    _, (updates,) = run(optimizers.SGD(learning_rate=1.0, **clip), params, [clip_case()])
    return {name: -updates[name] for name in updates}  # the gradient as it was applied


def test_clipnorm_clips_each_tensor():
    g, got = clip_case(), one_sgd_step(clipnorm=2.0)
    for name in g:  # Keras: g * c / max(|g|, c)
        expected = g[name] * 2.0 / max(np.linalg.norm(g[name]), 2.0)
        np.testing.assert_allclose(got[name], expected, rtol=1e-6)


def test_global_clipnorm_clips_all_tensors_together():
    g, got = clip_case(), one_sgd_step(global_clipnorm=2.0)
    norm = np.sqrt(sum(np.sum(v ** 2) for v in g.values()))
    for name in g:
        np.testing.assert_allclose(got[name], g[name] * 2.0 / max(norm, 2.0), rtol=1e-6)


def test_clipvalue_clips_each_element():
    g, got = clip_case(), one_sgd_step(clipvalue=0.35)
    for name in g:
        np.testing.assert_allclose(got[name], np.clip(g[name], -0.35, 0.35), rtol=1e-6)


# -- learning rate -------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: optimizers.SGD(learning_rate=0.1),
                                  lambda: optimizers.Adam(learning_rate=0.1),
                                  lambda: optimizers.SGD(learning_rate=0.1, clipnorm=1.0)])
def test_learning_rate_get_set_changes_the_step_without_recompiling(make):
    tx = make().transformation()
    params, grads = make_params(), grad_sequence(1, scale=0.1)[0]
    traces = []

    @jax.jit
    def update(state):
        traces.append(1)  # runs only when JAX traces, i.e. compiles
        return tx.update(grads, state, params)

    state = tx.init(params)
    assert optimizers.get_learning_rate(state) == pytest.approx(0.1)
    halved = optimizers.set_learning_rate(state, 0.05)
    assert optimizers.get_learning_rate(halved) == pytest.approx(0.05)
    assert optimizers.get_learning_rate(state) == pytest.approx(0.1)  # a new state
    full, _ = update(state)
    half, _ = update(halved)
    assert len(traces) == 1
    for name in params:
        np.testing.assert_allclose(half[name], 0.5 * np.asarray(full[name]), rtol=1e-6)


def test_learning_rate_errors():
    state = optax.sgd(0.1).init(make_params())
    with pytest.raises(ValueError, match="does not expose its learning rate"):
        optimizers.get_learning_rate(state)
    state = optimizers.SGD().transformation().init(make_params())
    with pytest.raises(ValueError, match="learning_rate must be a number >= 0"):
        optimizers.set_learning_rate(state, -1.0)


# -- names and errors ----------------------------------------------------------------------------
def test_get_resolves_names_and_objects():
    for name, cls in [("adam", optimizers.Adam), ("Adam", optimizers.Adam),
                      ("adamw", optimizers.AdamW), ("sgd", optimizers.SGD),
                      ("rmsprop", optimizers.RMSprop), ("adagrad", optimizers.Adagrad),
                      ("nadam", optimizers.Nadam)]:
        assert type(optimizers.get(name)) is cls
    opt = optimizers.Adam(learning_rate=0.01)
    assert optimizers.get(opt) is opt
    tx = optax.sgd(0.1)
    assert optimizers.get(tx) is tx and optimizers.transformation(tx) is tx
    assert optimizers.RMSprop().learning_rate == 0.001


def test_optimizer_errors():
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optimizers.get("adamm")
    with pytest.raises(ValueError, match="learning_rate must be a number >= 0"):
        optimizers.Adam(learning_rate=-0.001)
    with pytest.raises(ValueError, match="learning_rate must be a number >= 0"):
        optimizers.SGD(learning_rate="0.1")
    with pytest.raises(ValueError, match="clipnorm must be a positive number"):
        optimizers.SGD(clipnorm=-1)
    with pytest.raises(ValueError, match="not both"):
        optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0)
    with pytest.raises(TypeError, match="unexpected arguments"):
        optimizers.SGD(beta_1=0.9)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop", "adagrad", "nadam"])
def test_host_initialized_state_equals_optax_init(name):
    """kilnet.optimizers.init_state evaluates tx.init with NumPy (no XLA compile): it must give
    exactly what Optax's own init gives, structure, dtypes and values."""
    import jax
    import optax

    from kilnet import optimizers as opt

    params = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}
    variants = [opt.get(name), type(opt.get(name))(global_clipnorm=1.0, clipvalue=0.5),
                type(opt.get(name))(learning_rate=optax.exponential_decay(0.1, 10, 0.5))]
    for optimizer in variants:
        tx = optimizer.transformation()
        host, reference = opt.init_state(tx, params), jax.jit(tx.init)(params)
        assert jax.tree.structure(host) == jax.tree.structure(reference)
        for h, r in zip(jax.tree.leaves(host), jax.tree.leaves(reference)):
            assert h.dtype == r.dtype and h.shape == r.shape
            np.testing.assert_array_equal(np.asarray(h), np.asarray(r))


def test_setting_the_optimizers_learning_rate_changes_the_compiled_step():
    """Keras users write `model.optimizer.learning_rate = ...`: the next steps use it, with
    no recompilation (the rate lives in the optimizer state)."""
    import kilnet
    from kilnet import layers

    x = np.ones((8, 1), np.float32)
    y = np.zeros((8, 1), np.float32)  # MAE on a bias-only path: the gradient is a constant 1
    model = kilnet.Sequential([layers.Dense(1, input_shape=(1,), kernel_initializer="zeros")])
    model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.1), loss="mae")
    model.build(seed=0)
    model.set_weights([np.zeros((1, 1), np.float32), np.full((1,), 10.0, np.float32)])

    def bias_step():
        before = model.get_weights()[1][0]
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        return before - model.get_weights()[1][0]

    assert bias_step() == pytest.approx(0.1, rel=1e-5)
    programs = len(model.compile_report.programs)
    model.optimizer.learning_rate = 0.01
    assert model.optimizer.learning_rate == 0.01
    assert model.compiled.learning_rate == pytest.approx(0.01, rel=1e-6)
    assert bias_step() == pytest.approx(0.01, rel=1e-4)
    assert len(model.compile_report.programs) == programs  # nothing recompiled
    with pytest.raises(ValueError, match="learning_rate"):
        model.optimizer.learning_rate = -1.0


def test_a_learning_rate_of_zero_trains_nothing_as_keras():
    """Keras accepts learning_rate=0 (a run that only evaluates, a check of the loop)."""
    import kilnet
    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.0), loss="mse")
    before = model.get_weights()
    x = np.ones((8, 3), np.float32)
    model.fit(x, np.zeros((8, 2), np.float32), epochs=1, verbose=0)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)
