"""`optimizer.variables` in Keras's layout: after `optimizer.build(var_list)` and on a compiled
model, every optimizer lists Keras's variables (iteration, learning_rate, use_ema's averages,
the gradient accumulators, each weight's slots, Nadam's u_product) with Keras's names, paths,
shapes, dtypes and order, and `stateless_apply` takes and returns that list, as keras.io's
"writing a training loop from scratch in JAX" passes it, positionally."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")


def decay(lib):
    return lib.optimizers.schedules.ExponentialDecay(0.1, 2, 0.5)


# (class name, arguments, or a function of the library giving them)
CASES = [("SGD", {"learning_rate": 0.1}),
         ("SGD", {"learning_rate": 0.1, "momentum": 0.9}),
         ("SGD", {"learning_rate": 0.05, "momentum": 0.8, "nesterov": True}),
         ("SGD", lambda lib: {"learning_rate": decay(lib)}),
         ("Adam", {"learning_rate": 0.01}),
         ("Adam", {"learning_rate": 0.01, "amsgrad": True}),
         ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1}),
         ("Nadam", {"learning_rate": 0.01}),
         ("RMSprop", {"learning_rate": 0.01}),
         ("RMSprop", {"learning_rate": 0.01, "momentum": 0.9, "centered": True}),
         ("Adagrad", {"learning_rate": 0.1}),
         ("Adamax", {"learning_rate": 0.01}),
         ("Adadelta", {"learning_rate": 1.0}),
         ("Lion", {"learning_rate": 0.01}),
         ("Lamb", {"learning_rate": 0.01}),
         ("Adafactor", {"learning_rate": 0.1}),
         ("Ftrl", {"learning_rate": 0.1, "l1_regularization_strength": 0.01}),
         ("Adam", {"learning_rate": 0.01, "use_ema": True, "ema_momentum": 0.5}),
         ("SGD", {"learning_rate": 0.1, "momentum": 0.9, "gradient_accumulation_steps": 2})]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CASES)]


def make_optimizer(lib, case):
    name, arguments = case
    arguments = arguments(lib) if callable(arguments) else arguments
    return getattr(lib.optimizers, name)(name="opt", **arguments)


def models():
    """The same small model in both libraries, kilnet's with Keras's weights. Keras's names
    of unnamed variables (Nadam's u_product is "variable") count from the session's start."""
    keras.backend.clear_session()

    def build(lib):
        return lib.Sequential([lib.Input((3,)), lib.layers.Dense(4, activation="tanh", name="d1"),
                               lib.layers.Dense(2, name="d2")], name="seq")
    theirs, ours = build(keras), build(kilnet)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def built_optimizers(case):
    """(Keras's model, kilnet's, each one's optimizer built for its trainable variables)."""
    theirs, ours = models()
    their_opt, our_opt = make_optimizer(keras, case), make_optimizer(kilnet, case)
    their_opt.build(theirs.trainable_variables)
    our_opt.build(ours.trainable_variables)
    return theirs, ours, their_opt, our_opt


def described(variables):
    return [(v.name, v.path, tuple(v.shape), str(np.asarray(v).dtype), v.trainable)
            for v in variables]


def values_of(variables):
    return [getattr(v, "value", v) for v in variables]


def batches(count=4, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(8, 3)).astype(np.float32),
             rng.normal(size=(8, 2)).astype(np.float32)) for _ in range(count)]


def assert_lists_close(ours, theirs, atol=2e-5):
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, i
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=atol, err_msg=f"variable {i}")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_variables_after_build_are_keras_variables(case):
    theirs, ours, their_opt, our_opt = built_optimizers(case)
    assert described(our_opt.variables) == described(their_opt.variables)
    assert_lists_close(values_of(our_opt.variables), values_of(their_opt.variables))


def jax_loop(model, optimizer, data):
    """keras.io's JAX loop: stateless_call, jax.grad, stateless_apply with the optimizer
    variables passed positionally, jitted."""
    def loss_fn(trainable, non_trainable, x, y):
        y_pred, _ = model.stateless_call(trainable, non_trainable, x)
        return jnp.mean(jnp.square(y_pred - y))

    @jax.jit
    def train_step(trainable, non_trainable, optimizer_variables, x, y):
        grads = jax.grad(loss_fn)(trainable, non_trainable, x, y)
        return optimizer.stateless_apply(optimizer_variables, grads, trainable)

    optimizer.build(model.trainable_variables)
    trainable, non_trainable = (values_of(model.trainable_variables),
                                values_of(model.non_trainable_variables))
    optimizer_variables = values_of(optimizer.variables)
    for x, y in data:
        trainable, optimizer_variables = train_step(trainable, non_trainable,
                                                    optimizer_variables, x, y)
    return trainable, optimizer_variables


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jax_loop_with_stateless_apply_trains_as_keras(case):
    theirs, ours = models()
    data = batches()
    their_weights, their_vars = jax_loop(theirs, make_optimizer(keras, case), data)
    our_weights, our_vars = jax_loop(ours, make_optimizer(kilnet, case), data)
    assert_lists_close(our_weights, their_weights)
    assert_lists_close(our_vars, their_vars)


def assigned_values(variables, seed=1):
    """Values to assign to each optimizer variable, the same for both libraries: step 3, a
    learning rate of 0.05, positive slots (second moments, accumulators), int32 placeholders
    as they are."""
    rng = np.random.default_rng(seed)
    values = []
    for v in variables:
        value = np.asarray(v)
        if v.name == "iteration":
            values.append(np.int32(3))
        elif v.name == "learning_rate":
            values.append(np.float32(0.05))
        elif value.dtype == np.int32:
            values.append(value)
        else:
            values.append(rng.uniform(0.1, 0.9, value.shape).astype(value.dtype))
    return values


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_assigned_optimizer_variables_then_a_step_match_keras(case):
    theirs, ours, their_opt, our_opt = built_optimizers(case)
    for variables in (their_opt.variables, our_opt.variables):
        for variable, value in zip(variables, assigned_values(their_opt.variables)):
            variable.assign(value)
    rng = np.random.default_rng(2)
    grads = [rng.normal(size=v.shape).astype(np.float32) for v in theirs.trainable_variables]
    for _ in range(2):
        their_opt.apply(grads, theirs.trainable_variables)
        our_opt.apply(grads, ours.trainable_variables)
    assert_lists_close(values_of(our_opt.variables), values_of(their_opt.variables))
    assert_lists_close(ours.get_weights(), theirs.get_weights())
    assert int(our_opt.iterations.numpy()) == int(np.asarray(their_opt.iterations))


class StatelessApplyStep:
    """keras.io's JAX train_step (customizing fit() with JAX), mixed in before lib.Model."""

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metric_vars = state
        x, y = data

        def loss_fn(trainable):
            y_pred, new_non_trainable = self.stateless_call(trainable, non_trainable, x)
            return jnp.mean(jnp.square(y_pred - y)), new_non_trainable

        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
        self.seen_optimizer_variables = len(optimizer_vars)
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                   trainable)
        return {"loss": loss}, (trainable, non_trainable, optimizer_vars, metric_vars)


@pytest.mark.parametrize("custom_step", [False, True], ids=["fit", "own_train_step"])
@pytest.mark.parametrize("case", [CASES[1], CASES[5], CASES[9]], ids=["sgd", "amsgrad",
                                                                      "rmsprop"])
def test_compiled_model_optimizer_variables_are_keras_variables(case, custom_step):
    def build(lib):
        base = (StatelessApplyStep, lib.Model) if custom_step else (lib.Model,)
        cls = type("Net", base, {})
        inputs = lib.Input((3,), name="x")
        hidden = lib.layers.Dense(4, activation="tanh", name="d1")(inputs)
        return cls(inputs, lib.layers.Dense(2, name="d2")(hidden), name="net")

    theirs, ours = build(keras), build(kilnet)
    ours.set_weights(theirs.get_weights())
    x = np.concatenate([b[0] for b in batches()])
    y = np.concatenate([b[1] for b in batches()])
    for model, lib in ((theirs, keras), (ours, kilnet)):
        model.compile(optimizer=make_optimizer(lib, case), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert described(ours.optimizer.variables) == described(theirs.optimizer.variables)
    assert_lists_close(values_of(ours.optimizer.variables),
                       values_of(theirs.optimizer.variables))
    assert_lists_close(ours.get_weights(), theirs.get_weights())


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=["sgd", "adam"])
def test_learning_rate_set_after_build_is_the_rate_variable(case):
    theirs, ours, their_opt, our_opt = built_optimizers(case)
    their_opt.learning_rate = 0.5
    our_opt.learning_rate = 0.5
    grads = [np.ones(v.shape, np.float32) for v in theirs.trainable_variables]
    their_opt.apply(grads, theirs.trainable_variables)
    our_opt.apply(grads, ours.trainable_variables)
    assert float(np.asarray(our_opt.variables[1])) == 0.5
    assert_lists_close(values_of(our_opt.variables), values_of(their_opt.variables))
    assert_lists_close(ours.get_weights(), theirs.get_weights())
    assert our_opt.iterations is our_opt.variables[0]
