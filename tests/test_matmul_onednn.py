"""bfloat16 matrix products on oneDNN (kilnet/_kernels/onednn_matmul.py): numbers against
float64 products of the same rounded numbers, gradients of every transposition, a second
derivative, and where Dense under mixed_bfloat16 takes them."""

import platform
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kilnet import layers
from kilnet._kernels import onednn, onednn_matmul
from kilnet.layers import _matmul
from _onednn_compare import assert_matches_xla

pytestmark = pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64"),
    reason="oneDNN's wheels are for x86-64 Linux only")


def rounded(rng, shape):
    """bfloat16 numbers, and the same numbers in float64."""
    a = jnp.asarray(rng.standard_normal(shape), jnp.bfloat16)
    return a, np.asarray(a, np.float64)


def assert_close(got, expected, bits=8):
    """To 2**-bits of the largest expected value: float32 sums rounded once to bfloat16."""
    expected = np.asarray(expected, np.float64)
    np.testing.assert_allclose(np.asarray(got, np.float64), expected, rtol=0,
                               atol=2.0 ** -bits * np.abs(expected).max())


def test_only_large_bfloat16_products_on_a_cpu_with_bfloat16_instructions():
    big = jnp.ones((64, 256), jnp.bfloat16), jnp.ones((256, 64), jnp.bfloat16)
    assert 64 * 256 * 64 >= onednn_matmul.MIN_WORK
    assert onednn_matmul.accepts(*big) == onednn.takes_bfloat16()
    assert not onednn_matmul.accepts(*(m.astype(jnp.float32) for m in big))
    assert not onednn_matmul.accepts(big[0][:4, :4], big[1][:4, :4])  # too small to gain
    if onednn.takes_bfloat16():
        with pytest.raises(ValueError, match="bfloat16 matrices. Received: float32"):
            onednn_matmul.matmul_onednn(big[0].astype(jnp.float32), big[1])
    else:
        with pytest.raises(RuntimeError, match="does not take bfloat16"):
            onednn_matmul.matmul_onednn(*big)


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_every_transposition_and_its_gradients_equal_float64(transpose_a, transpose_b):
    """op(a) @ op(b) and its gradients for a and b, on the rounded numbers: the product and the
    gradient for a in bfloat16, the gradient for b summed in float32 then rounded."""
    if not onednn.takes_bfloat16():
        pytest.skip("this processor has no bfloat16 instructions: XLA keeps the products")
    rng = np.random.default_rng(int(transpose_a) * 2 + int(transpose_b))
    m, k, n = 37, 150, 23
    a, a64 = rounded(rng, (k, m) if transpose_a else (m, k))
    b, b64 = rounded(rng, (n, k) if transpose_b else (k, n))
    dc, dc64 = rounded(rng, (m, n))
    op_a = a64.T if transpose_a else a64
    op_b = b64.T if transpose_b else b64

    def product(a, b):
        return onednn_matmul._product(a, b, transpose_a, transpose_b)

    c, vjp = jax.vjp(product, a, b)
    da, db = vjp(dc)
    assert c.dtype == da.dtype == db.dtype == jnp.bfloat16
    assert_close(c, op_a @ op_b)
    d_op_a, d_op_b = dc64 @ op_b.T, op_a.T @ dc64
    assert_close(da, d_op_a.T if transpose_a else d_op_a)
    assert_close(db, d_op_b.T if transpose_b else d_op_b)


def test_the_kernel_gradient_is_summed_in_float32():
    """Before its one rounding, the gradient for b is float32 to float32 precision: a sum over
    4,096 rows in bfloat16 would be off by far more."""
    if not onednn.takes_bfloat16():
        pytest.skip("this processor has no bfloat16 instructions: XLA keeps the products")
    rng = np.random.default_rng(3)
    a, a64 = rounded(rng, (4096, 32))
    dc, dc64 = rounded(rng, (4096, 16))
    db = onednn_matmul._float32_product(a, dc, True, False)
    assert db.dtype == jnp.float32
    expected = a64.T @ dc64
    np.testing.assert_allclose(np.asarray(db, np.float64), expected, rtol=0,
                               atol=1e-5 * np.abs(expected).max())


def test_second_derivative_equals_float64():
    """The gradients are products on oneDNN too, so they differentiate again (in reverse
    mode): a Hessian-vector product of sum(sin(a @ b)) against float64's on the rounded numbers."""
    if not onednn.takes_bfloat16():
        pytest.skip("this processor has no bfloat16 instructions: XLA keeps the products")
    rng = np.random.default_rng(4)
    a, a64 = rounded(rng, (24, 40))
    b, b64 = rounded(rng, (40, 12))
    v, v64 = rounded(rng, (24, 40))

    def loss(a, product):
        return jnp.sum(jnp.sin(product(a).astype(jnp.float32)))

    def hessian_times(v, product, a):  # reverse over reverse (a custom VJP has no JVP)
        return jax.grad(lambda a: jnp.vdot(jax.grad(lambda a: loss(a, product))(a), v)
                        .astype(jnp.float32))(a)

    ours = hessian_times(v, lambda a: onednn_matmul.matmul_onednn(a, b), a)
    with jax.enable_x64(True):
        theirs = hessian_times(jnp.asarray(v64), lambda a: a @ jnp.asarray(b64),
                               jnp.asarray(a64))
    assert ours.dtype == jnp.bfloat16
    assert_close(ours, theirs, bits=5)  # three roundings to bfloat16 on the way


@pytest.mark.parametrize("units, features, on_onednn", [(256, 512, True), (8, 16, False)])
def test_mixed_bfloat16_dense_takes_onednn_for_large_products(units, features, on_onednn,
                                                              monkeypatch):
    """Dense under mixed_bfloat16: a large product goes to oneDNN where the processor has
    bfloat16 instructions (a small one stays XLA's), with XLA's numbers to bfloat16 precision
    (KILNET_ONEDNN=0's flag); the kernel's gradient reaches its float32 variable as float32."""
    layer = layers.Dense(units, activation="relu", dtype="mixed_bfloat16")
    x = jnp.asarray(np.random.default_rng(5).standard_normal((64, features)), jnp.float32)
    params, state, _ = layer.init(np.random.default_rng(0), (features,))

    def run(params, x):
        y = layer.autocast_apply(params, state, x)[0]
        return jnp.sum(jnp.sin(y.astype(jnp.float32)))

    def program():
        return jax.jit(jax.grad(run)).lower(params, x).as_text()

    assert ("kilnet_onednn_product" in program()) == (on_onednn and onednn.takes_bfloat16())
    assert_matches_xla(run, program, params, x, monkeypatch, "kilnet_onednn_product")


def test_matrix_product_keeps_other_dtypes_on_xla():
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(_matmul.matrix_product(a, a.T), a @ a.T)


# -- stacks of products (MultiHeadAttention's products per head) ----------------------------
def test_stacks_count_their_batch_towards_the_work():
    a, b = jnp.ones((16, 64, 32), jnp.bfloat16), jnp.ones((16, 64, 32), jnp.bfloat16)
    assert 16 * 64 * 32 * 64 >= onednn_matmul.MIN_WORK > 64 * 32 * 64
    assert onednn_matmul.accepts(a, b, transpose_b=True) == onednn.takes_bfloat16()
    assert not onednn_matmul.accepts(a[:1], b[:1], transpose_b=True)  # one product: small
    assert not onednn_matmul.accepts(a, b[:8], transpose_b=True)      # stacks differ
    assert not onednn_matmul.accepts(a, b[0], transpose_b=True)       # a stack and a matrix
    if onednn.takes_bfloat16():
        with pytest.raises(ValueError, match=r"\(batch, m, k\) @ \(batch, k, n\).*"
                                             r"Received: \(16, 64, 32\) and \(16, 64, 32\)"):
            onednn_matmul.batched_matmul_onednn(a, b)  # k 32 against 64


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_stacked_products_and_their_gradients_equal_float64(transpose_a, transpose_b):
    """op(a[i]) @ op(b[i]) for each of 5 pairs, and the gradients for a and b, on the rounded
    numbers: each matrix of the stack its own product (no sum over the batch)."""
    if not onednn.takes_bfloat16():
        pytest.skip("this processor has no bfloat16 instructions: XLA keeps the products")
    rng = np.random.default_rng(10 + int(transpose_a) * 2 + int(transpose_b))
    batch, m, k, n = 5, 19, 70, 13
    a, a64 = rounded(rng, (batch, k, m) if transpose_a else (batch, m, k))
    b, b64 = rounded(rng, (batch, n, k) if transpose_b else (batch, k, n))
    dc, dc64 = rounded(rng, (batch, m, n))
    op_a = np.swapaxes(a64, 1, 2) if transpose_a else a64
    op_b = np.swapaxes(b64, 1, 2) if transpose_b else b64
    c, vjp = jax.vjp(lambda a, b: onednn_matmul.batched_matmul_onednn(
        a, b, transpose_a, transpose_b), a, b)
    da, db = vjp(dc)
    assert c.dtype == da.dtype == db.dtype == jnp.bfloat16
    for i in range(batch):  # each product to bfloat16 precision of its own magnitude
        assert_close(c[i], op_a[i] @ op_b[i])
        d_op_a, d_op_b = dc64[i] @ op_b[i].T, op_a[i].T @ dc64[i]
        assert_close(da[i], d_op_a.T if transpose_a else d_op_a)
        assert_close(db[i], d_op_b.T if transpose_b else d_op_b)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_mixed_bfloat16_attention_takes_onednn(dropout, monkeypatch):
    """MultiHeadAttention under mixed_bfloat16: its products per head (scores, context and
    the four gradient products) are bfloat16 stacks on oneDNN where the processor has
    bfloat16 instructions, with XLA's numbers to bfloat16 precision (KILNET_ONEDNN=0's flag);
    under float32 they stay XLA's."""
    x = jnp.asarray(np.random.default_rng(6).standard_normal((8, 64, 16)), jnp.float32)

    def setup(policy):
        layer = layers.MultiHeadAttention(2, 32, dropout=dropout, dtype=policy)
        params, state, _ = layer.init(np.random.default_rng(0), [(64, 16), (64, 16)])

        def run(params, x):
            y = layer.autocast_apply(params, state, x, x, training=True,
                                     rng=jax.random.key(1))[0]
            return jnp.sum(jnp.sin(y.astype(jnp.float32)))

        return params, run, lambda: jax.jit(jax.grad(run)).lower(params, x).as_text()

    params, run, program = setup("float32")
    assert "kilnet_onednn_product" not in program()
    params, run, program = setup("mixed_bfloat16")
    # six stacked products (two forward, four backward) per part of the batch that the CPU
    # computes side by side (_attention.attend_in_parts)
    stacks = re.findall(r"custom_call @kilnet_onednn_product.*: \(tensor<\d+x\d+x\d+xbf16>",
                        program())
    assert len(stacks) % 6 == 0 and (len(stacks) > 0) == onednn.takes_bfloat16()
    assert_matches_xla(run, program, params, x, monkeypatch, "kilnet_onednn_product", bits=5)


@pytest.mark.parametrize("make, call", [
    (lambda dtype: layers.Attention(dropout=0.2, dtype=dtype),
     lambda layer, params, state, x: layer.autocast_apply(
         params, state, [x, x], training=True, rng=jax.random.key(1))[0]),
    (lambda dtype: layers.MultiHeadAttention(2, 32, dtype=dtype),
     lambda layer, params, state, x: layer.autocast_apply(
         params, state, x, x, return_attention_scores=True)[0][0]),
], ids=["Attention", "MultiHeadAttention-scores"])
def test_other_bfloat16_attention_products_take_onednn(make, call, monkeypatch):
    """Keras's dot-product Attention layer and MultiHeadAttention returning its scores (both
    differentiated by JAX through the products' custom VJP): bfloat16 stacks on oneDNN where
    the processor has bfloat16 instructions, XLA's numbers to bfloat16 precision."""
    x = jnp.asarray(np.random.default_rng(8).standard_normal((16, 64, 32)), jnp.float32)

    def setup(policy):
        layer = make(policy)
        shape = [(64, 32), (64, 32)]
        params, state, _ = layer.init(np.random.default_rng(0), shape)

        def run(params, x):
            return jnp.sum(jnp.sin(call(layer, params, state, x).astype(jnp.float32)))

        return params, run, lambda: jax.jit(jax.grad(run, argnums=1)).lower(params, x).as_text()

    params, run, program = setup("float32")
    assert "kilnet_onednn_product" not in program()
    params, run, program = setup("mixed_bfloat16")
    stacks = re.findall(r"custom_call @kilnet_onednn_product.*: \(tensor<\d+x\d+x\d+xbf16>",
                        program())
    assert (len(stacks) >= 4) == onednn.takes_bfloat16()  # two products and their gradients
    assert_matches_xla(lambda x, _: run(params, x), program, x, None, monkeypatch,
                       "kilnet_onednn_product", bits=5)
