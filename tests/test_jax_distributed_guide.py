"""Keras's "Distributed training with JAX" guide, as written: `jax.device_put` of the model's
and optimizer's Variables onto a mesh, a jitted step of `stateless_call` and
`optimizer.stateless_apply`, batches placed with a NamedSharding, the results assigned back.
Keras 3.15 itself stops at the guide's `jax.device_put(model.trainable_variables, ...)` on
JAX 0.10 (its Variables rely on `__jax_array__`, which JAX refuses now), so the reference
runs Keras's loop on the Variables' values."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

BATCH_SIZE = 16


def guide_model(lib):
    """The guide's convnet: rescaling, three convolutions with batch norm, pooling, Dense 256,
    Dropout 0.5, 10 logits."""
    inputs = lib.Input(shape=(28, 28, 1))
    x = lib.layers.Rescaling(1.0 / 255.0)(inputs)
    x = lib.layers.Conv2D(filters=12, kernel_size=3, padding="same", use_bias=False)(x)
    x = lib.layers.BatchNormalization(scale=False, center=True)(x)
    x = lib.layers.ReLU()(x)
    x = lib.layers.Conv2D(filters=24, kernel_size=6, use_bias=False, strides=2)(x)
    x = lib.layers.BatchNormalization(scale=False, center=True)(x)
    x = lib.layers.ReLU()(x)
    x = lib.layers.Conv2D(filters=32, kernel_size=6, padding="same", strides=2, name="large_k")(x)
    x = lib.layers.BatchNormalization(scale=False, center=True)(x)
    x = lib.layers.ReLU()(x)
    x = lib.layers.GlobalAveragePooling2D()(x)
    x = lib.layers.Dense(256, activation="relu")(x)
    x = lib.layers.Dropout(0.5)(x)
    outputs = lib.layers.Dense(10)(x)
    return lib.Model(inputs, outputs)


def guide_step(lib, model, optimizer, training):
    """The guide's compute_loss, value_and_grad and jitted train_step."""
    loss = lib.losses.SparseCategoricalCrossentropy(from_logits=True)

    def compute_loss(trainable_variables, non_trainable_variables, x, y):
        y_pred, updated = model.stateless_call(trainable_variables, non_trainable_variables, x,
                                               training=training)
        return loss(y, y_pred), updated

    compute_gradients = jax.value_and_grad(compute_loss, has_aux=True)

    @jax.jit
    def train_step(train_state, x, y):
        trainable, non_trainable, optimizer_variables = train_state
        (loss_value, non_trainable), grads = compute_gradients(trainable, non_trainable, x, y)
        trainable, optimizer_variables = optimizer.stateless_apply(optimizer_variables, grads,
                                                                   trainable)
        return loss_value, (trainable, non_trainable, optimizer_variables)

    return train_step


def images(count=4 * BATCH_SIZE, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (count, 28, 28, 1)).astype(np.float32),
            rng.integers(0, 10, count))


def run_guide(model, optimizer, train_step, place, epochs=2, devices=None):
    """The guide's loop: the state placed by `place`, each batch split over the mesh's batch
    axis (all devices, as the guide, or `devices`), the final state assigned back to the
    model's Variables. Returns the losses."""
    devices = jax.devices() if devices is None else devices
    data_sharding = NamedSharding(Mesh(devices, axis_names=("batch",)), P("batch"))
    train_state = place(model, optimizer, NamedSharding(Mesh(devices, axis_names=("_",)), P()))
    x, y = images()
    losses = []
    for _ in range(epochs):
        for start in range(0, len(x), BATCH_SIZE):
            sharded_x = jax.device_put(x[start:start + BATCH_SIZE], data_sharding)
            loss_value, train_state = train_step(train_state, sharded_x,
                                                 y[start:start + BATCH_SIZE])
            losses.append(float(loss_value))
    trainable, non_trainable, optimizer_variables = train_state
    for variable, value in zip(model.trainable_variables, trainable):
        variable.assign(value)
    for variable, value in zip(model.non_trainable_variables, non_trainable):
        variable.assign(value)
    return losses


def place_variables(model, optimizer, replicated):
    """As the guide writes it: jax.device_put of the Variables themselves."""
    return (jax.device_put(model.trainable_variables, replicated),
            jax.device_put(model.non_trainable_variables, replicated),
            jax.device_put(optimizer.variables, replicated))


def place_values(model, optimizer, replicated):
    """Keras's reference: its Variables' values (Keras cannot device_put the Variables)."""
    return tuple(jax.device_put([v.value for v in variables], replicated) for variables in (
        model.trainable_variables, model.non_trainable_variables, optimizer.variables))


def test_jax_sees_a_variable_as_the_array_it_stands_for():
    dense = kilnet.layers.Dense(3)
    dense.build((None, 2))
    sharding = NamedSharding(Mesh(jax.devices()[:1], axis_names=("_",)), P())
    placed = jax.device_put(dense.weights, sharding)
    assert all(isinstance(a, jax.Array) and a.sharding == sharding for a in placed)
    for array, variable in zip(placed, dense.weights):
        np.testing.assert_array_equal(np.asarray(array), variable.numpy())
    assert jax.tree.leaves(dense.weights)[0] is dense.kernel.value
    doubled = jax.jit(lambda weights: [w * 2 for w in weights])(dense.weights)
    np.testing.assert_array_equal(np.asarray(doubled[0]), 2 * dense.kernel.numpy())
    grads = jax.grad(lambda weights: (weights[0] ** 2).sum())(dense.weights)
    np.testing.assert_allclose(np.asarray(grads[0]), 2 * dense.kernel.numpy(), rtol=1e-6)


def test_the_guides_loop_trains_as_keras_loop_from_the_same_weights():
    """training=False (BatchNormalization on its moving statistics, no Dropout): kilnet's run
    of the guide as written equals Keras's loop on the values, step by step."""
    ours, theirs = guide_model(kilnet), guide_model(keras)
    ours.build((BATCH_SIZE, 28, 28, 1))   # as the guide: Keras's shape with the batch size
    start = ours.get_weights()
    theirs.set_weights(start)
    results = []
    for lib, model, place in ((kilnet, ours, place_variables), (keras, theirs, place_values)):
        optimizer = lib.optimizers.Adam(1e-3)
        optimizer.build(model.trainable_variables)
        losses = run_guide(model, optimizer, guide_step(lib, model, optimizer, False), place)
        results.append((losses, [np.asarray(w) for w in model.get_weights()]))
    (our_losses, our_weights), (their_losses, their_weights) = results
    np.testing.assert_allclose(our_losses, their_losses, rtol=2e-5)
    steps = len(our_losses) // 2   # two epochs over the same batches: each one's loss fell
    assert all(b < a for a, b in zip(our_losses[:steps], our_losses[steps:]))
    for a, b in zip(our_weights, their_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not np.allclose(our_weights[0], start[0])   # assigned back to the model


def train_as_the_guide(training=True, devices=None, jit=True, predict=True):
    """kilnet's run of the guide as written, from weights fixed by a seed: (losses, the
    model's weights, its non-trainable variables after the loop, then its predictions from
    them: on several devices the values assigned back are replicated over them). predict=False
    leaves the predictions out (their program is compiled for each new model)."""
    kilnet.utils.set_random_seed(5)
    model = guide_model(kilnet)
    model.build((BATCH_SIZE, 28, 28, 1))
    optimizer = kilnet.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    step = guide_step(kilnet, model, optimizer, training)
    losses = run_guide(model, optimizer, step if jit else step.__wrapped__, place_variables,
                       devices=devices)
    predictions = [model.predict(images(8, seed=1)[0], verbose=0)] if predict else []
    return (losses, [np.asarray(w) for w in model.get_weights()],
            [np.asarray(v.numpy()) for v in model.non_trainable_variables] + predictions)


def test_the_guides_loop_in_training_mode_draws_new_dropout_masks_each_step():
    """training=True, as the guide: Dropout draws from its SeedGenerator's state in the
    non-trainable variables, which each step returns advanced, and BatchNormalization
    updates its statistics. The jitted loop equals the same loop run eagerly, step by step
    (the same states give the same masks); the state advanced once a step."""
    losses, weights, non_trainable = train_as_the_guide(predict=False)
    eager_losses, eager_weights, _ = train_as_the_guide(jit=False, predict=False)
    np.testing.assert_allclose(losses, eager_losses, rtol=1e-5)
    for a, b in zip(weights, eager_weights):
        # a tenth of one Adam step (lr 1e-3): near-zero gradients' m / sqrt(v) carries the
        # rounding differences of the jitted and eager sums
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    seed_state = [v for v in non_trainable if v.dtype == np.uint32]
    assert len(seed_state) == 1 and seed_state[0][1] == len(losses)   # [seed, steps]
    steps = len(losses) // 2
    assert all(b < a for a, b in zip(losses[:steps], losses[steps:]))
    # the masks matter: without training mode the same loop gives other losses
    assert not np.allclose(losses, train_as_the_guide(training=False,
                                                                  predict=False)[0], rtol=1e-3)
