"""oneDNN's training-mode batch normalization (kilnet/_kernels/onednn_batch_norm.py): outputs,
statistics and gradients against float64 references, padded batches, the layer's use of it and
training with and without it (and under DataParallel: tests/test_conv_onednn.py)."""

import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kilnet
from kilnet import layers
from kilnet._kernels import onednn_batch_norm, onednn
from kilnet._kernels.onednn_batch_norm import batch_norm_onednn

pytestmark = pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64"),
    reason="oneDNN's wheels are for x86-64 Linux only")

EPSILON = 1e-3
SHAPES = [(8, 5, 5, 3), (16, 7), (6, 4, 2), (3, 2, 3, 2, 4)]


def masks(batch):
    return {"all real": np.ones(batch, np.float32),
            "padded end": (np.arange(batch) < batch - 2).astype(np.float32),
            "scattered": (np.arange(batch) % 3 != 1).astype(np.float32)}


def reference(x, gamma, beta, weights):
    """Float64 batch normalization over the real samples; padded samples' outputs are 0."""
    def normalize(x, gamma, beta):
        real = x[np.flatnonzero(weights)].reshape(-1, x.shape[-1])
        mean, var = real.mean(0), real.var(0)
        y = (x - mean) / jnp.sqrt(var + EPSILON) * gamma + beta
        keep = weights.reshape((-1,) + (1,) * (x.ndim - 1)) > 0
        return jnp.where(keep, y, 0.0), mean, var
    return normalize


def data(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
    gamma, beta = (rng.standard_normal(shape[-1]).astype(np.float32) for _ in range(2))
    return rng, x, gamma, beta


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mask", ["all real", "padded end", "scattered"])
def test_outputs_and_statistics_match_float64(shape, mask):
    _, x, gamma, beta = data(shape)
    weights = masks(shape[0])[mask]
    y, mean, var = jax.jit(lambda *a: batch_norm_onednn(*a, EPSILON))(x, gamma, beta, weights)
    with jax.enable_x64(True):
        ry, rmean, rvar = reference(x, gamma, beta, weights)(
            *(jnp.asarray(a, jnp.float64) for a in (x, gamma, beta)))
    np.testing.assert_allclose(mean, rmean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, rvar, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("mask", ["all real", "padded end", "scattered"])
@pytest.mark.parametrize("statistics_in_loss", [False, True])
def test_gradients_match_float64(shape, mask, statistics_in_loss):
    """x, gamma and beta's gradients under random cotangents for y (zero on padded samples,
    as a masked loss gives) and, when the statistics reach the loss, for mean and variance."""
    rng, x, gamma, beta = data(shape, seed=1)
    weights = masks(shape[0])[mask]
    keep = weights.reshape((-1,) + (1,) * (len(shape) - 1))
    d_y = rng.standard_normal(shape).astype(np.float32) * keep
    d_stats = [rng.standard_normal(shape[-1]).astype(np.float32) * statistics_in_loss
               for _ in range(2)]

    def loss(normalize, x, gamma, beta):
        y, mean, var = normalize(x, gamma, beta)
        total = jnp.sum(y * d_y)
        if statistics_in_loss:
            total = total + jnp.sum(mean * d_stats[0]) + jnp.sum(var * d_stats[1])
        return total

    ours = jax.jit(jax.grad(lambda *a: loss(
        lambda x, g, b: batch_norm_onednn(x, g, b, jnp.asarray(weights), EPSILON), *a),
        argnums=(0, 1, 2)))(x, gamma, beta)
    with jax.enable_x64(True):
        theirs = jax.grad(lambda *a: loss(reference(x, gamma, beta, weights), *a),
                          argnums=(0, 1, 2))(*(jnp.asarray(a, jnp.float64)
                                               for a in (x, gamma, beta)))
    for name, a, b in zip(("x", "gamma", "beta"), ours, theirs):
        b = np.asarray(b)
        if name == "x":  # padded samples: 0 from oneDNN; their float64 gradient has no use
            b = b * keep
        scale = max(1.0, float(np.abs(b).max()))
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * scale, err_msg=name)


def test_a_batch_of_padding_only_gives_zeros():
    x, gamma, beta = jnp.ones((3, 2)), jnp.ones(2), jnp.zeros(2)
    y, mean, var = batch_norm_onednn(x, gamma, beta, jnp.zeros(3), EPSILON)
    assert not np.any(np.asarray(y)) and not np.any(mean) and not np.any(var)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"weights \(batch,\).*weights \(4,\)"):
        batch_norm_onednn(jnp.ones((3, 2)), jnp.ones(2), jnp.zeros(2), jnp.ones(4), EPSILON)
    with pytest.raises(ValueError, match=r"gamma \(3,\)"):
        batch_norm_onednn(jnp.ones((3, 2)), jnp.ones(3), jnp.zeros(2), jnp.ones(3), EPSILON)


@pytest.fixture
def small_inputs_too(monkeypatch):
    """The tests' small images go to oneDNN as a model's large ones do."""
    monkeypatch.setattr(onednn_batch_norm, "MIN_SIZE", 1)


def test_small_inputs_and_rows_keep_the_xla_form():
    big_rows = jnp.zeros((2048, 512))
    assert big_rows.size >= onednn_batch_norm.MIN_SIZE
    assert not onednn_batch_norm.accepts(big_rows)
    assert not onednn_batch_norm.accepts(jnp.zeros((32, 8, 8, 32)))
    assert onednn_batch_norm.accepts(jnp.zeros((128, 16, 16, 32)))


@pytest.mark.parametrize("shape", [(6, 5, 5, 3), (6, 4, 3)], ids=str)
def test_the_layer_takes_onednn_in_float32(shape, monkeypatch, small_inputs_too):
    """BatchNormalization's training program calls oneDNN, with the numbers of its XLA form
    (KILNET_ONEDNN=0's flag); the padded batch's statistics skip the padding in both."""
    layer = layers.BatchNormalization()
    params, state, _ = layer.init(np.random.default_rng(0), shape[1:])
    params = {"gamma": jnp.linspace(0.5, 2, shape[-1]), "beta": jnp.linspace(-1, 1, shape[-1])}
    x = jnp.asarray(np.random.default_rng(4).standard_normal(shape), jnp.float32)
    mask = jnp.arange(shape[0]) < shape[0] - 1
    keep = mask.reshape((-1,) + (1,) * (len(shape) - 1))

    def run(x, params):
        y, new_state = layer.apply(params, state, x, training=True, sample_mask=mask)
        return jnp.sum(jnp.sin(y) * keep), new_state

    def program():  # traced afresh each time
        return jax.jit(lambda x, p: run(x, p)).lower(x, params).as_text()

    assert onednn_batch_norm.accepts(x)
    assert "kilnet_onednn_batch_norm_forward" in program()
    with_onednn = jax.value_and_grad(run, argnums=(0, 1), has_aux=True)(x, params)
    monkeypatch.setattr(onednn, "ENABLED", False)
    assert not onednn_batch_norm.accepts(x)
    assert "kilnet_onednn_batch_norm" not in program()
    without = jax.value_and_grad(run, argnums=(0, 1), has_aux=True)(x, params)
    for a, b in zip(jax.tree.leaves(with_onednn), jax.tree.leaves(without)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert not onednn_batch_norm.accepts(x.astype(jnp.bfloat16))


def test_a_convnet_with_batch_norm_trains_the_same_with_and_without_onednn(monkeypatch,
                                                                          small_inputs_too):
    """fit on 50 samples in batches of 16 (a padded last batch): the same losses, weights and
    moving statistics either way."""
    def train():
        kilnet.utils.set_random_seed(0)
        model = kilnet.Sequential([
            kilnet.Input((8, 8, 2)), layers.Conv2D(4, 3, padding="same", use_bias=False),
            layers.BatchNormalization(), layers.Activation("relu"), layers.Flatten(),
            # No bias before a batch norm: its true gradient is 0, and Adam would blow up
            # the rounding noise in it into full-size steps.
            layers.Dense(8, use_bias=False), layers.BatchNormalization(momentum=0.5),
            layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        x, y = rng.random((50, 8, 8, 2), dtype=np.float32), rng.integers(0, 3, 50)
        losses = model.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=0).history["loss"]
        return losses, model.get_weights()

    losses, weights = train()
    monkeypatch.setattr(onednn, "ENABLED", False)
    xla_losses, xla_weights = train()
    np.testing.assert_allclose(losses, xla_losses, rtol=1e-5)
    # Adam divides each gradient by its own running size, so two roundings of a gradient near
    # 0 can move a weight apart by a share of the learning rate (1e-3): on a 2-core AMD EPYC
    # (AVX2 kernels) one weight of 2,048 ended 2.3e-5 apart after 3 epochs.
    for a, b in zip(weights, xla_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)



def test_a_second_derivative_through_the_normalization_equals_jax_s():
    """A gradient penalty (keras.io's WGAN-GP) differentiates the normalization's gradient
    again: oneDNN's first derivative, the JAX formula's second, equal to JAX's throughout."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(6, 5, 5, 4)), jnp.float32)
    gamma = jnp.asarray(rng.normal(1.0, 0.2, size=4), jnp.float32)
    beta = jnp.zeros(4, jnp.float32)
    weights = jnp.asarray([1, 1, 1, 1, 1, 0], jnp.float32)

    def reference(x, gamma, beta, weights, epsilon):
        share = weights.reshape(-1, 1, 1, 1)
        count = jnp.sum(weights) * 25
        mean = jnp.sum(share * x, axis=(0, 1, 2)) / count
        var = jnp.sum(share * (x - mean) ** 2, axis=(0, 1, 2)) / count
        return (x - mean) * jax.lax.rsqrt(var + epsilon) * gamma + beta, mean, var

    def penalty_gradient(normalize):
        def penalty(gamma):
            g = jax.grad(lambda x: jnp.sum(jnp.tanh(
                normalize(x, gamma, beta, weights, 1e-3)[0]) * weights.reshape(-1, 1, 1, 1)))(x)
            return jnp.mean((jnp.sqrt(jnp.sum(g ** 2, axis=(1, 2, 3))) - 1.0) ** 2)
        return jax.value_and_grad(penalty)(gamma)

    ours, theirs = penalty_gradient(batch_norm_onednn), penalty_gradient(reference)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-4)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-4, atol=1e-6)


def test_a_large_feature_map_keeps_float32s_accuracy():
    """51,200 values a channel, as a small convnet's first feature map (ReLU outputs: many
    equal zeros): the statistics, outputs and gradients within float32's rounding of a float64
    reference, as XLA's are (oneDNN's own kernels summed each channel in one float32 running
    sum: variance 1e-4 off relative, outputs 4e-4)."""
    rng = np.random.default_rng(0)
    shape = (128, 20, 20, 4)
    x = (np.maximum(rng.standard_normal(shape) + 0.3, 0) + 1).astype(np.float32)
    gamma, beta = (rng.standard_normal(4).astype(np.float32) for _ in range(2))
    weights, dy = np.ones(128, np.float32), rng.standard_normal(shape).astype(np.float32)

    def loss(x, gamma, beta):
        y, mean, var = batch_norm_onednn(x, gamma, beta, weights, EPSILON)
        return jnp.sum(y * dy), (y, mean, var)

    grads, (y, mean, var) = jax.jit(jax.grad(loss, argnums=(0, 1, 2), has_aux=True))(
        x, gamma, beta)
    with jax.enable_x64(True):
        def reference_loss(x, gamma, beta):
            ry, rmean, rvar = reference(x, gamma, beta, weights)(x, gamma, beta)
            return jnp.sum(ry * dy), (ry, rmean, rvar)
        wide = [jnp.asarray(a, jnp.float64) for a in (x, gamma, beta)]
        rgrads, (ry, rmean, rvar) = jax.grad(reference_loss, argnums=(0, 1, 2),
                                             has_aux=True)(*wide)
    np.testing.assert_allclose(var, rvar, rtol=1e-6)
    np.testing.assert_allclose(y, ry, rtol=0, atol=5e-6)
    for grad, rgrad in zip(grads, rgrads):
        np.testing.assert_allclose(grad, rgrad, rtol=0, atol=1e-6 * np.abs(rgrad).max())
