"""Keras's "training loop from scratch in JAX", without compile(): model.stateless_call on a
model that has its weights, optimizer.build(var_list) / variables / stateless_apply, the eager
optimizer.apply / apply_gradients, and metrics' stateless functions, each against Keras's own
loop from the same starting weights."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")


def guide_model(lib):
    """The guide's functional model: 784 -> 64 relu -> 64 relu -> 10 logits."""
    inputs = lib.Input(shape=(784,), name="digits")
    x = lib.layers.Dense(64, activation="relu")(inputs)
    x = lib.layers.Dense(64, activation="relu")(x)
    return lib.Model(inputs=inputs, outputs=lib.layers.Dense(10, name="predictions")(x))


def values_of(variables):
    """What goes into jax.jit: Keras's Variables unwrapped (JAX refuses them as arguments),
    kilnet's the same way."""
    return [getattr(v, "value", v) for v in variables]


def guide_loop(lib, model, batches):
    """The guide's train_step, jitted, over `batches`: (losses, accuracy, final weights)."""
    optimizer = lib.optimizers.Adam(learning_rate=1e-3)
    loss_fn = lib.losses.CategoricalCrossentropy(from_logits=True)
    accuracy = lib.metrics.CategoricalAccuracy()

    def loss_and_updates(trainable, non_trainable, metric_vars, x, y):
        y_pred, non_trainable = model.stateless_call(trainable, non_trainable, x)
        metric_vars = accuracy.stateless_update_state(metric_vars, y, y_pred)
        return loss_fn(y, y_pred), (non_trainable, metric_vars)

    grad_fn = jax.value_and_grad(loss_and_updates, has_aux=True)

    @jax.jit
    def train_step(state, data):
        trainable, non_trainable, optimizer_vars, metric_vars = state
        (loss, (non_trainable, metric_vars)), grads = grad_fn(
            trainable, non_trainable, metric_vars, *data)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_vars, metric_vars)

    optimizer.build(model.trainable_variables)
    state = (values_of(model.trainable_variables), values_of(model.non_trainable_variables),
             values_of(optimizer.variables), values_of(accuracy.variables))
    losses = []
    for data in batches:
        loss, state = train_step(state, data)
        losses.append(float(loss))
    return losses, float(accuracy.stateless_result(state[3])), [np.asarray(w) for w in state[0]]


def batches(count=12, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((size, 784), dtype=np.float32),
             np.eye(10, dtype=np.float32)[rng.integers(0, 10, size)]) for _ in range(count)]


def test_the_guides_jitted_loop_gives_keras_losses_weights_and_accuracy():
    ours, theirs = guide_model(kilnet), guide_model(keras)
    # Right after Model(...) the functional model has its weights, as Keras's does
    assert [v.shape for v in ours.trainable_variables] == [
        tuple(v.shape) for v in theirs.trainable_variables]
    theirs.set_weights(ours.get_weights())
    data = batches()
    our_losses, our_acc, our_weights = guide_loop(kilnet, ours, data)
    their_losses, their_acc, their_weights = guide_loop(keras, theirs, data)
    np.testing.assert_allclose(our_losses, their_losses, rtol=2e-5)
    assert our_losses[-1] < our_losses[0]
    assert our_acc == their_acc
    for a, b in zip(our_weights, their_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Nothing stored changed: the model keeps its starting weights until assigned
    np.testing.assert_array_equal(ours.get_weights()[0], theirs.get_weights()[0])


def test_stateless_call_returns_batch_norms_new_statistics_as_keras():
    def model(lib):
        inputs = lib.Input(shape=(3,))
        x = lib.layers.Dense(4)(inputs)
        return lib.Model(inputs, lib.layers.BatchNormalization()(x, training=None))

    ours, theirs = model(kilnet), model(keras)
    theirs.set_weights(ours.get_weights())
    x = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    y, new = ours.stateless_call(values_of(ours.trainable_variables),
                                 values_of(ours.non_trainable_variables), x, training=True)
    y_k, new_k = theirs.stateless_call(values_of(theirs.trainable_variables),
                                       values_of(theirs.non_trainable_variables), x,
                                       training=True)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_k), rtol=1e-5, atol=1e-6)
    assert len(new) == len(new_k) == 2   # moving mean and variance
    for a, b in zip(new, new_k):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    assert not np.allclose(np.asarray(new[0]), 0.0)   # the statistics moved
    np.testing.assert_array_equal(ours.non_trainable_variables[0].numpy(), 0.0)  # not stored


def test_eager_apply_gradients_matches_keras_and_assigns_the_variables():
    ours, theirs = guide_model(kilnet), guide_model(keras)
    theirs.set_weights(ours.get_weights())
    our_opt, their_opt = kilnet.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2)
    loss_fn = kilnet.losses.CategoricalCrossentropy(from_logits=True)

    def loss(trainable, model, x, y):
        y_pred, _ = model.stateless_call(trainable, [], x)
        return loss_fn(y, y_pred)

    for x, y in batches(count=3):
        grads = jax.grad(loss)(values_of(ours.trainable_variables), ours, x, y)
        our_opt.apply_gradients(zip(grads, ours.trainable_variables))
        their_opt.apply_gradients(zip([np.asarray(g) for g in grads],
                                      theirs.trainable_variables))
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert our_opt.built and len(our_opt.variables) > len(ours.trainable_variables)


def test_apply_honours_a_variables_constraint_as_keras():
    dense = kilnet.layers.Dense(2, kernel_constraint=kilnet.constraints.NonNeg())
    dense(np.ones((1, 3), np.float32))
    kilnet.optimizers.SGD(learning_rate=1.0).apply(
        [np.full((3, 2), 5.0, np.float32), np.zeros(2, np.float32)], dense.trainable_variables)
    assert dense.kernel.numpy().min() == 0.0   # projected after the step, not negative


def test_a_random_layer_inside_your_own_jit_draws_from_the_seed_states_given():
    model = kilnet.Sequential([kilnet.Input(shape=(4,)), kilnet.layers.Dropout(0.5, seed=7),
                               kilnet.layers.Dense(1)])
    trainable = values_of(model.trainable_variables)
    seeds = values_of(model.non_trainable_variables)
    x = np.ones((64, 4), np.float32)
    step = jax.jit(lambda t, n: model.stateless_call(t, n, x, training=True))
    first, advanced = step(trainable, seeds)
    second, _ = step(trainable, advanced)
    assert np.asarray(advanced[0]).tolist() == [7, 1]   # Keras's advance: [seed, draws]
    assert not np.array_equal(np.asarray(first), np.asarray(second))
    eager, _ = model.stateless_call(trainable, seeds, x, training=True)   # the same state
    np.testing.assert_allclose(np.asarray(eager), np.asarray(first), rtol=1e-6)
    inference, _ = jax.jit(lambda t, n: model.stateless_call(t, n, x))(trainable, seeds)
    np.testing.assert_allclose(np.asarray(inference), np.asarray(model(x)), rtol=1e-6)


def test_bad_lists_and_an_unbuilt_optimizer_get_clear_errors():
    model = guide_model(kilnet)
    with pytest.raises(ValueError, match="6 trainable variables.*Received: 2"):
        model.stateless_call([1.0, 2.0], [], np.ones((1, 784), np.float32))
    optimizer = kilnet.optimizers.Adam()
    with pytest.raises(RuntimeError, match=r"optimizer.build\(model.trainable_variables\)"):
        optimizer.stateless_apply([], [], [])
    optimizer.build(model.trainable_variables)
    with pytest.raises(ValueError, match="grads must hold 6 values.*Received: 1"):
        optimizer.stateless_apply(optimizer.variables, [np.ones(3)],
                                  values_of(model.trainable_variables))
    with pytest.raises(TypeError, match="var_list"):
        kilnet.optimizers.SGD().build([object()])
