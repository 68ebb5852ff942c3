"""Per-channel sums and the bias addition whose gradient they are (kilnet.layers._bias)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kilnet import layers
from kilnet.layers._bias import ROWS_FOR_PRODUCT, add_bias, add_row_bias, channel_sums


@pytest.mark.parametrize("shape", [
    (128, 26, 26, 32),   # blocked, whole blocks (the MNIST convnet's first bias gradient)
    (100, 13, 13, 32),   # blocked, with leftover rows
    (97, 7, 7, 64),      # blocked, with leftover rows
    (12800, 256),        # blocked, 2-D
    (32, 128),           # few rows: one pass
    (3, 5000),           # channels wider than a wide row: one pass
    (7,),                # one axis: one row, so the values themselves
])
def test_channel_sums_match_numpy_in_float64(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = np.asarray(channel_sums(jnp.asarray(x)))
    want = x.astype(np.float64).reshape(-1, shape[-1]).sum(axis=0)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.sqrt(x.size))


def test_channel_sums_of_a_long_column_add_wide_rows_first():
    # The mechanism itself: on the CPU the first pass sums rows of about 2,048 values (a
    # plain sum of the (86528, 32) matrix would reduce rows of 32).
    jaxpr = jax.make_jaxpr(channel_sums)(jnp.ones((128, 26, 26, 32)))
    reduced = [eqn.invars[0].aval.shape for eqn in jaxpr.eqns if eqn.primitive.name == "reduce_sum"]
    assert reduced[0] == (86528 // 64, 64 * 32), reduced
    assert reduced[-1] == (64, 32)


def test_channel_sums_of_bfloat16_add_in_float32():
    x = np.random.default_rng(1).uniform(0.5, 1.5, (64, 40, 40, 16)).astype(np.float32)
    low = jnp.asarray(x, jnp.bfloat16)
    got = channel_sums(low)
    want = np.asarray(low.astype(jnp.float32), np.float64).reshape(-1, 16).sum(axis=0)
    assert got.dtype == jnp.float32
    # A bfloat16 running sum of 102,400 values near 1 would be off by hundreds (8-bit mantissa).
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)


def test_add_bias_gradients_match_the_plain_sum():
    rng = np.random.default_rng(2)
    y = jnp.asarray(rng.standard_normal((64, 20, 20, 32)), jnp.float32)
    bias = jnp.asarray(rng.standard_normal(32), jnp.float32)
    weights = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)

    def loss(add):
        return lambda y, b: jnp.sum(jnp.tanh(add(y, b)) * weights)

    got = jax.grad(loss(add_bias), argnums=(0, 1))(y, bias)
    want = jax.grad(loss(lambda y, b: y + b), argnums=(0, 1))(y, bias)
    np.testing.assert_allclose(np.asarray(add_bias(y, bias)), np.asarray(y + bias))
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-4, atol=1e-3)


def test_add_bias_promotes_as_numpy_and_returns_gradients_in_each_dtype():
    y, bias = jnp.ones((8, 4), jnp.bfloat16), jnp.arange(4.0, dtype=jnp.float32)
    out = add_bias(y, bias)
    assert out.dtype == jnp.float32
    d_y, d_bias = jax.grad(lambda y, b: add_bias(y, b).sum(), argnums=(0, 1))(y, bias)
    assert d_y.dtype == jnp.bfloat16 and d_bias.dtype == jnp.float32
    assert d_bias.tolist() == [8.0] * 4


def test_a_second_derivative_through_add_bias():
    # Gradient penalties differentiate a gradient: the custom gradient must itself be
    # differentiable. d/db of sum((d/dy sum(tanh(y + b)))^2) against JAX's own derivative.
    y, bias = jnp.linspace(-1.0, 1.0, 24).reshape(6, 4), jnp.array([0.1, -0.2, 0.3, 0.0])

    def penalty(add):
        inner = jax.grad(lambda y, b: jnp.sum(jnp.tanh(add(y, b))))
        return lambda b: jnp.sum(inner(y, b) ** 2)

    np.testing.assert_allclose(np.asarray(jax.grad(penalty(add_bias))(bias)),
                               np.asarray(jax.grad(penalty(lambda y, b: y + b))(bias)),
                               rtol=1e-5)


@pytest.mark.parametrize("layer, input_shape", [
    (layers.Conv2D(32, 3), (128, 28, 28, 1)),
    (layers.Conv1D(16, 5), (64, 200, 8)),
    (layers.Conv3D(8, 3), (16, 12, 12, 12, 2)),
    (layers.DepthwiseConv2D(3), (64, 30, 30, 8)),
    (layers.Dense(64), (64, 200, 32)),     # 12,800 rows: the product with a row of ones
    (layers.Dense(10), (32, 784)),         # few rows: XLA's own sum
    (layers.EinsumDense("abc,cd->abd", output_shape=(None, 48), bias_axes="d"), (16, 100, 8)),
])
def test_layer_bias_gradients_match_numpy(layer, input_shape):
    # The bias gradient of a layer is the sum of its output's gradient over every row:
    # checked in float64 for the shapes whose sums are blocked.
    rng = np.random.default_rng(3)
    x = rng.standard_normal(input_shape).astype(np.float32)
    params, state, out_shape = layer.init(np.random.default_rng(0), input_shape[1:])
    cotangent = rng.standard_normal((input_shape[0],) + tuple(out_shape)).astype(np.float32)

    def objective(bias):
        y, _ = layer.apply({**params, "bias": bias}, state, jnp.asarray(x))
        return jnp.sum(y * cotangent)

    got = np.asarray(jax.jit(jax.grad(objective))(params["bias"]))
    want = cotangent.astype(np.float64).reshape(-1, cotangent.shape[-1]).sum(axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(cotangent.size))


def test_add_row_bias_sums_many_rows_as_a_product():
    """The mechanism: from ROWS_FOR_PRODUCT float32 rows on the CPU the bias gradient is a
    product (a dot) with a row of ones, not a sum; below, or in bfloat16, XLA's own sum. Both
    give the column sums, and a gradient of that gradient."""
    def primitives(rows, dtype=jnp.float32):
        y, bias = jnp.ones((rows, 8), dtype), jnp.zeros((8,), dtype)
        grad = jax.make_jaxpr(jax.grad(lambda b: jnp.sum(add_row_bias(y, b) ** 2)))(bias)
        return {eqn.primitive.name for eqn in grad.jaxpr.eqns} | {
            e.primitive.name for eqn in grad.jaxpr.eqns for sub in jax.core.jaxprs_in_params(
                eqn.params) for e in sub.eqns}

    if jax.default_backend() == "cpu":
        assert "dot_general" in primitives(ROWS_FOR_PRODUCT)
    assert "dot_general" not in primitives(ROWS_FOR_PRODUCT - 1)
    assert "dot_general" not in primitives(ROWS_FOR_PRODUCT, jnp.bfloat16)
    rng = np.random.default_rng(5)
    y = rng.standard_normal((3000, 8)).astype(np.float32)
    d = rng.standard_normal((3000, 8)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    got = jax.grad(lambda b: jnp.sum(add_row_bias(jnp.asarray(y), b) * d))(bias)
    np.testing.assert_allclose(got, d.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-3)
    # second order: d/dy of |d(loss)/d(bias)|^2 through the product, against the plain sum
    def outer(add):
        return jax.grad(lambda yy: jnp.sum(jax.grad(
            lambda b: jnp.sum(add(yy, b) ** 2))(bias) ** 2))(jnp.asarray(y))
    np.testing.assert_allclose(outer(add_row_bias), outer(lambda a, b: a + b), rtol=1e-4,
                               atol=1e-2)
