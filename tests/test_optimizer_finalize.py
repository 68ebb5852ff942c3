"""Optimizer.finalize_variable_values against Keras's: in a training loop of your own, an
optimizer made with use_ema=True keeps the moving averages of the weights, and
finalize_variable_values(var_list) puts them into the variables; without use_ema it does
nothing."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.variables import Variable  # noqa: E402

keras = pytest.importorskip("keras")

SHAPES = [(3, 4), (4,), (4, 1), (1,)]


def start_and_grads(steps):
    rng = np.random.default_rng(0)
    start = [rng.normal(size=s).astype("float32") for s in SHAPES]
    grads = [[rng.normal(size=s).astype("float32") for s in SHAPES] for _ in range(steps)]
    return start, grads


def apply_loop(ns, make_variable, optimizer, steps=5):
    """`steps` applies of fixed gradients, then finalize_variable_values; returns the values
    before and after finalizing."""
    start, grads = start_and_grads(steps)
    variables = [make_variable(w, f"w{i}") for i, w in enumerate(start)]
    for g in grads:
        optimizer.apply(g, variables)
    before = [np.array(v.numpy()) for v in variables]
    optimizer.finalize_variable_values(variables)
    return before, [np.array(v.numpy()) for v in variables]


def keras_variable(value, name):
    return keras.Variable(value, name=name)


def kilnet_variable(value, name):
    return Variable(value, name=name)


def assert_close(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, kwargs", [
    ("SGD", dict(learning_rate=0.1, momentum=0.9)),
    ("Adam", dict(learning_rate=0.01)),
    ("RMSprop", dict(learning_rate=0.01, ema_overwrite_frequency=3)),
])
def test_apply_then_finalize_gives_keras_variables(name, kwargs):
    kwargs = dict(kwargs, use_ema=True, ema_momentum=0.8)
    want_before, want = apply_loop(keras, keras_variable,
                                   getattr(keras.optimizers, name)(**kwargs))
    got_before, got = apply_loop(kilnet, kilnet_variable,
                                 getattr(kilnet.optimizers, name)(**kwargs))
    assert_close(got_before, want_before)
    assert_close(got, want)
    assert not all(np.allclose(a, b) for a, b in zip(got, got_before))   # it changed them


def test_without_ema_it_changes_nothing():
    before, after = apply_loop(kilnet, kilnet_variable, kilnet.optimizers.Adam(0.01))
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    kilnet.optimizers.Adam().finalize_variable_values([])   # unbuilt: nothing to do either


def model_of(ns):
    return ns.Sequential([ns.Input(shape=(3,)), ns.layers.Dense(4, activation="tanh"),
                          ns.layers.Dense(1)])


def test_stateless_apply_loop_then_finalize_gives_keras_weights():
    """Keras's JAX guide's loop: build, stateless_apply inside jax.jit, the results assigned
    back, then finalize_variable_values(model.trainable_variables), as Keras's fit ends."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 3)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    keras_model, model = model_of(keras), model_of(kilnet)
    model.set_weights(keras_model.get_weights())
    results = []
    for ns, m in ((keras, keras_model), (kilnet, model)):
        optimizer = ns.optimizers.Adam(learning_rate=0.05, use_ema=True, ema_momentum=0.7)
        optimizer.build(m.trainable_variables)

        def loss_fn(trainable, non_trainable, m=m):
            pred, _ = m.stateless_call(trainable, non_trainable, x)
            return jnp.mean((pred - y) ** 2)

        @jax.jit
        def step(trainable, non_trainable, opt_vars, optimizer=optimizer, loss_fn=loss_fn):
            grads = jax.grad(loss_fn)(trainable, non_trainable)
            return optimizer.stateless_apply(opt_vars, grads, trainable)

        trainable = [v.value for v in m.trainable_variables]
        non_trainable = [v.value for v in m.non_trainable_variables]
        opt_vars = [v.value for v in optimizer.variables]
        for _ in range(6):
            trainable, opt_vars = step(trainable, non_trainable, opt_vars)
        for v, value in zip(m.trainable_variables, trainable):
            v.assign(value)
        for v, value in zip(optimizer.variables, opt_vars):
            v.assign(value)
        trained = [np.array(w) for w in m.get_weights()]
        optimizer.finalize_variable_values(m.trainable_variables)
        results.append((trained, [np.array(w) for w in m.get_weights()]))
    (want_trained, want), (got_trained, got) = results
    assert_close(got_trained, want_trained)
    assert_close(got, want)
    assert not np.allclose(got[0], got_trained[0])


def test_the_variables_must_match_what_it_was_built_for():
    optimizer = kilnet.optimizers.SGD(0.1, use_ema=True)
    variables = [Variable(np.ones(2, np.float32), name="a"),
                 Variable(np.ones(3, np.float32), name="b")]
    optimizer.apply([np.ones(2, np.float32), np.ones(3, np.float32)], variables)
    with pytest.raises(ValueError, match="length of model variables"):
        optimizer.finalize_variable_values(variables[:1])
    with pytest.raises(RuntimeError, match="optimizer.build"):
        kilnet.optimizers.SGD(0.1, use_ema=True).finalize_variable_values(variables)


def test_after_fit_it_keeps_the_averages_fit_left():
    """fit already ends with the averages in the model (as Keras's fit calls this); calling it
    again on the compiled model reads the compiled step's averages: nothing changes."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(32, 3)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    keras_model, model = model_of(keras), model_of(kilnet)
    model.set_weights(keras_model.get_weights())
    for ns, m in ((keras, keras_model), (kilnet, model)):
        m.compile(optimizer=ns.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.6),
                  loss="mse")
        m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    fitted = model.get_weights()
    assert_close(fitted, keras_model.get_weights())
    model.optimizer.finalize_variable_values(model.trainable_variables)
    keras_model.optimizer.finalize_variable_values(keras_model.trainable_variables)
    assert_close(model.get_weights(), fitted)
    assert_close(model.get_weights(), keras_model.get_weights())


def test_loss_scale_optimizer_finalizes_through_its_inner_optimizer():
    inner = kilnet.optimizers.SGD(1.0, use_ema=True, ema_momentum=0.5)
    w = Variable(np.zeros(1, np.float32), name="w")
    inner.apply([np.ones(1, np.float32)], [w])
    inner.apply([np.ones(1, np.float32)], [w])
    kilnet.optimizers.LossScaleOptimizer(inner).finalize_variable_values([w])
    assert w.numpy().tolist() == [-1.5]
