"""kilnet.ops against NumPy/SciPy: values, shapes and dtypes of every family, eagerly and under
jax.jit; Variables accepted wherever an array is; Keras's defaults and conventions."""

from __future__ import annotations

import doctest
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

import kilnet.ops as ops
import kilnet.random
from kilnet.variables import Variable

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 4)).astype(np.float32)          # a small float32 matrix
Y = RNG.normal(size=(3, 4)).astype(np.float32)
POS = RNG.uniform(0.1, 3.0, size=(3, 4)).astype(np.float32)
M = RNG.normal(size=(4, 5)).astype(np.float32)
B = X > 0                                                # a boolean matrix
SPECIAL = np.array([0.0, 1.5, np.nan, np.inf, -np.inf, -2.0], np.float32)


def check(actual, expected, dtype=None, rtol=1e-5, atol=1e-6):
    """`actual` (a JAX array) equals `expected` in shape, dtype (if given) and value."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if dtype is not None:
        assert actual.dtype == np.dtype(dtype), actual.dtype
    if expected.dtype.kind in "biu":
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def maybe_jit(fn, jit):
    return jax.jit(fn) if jit else fn


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def selu_ref(x):
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    return scale * np.where(x > 0, x, alpha * np.expm1(x))


# (name, input, NumPy/SciPy reference on float64, expected dtype)
UNARY = [
    ("exp", X, np.exp, "float32"),
    ("log", POS, np.log, "float32"),
    ("log1p", POS, np.log1p, "float32"),
    ("sqrt", POS, np.sqrt, "float32"),
    ("rsqrt", POS, lambda x: 1 / np.sqrt(x), "float32"),
    ("square", X, np.square, "float32"),
    ("abs", X, np.abs, "float32"),
    ("absolute", X, np.abs, "float32"),
    ("negative", X, np.negative, "float32"),
    ("sign", X, np.sign, "float32"),
    ("round", X * 3, np.round, "float32"),
    ("floor", X * 3, np.floor, "float32"),
    ("ceil", X * 3, np.ceil, "float32"),
    ("cos", X, np.cos, "float32"),
    ("sin", X, np.sin, "float32"),
    ("tanh", X, np.tanh, "float32"),
    ("erf", X, special.erf, "float32"),
    ("relu", X, lambda x: np.maximum(x, 0), "float32"),
    ("relu6", X * 5, lambda x: np.clip(x, 0, 6), "float32"),
    ("sigmoid", X, special.expit, "float32"),
    ("log_sigmoid", X, lambda x: np.log(special.expit(x)), "float32"),
    ("softplus", X, lambda x: np.logaddexp(0, x), "float32"),
    ("silu", X, lambda x: x * special.expit(x), "float32"),
    ("swish", X, lambda x: x * special.expit(x), "float32"),
    ("gelu", X, gelu_tanh, "float32"),
    ("leaky_relu", X, lambda x: np.where(x > 0, x, 0.2 * x), "float32"),
    ("elu", X, lambda x: np.where(x > 0, x, np.expm1(x)), "float32"),
    ("selu", X, selu_ref, "float32"),
    ("softmax", X, lambda x: special.softmax(x, axis=-1), "float32"),
    ("log_softmax", X, lambda x: special.log_softmax(x, axis=-1), "float32"),
    ("isnan", SPECIAL, np.isnan, "bool"),
    ("isinf", SPECIAL, np.isinf, "bool"),
    ("isfinite", SPECIAL, np.isfinite, "bool"),
    ("logical_not", B, np.logical_not, "bool"),
    ("stop_gradient", X, lambda x: x, "float32"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name, x, ref, dtype", UNARY, ids=[u[0] for u in UNARY])
def test_unary(name, x, ref, dtype, jit):
    fn = maybe_jit(getattr(ops, name), jit)
    expected = ref(x.astype(np.float64)) if x.dtype != bool else ref(x)
    check(fn(x), expected, dtype)


BINARY = [
    ("add", X, Y, np.add, "float32"),
    ("subtract", X, Y, np.subtract, "float32"),
    ("multiply", X, Y, np.multiply, "float32"),
    ("divide", X, POS, np.divide, "float32"),
    ("true_divide", X, POS, np.divide, "float32"),
    ("power", POS, Y, np.power, "float32"),
    ("maximum", X, Y, np.maximum, "float32"),
    ("minimum", X, Y, np.minimum, "float32"),
    ("equal", X, np.where(B, X, Y), np.equal, "bool"),
    ("not_equal", X, np.where(B, X, Y), np.not_equal, "bool"),
    ("greater", X, Y, np.greater, "bool"),
    ("greater_equal", X, np.where(B, X, Y), np.greater_equal, "bool"),
    ("less", X, Y, np.less, "bool"),
    ("less_equal", X, np.where(B, X, Y), np.less_equal, "bool"),
    ("logical_and", B, Y > 0, np.logical_and, "bool"),
    ("logical_or", B, Y > 0, np.logical_or, "bool"),
    ("matmul", X, M, np.matmul, "float32"),
    ("dot", X, M, np.dot, "float32"),
    ("tensordot", X, M, lambda a, b: np.tensordot(a, b, axes=1), "float32"),
    ("add_broadcast", X, Y[0], np.add, "float32"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name, a, b, ref, dtype", BINARY, ids=[b[0] for b in BINARY])
def test_binary(name, a, b, ref, dtype, jit):
    op = getattr(ops, name.replace("_broadcast", ""))
    fn = (lambda p, q: op(p, q, axes=1)) if name == "tensordot" else op
    expected = ref(a.astype(np.float64), b.astype(np.float64)) if dtype != "bool" or \
        a.dtype != bool else ref(a, b)
    check(maybe_jit(fn, jit)(a, b), expected, dtype, rtol=2e-5)


def test_scalar_operand_keeps_the_array_dtype():
    # Python scalars are weakly typed, as in Keras: bfloat16 + 2.0 stays bfloat16
    x = jnp.ones((2,), jnp.bfloat16)
    assert ops.add(x, 2.0).dtype == jnp.bfloat16
    assert ops.multiply(3, x).dtype == jnp.bfloat16


# (name, NumPy reference(x, axis, keepdims), input, expected dtype)
REDUCTIONS = [
    ("mean", np.mean, X, "float32"),
    ("sum", np.sum, X, "float32"),
    ("max", np.max, X, "float32"),
    ("min", np.min, X, "float32"),
    ("prod", np.prod, X, "float32"),
    ("std", np.std, X, "float32"),
    ("var", np.var, X, "float32"),
    ("argmax", np.argmax, X, "int32"),
    ("argmin", np.argmin, X, "int32"),
    ("all", np.all, B, "bool"),
    ("any", np.any, B, "bool"),
    ("logsumexp", special.logsumexp, X, "float32"),
    ("norm", lambda x, axis, keepdims: np.linalg.norm(x, axis=axis, keepdims=keepdims), X,
     "float32"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, False), (1, True), (-1, False)])
@pytest.mark.parametrize("name, ref, x, dtype", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
def test_reductions(name, ref, x, dtype, axis, keepdims, jit):
    if name in ("argmax", "argmin") and axis is None and keepdims:
        pytest.skip("NumPy's argmax has no keepdims for axis=None")
    fn = maybe_jit(lambda v: getattr(ops, name)(v, axis=axis, keepdims=keepdims), jit)
    source = x if x.dtype == bool else x.astype(np.float64)
    check(fn(x), ref(source, axis=axis, keepdims=keepdims), dtype)


def test_reductions_of_integers_give_float32_means():
    ints = np.arange(12, dtype=np.int32).reshape(3, 4)
    check(ops.mean(ints, axis=0), np.mean(ints, axis=0), "float32")
    check(ops.var(ints), np.var(ints), "float32")
    check(ops.sum(ints, axis=1), np.sum(ints, axis=1), "int32")
    check(ops.max(np.zeros((0,), np.float32), initial=-1.0), np.float32(-1.0), "float32")


def test_cumsum_sort_argsort_top_k():
    check(ops.cumsum(X, axis=1), np.cumsum(X, axis=1), "float32")
    check(ops.cumsum(X), np.cumsum(X), "float32")
    check(ops.sort(X), np.sort(X), "float32")
    check(ops.sort(X, axis=0), np.sort(X, axis=0), "float32")
    check(ops.argsort(X), np.argsort(X, kind="stable"), "int32")
    values, indices = ops.top_k(X, 2)
    order = np.argsort(-X, axis=-1, kind="stable")[:, :2]
    check(indices, order, "int32")
    check(values, np.take_along_axis(X, order, axis=-1), "float32")
    # ties: the lower index first
    check(ops.top_k(np.array([1.0, 3.0, 2.0, 3.0], np.float32), 2)[1], np.array([1, 3]))


# Shape and indexing functions: (id, kilnet call, NumPy call) on X (3, 4)
SHAPE_OPS = [
    ("reshape", lambda o, x: o.reshape(x, (2, -1)), lambda x: np.reshape(x, (2, -1))),
    ("transpose", lambda o, x: o.transpose(x), np.transpose),
    ("transpose_axes", lambda o, x: o.transpose(x[None], (2, 0, 1)),
     lambda x: np.transpose(x[None], (2, 0, 1))),
    ("swapaxes", lambda o, x: o.swapaxes(x, 0, 1), lambda x: np.swapaxes(x, 0, 1)),
    ("moveaxis", lambda o, x: o.moveaxis(x[None], 0, -1), lambda x: np.moveaxis(x[None], 0, -1)),
    ("expand_dims", lambda o, x: o.expand_dims(x, 1), lambda x: np.expand_dims(x, 1)),
    ("expand_dims_tuple", lambda o, x: o.expand_dims(x, (0, 3)),
     lambda x: np.expand_dims(x, (0, 3))),
    ("squeeze", lambda o, x: o.squeeze(x[:, None]), lambda x: np.squeeze(x[:, None])),
    ("squeeze_axis", lambda o, x: o.squeeze(x[None, :, None], axis=0),
     lambda x: np.squeeze(x[None, :, None], axis=0)),
    ("flip", lambda o, x: o.flip(x, axis=1), lambda x: np.flip(x, axis=1)),
    ("flip_all", lambda o, x: o.flip(x), np.flip),
    ("tile", lambda o, x: o.tile(x, (2, 1)), lambda x: np.tile(x, (2, 1))),
    ("repeat", lambda o, x: o.repeat(x, 2, axis=0), lambda x: np.repeat(x, 2, axis=0)),
    ("repeat_flat", lambda o, x: o.repeat(x, 2), lambda x: np.repeat(x, 2)),
    ("broadcast_to", lambda o, x: o.broadcast_to(x[0], (2, 4)),
     lambda x: np.broadcast_to(x[0], (2, 4))),
    ("take", lambda o, x: o.take(x, np.array([2, 0]), axis=0),
     lambda x: np.take(x, [2, 0], axis=0)),
    ("take_flat", lambda o, x: o.take(x, np.array([5, 1])), lambda x: np.take(x, [5, 1])),
    ("take_along_axis", lambda o, x: o.take_along_axis(x, o.argsort(x, axis=1), axis=1),
     lambda x: np.take_along_axis(x, np.argsort(x, axis=1), axis=1)),
    ("concatenate", lambda o, x: o.concatenate([x, 2 * x], axis=1),
     lambda x: np.concatenate([x, 2 * x], axis=1)),
    ("stack", lambda o, x: o.stack([x, 2 * x], axis=1), lambda x: np.stack([x, 2 * x], axis=1)),
    ("where", lambda o, x: o.where(x > 0, x, -1.0), lambda x: np.where(x > 0, x, -1.0)),
    ("pad", lambda o, x: o.pad(x, ((1, 0), (0, 2))), lambda x: np.pad(x, ((1, 0), (0, 2)))),
    ("pad_value", lambda o, x: o.pad(x, 1, constant_values=7.0),
     lambda x: np.pad(x, 1, constant_values=7.0)),
    ("pad_reflect", lambda o, x: o.pad(x, ((1, 1), (2, 0)), mode="reflect"),
     lambda x: np.pad(x, ((1, 1), (2, 0)), mode="reflect")),
    ("clip", lambda o, x: o.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5)),
    ("slice", lambda o, x: o.slice(x, (1, 1), (2, 2)), lambda x: x[1:3, 1:3]),
    ("slice_rest", lambda o, x: o.slice(x, (1, 2), (-1, -1)), lambda x: x[1:, 2:]),
    ("slice_update", lambda o, x: o.slice_update(x, (1, 2), np.ones((2, 2), np.float32)),
     lambda x: np.concatenate([x[:, :2], np.vstack([x[:1, 2:], np.ones((2, 2))])], axis=1)),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("call, ref", [s[1:] for s in SHAPE_OPS], ids=[s[0] for s in SHAPE_OPS])
def test_shape_ops(call, ref, jit):
    check(maybe_jit(lambda x: call(ops, x), jit)(X), ref(X), "float32")


def test_nan_to_num():
    check(ops.nan_to_num(SPECIAL, nan=-3.0, posinf=9.0),
          np.nan_to_num(SPECIAL, nan=-3.0, posinf=9.0), "float32")
    # infinities default to the dtype's extremes
    check(ops.nan_to_num(SPECIAL), np.nan_to_num(SPECIAL), "float32")


def test_split_and_unstack():
    parts = ops.split(X, 2, axis=1)
    assert isinstance(parts, list) and len(parts) == 2
    for part, ref in zip(parts, np.split(X, 2, axis=1)):
        check(part, ref, "float32")
    for part, ref in zip(ops.split(X, [1], axis=0), np.split(X, [1], axis=0)):
        check(part, ref)
    rows = ops.unstack(X, axis=1)
    assert len(rows) == 4
    check(rows[2], X[:, 2])
    with pytest.raises(ValueError, match="num"):
        ops.unstack(X, num=3, axis=1)


def test_where_with_condition_only_gives_indices():
    rows, cols = ops.where(B)
    ref_rows, ref_cols = np.nonzero(B)
    check(rows, ref_rows)
    check(cols, ref_cols)
    with pytest.raises(ValueError, match="x1"):
        ops.where(B, X)


def test_pad_constant_values_need_constant_mode():
    with pytest.raises(ValueError, match="constant_values"):
        ops.pad(X, 1, mode="reflect", constant_values=1.0)


def test_segment_sum_and_max():
    data = np.arange(10, dtype=np.float32).reshape(5, 2)
    ids = np.array([0, 0, 2, 1, 2])
    sums = np.zeros((3, 2), np.float32)
    np.add.at(sums, ids, data)
    check(ops.segment_sum(data, ids, num_segments=3), sums, "float32")
    check(jax.jit(lambda d, i: ops.segment_sum(d, i, 3))(data, ids), sums)
    maxes = np.stack([data[ids == s].max(axis=0) for s in range(3)])
    check(ops.segment_max(data, ids, num_segments=3), maxes, "float32")


def test_rounding_and_rsqrt_of_integers_give_float32():
    ints = np.array([1, 4, 9], np.int32)
    check(ops.floor(ints), np.floor(ints), "float32")
    check(ops.ceil(ints), np.ceil(ints), "float32")
    check(ops.rsqrt(ints), 1 / np.sqrt(ints), "float32")
    check(ops.erf(ints), special.erf(ints), "float32")
    check(ops.round(np.array([1.234, -5.678], np.float32), decimals=1),
          np.array([1.2, -5.7]), "float32")
    check(ops.clip(np.array([True, False]), 0, 0), np.array([0, 0]), "int32")


def test_einsum():
    check(ops.einsum("ij,jk->ik", X, M), X.astype(np.float64) @ M, "float32")
    check(ops.einsum("ij->j", X), X.sum(axis=0), "float32")
    batch = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    check(ops.einsum("bij,jk->bik", batch, M), np.einsum("bij,jk->bik", batch, M))


def test_matmul_batches_over_leading_axes():
    batch = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    check(ops.matmul(batch, M), np.matmul(batch, M), "float32", rtol=1e-5)


# -- neural network functions --------------------------------------------------------------------

def test_activation_arguments_and_keras_defaults():
    check(ops.leaky_relu(X, negative_slope=0.5), np.where(X > 0, X, 0.5 * X))
    check(ops.elu(X, alpha=2.0), np.where(X > 0, X, 2.0 * np.expm1(X.astype(np.float64))))
    exact = 0.5 * X * (1 + special.erf(X.astype(np.float64) / np.sqrt(2)))
    check(ops.gelu(X, approximate=False), exact)
    # keras.ops.gelu approximates by default: the two differ measurably
    assert np.max(np.abs(np.asarray(ops.gelu(X)) - exact)) > 1e-5
    check(ops.softmax(X, axis=0), special.softmax(X.astype(np.float64), axis=0))
    check(ops.log_softmax(X, axis=0), special.log_softmax(X.astype(np.float64), axis=0))


def test_one_hot():
    labels = np.array([0, 2, 1, 3])
    check(ops.one_hot(labels, 4), np.eye(4)[labels], "float32")
    check(ops.one_hot(labels, 4, axis=0), np.eye(4)[labels].T, "float32")
    check(ops.one_hot(labels, 4, dtype="int32"), np.eye(4, dtype=np.int32)[labels], "int32")
    # out-of-range labels encode as zeros, as in Keras
    check(ops.one_hot(np.array([-1, 5]), 4), np.zeros((2, 4)), "float32")
    with pytest.raises(ValueError, match="sparse"):
        ops.one_hot(labels, 4, sparse=True)


@pytest.mark.parametrize("axes, keepdims", [([0], False), ([0, 1], True), ((1,), False)])
def test_moments(axes, keepdims):
    x = RNG.normal(size=(4, 3, 2)).astype(np.float32)
    mean, variance = ops.moments(x, axes, keepdims=keepdims)
    check(mean, np.mean(x, axis=tuple(axes), keepdims=keepdims), "float32")
    check(variance, np.var(x, axis=tuple(axes), keepdims=keepdims), "float32")


def test_moments_of_half_precision_reduce_in_float32():
    # 300 values of 200 in float16: a float16 sum would overflow (max 65504)
    x = jnp.full((300,), 200.0, jnp.float16)
    mean, variance = ops.moments(x, axes=[0])
    assert mean.dtype == jnp.float16 and variance.dtype == jnp.float16
    check(mean.astype(np.float32), np.float32(200.0))
    check(variance.astype(np.float32), np.float32(0.0))
    with pytest.raises(ValueError, match="synchronized"):
        ops.moments(x, axes=[0], synchronized=True)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("axis", [-1, 0])
def test_normalize(order, axis):
    expected = X / np.linalg.norm(X.astype(np.float64), ord=order, axis=axis, keepdims=True)
    check(ops.normalize(X, axis=axis, order=order), expected, "float32")


def test_normalize_zero_vector_is_zero_with_finite_gradient():
    zero = np.zeros((3,), np.float32)
    check(ops.normalize(zero), zero)
    grad = jax.grad(lambda v: ops.sum(ops.normalize(v)))(zero)
    assert np.all(np.isfinite(np.asarray(grad)))
    with pytest.raises(ValueError, match="order"):
        ops.normalize(X, order=0)


def _probs(shape):
    return special.softmax(RNG.normal(size=shape), axis=-1).astype(np.float32)


def test_binary_crossentropy():
    target = (RNG.uniform(size=(3, 4)) > 0.5).astype(np.float32)
    logits = X.astype(np.float64)
    p = special.expit(logits)
    expected = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    check(ops.binary_crossentropy(target, X, from_logits=True), expected, "float32")
    check(ops.binary_crossentropy(target, p.astype(np.float32)), expected, "float32", rtol=1e-4)
    # probabilities of exactly 0 and 1 are clipped: a finite loss
    clipped = ops.binary_crossentropy(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    bound = np.float32(1 - 1e-7).astype(np.float64)   # 1 - 1e-7 as float32 can hold it
    check(clipped, -np.log([1e-7, 1 - bound]), rtol=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        ops.binary_crossentropy(target, X[:, :2])


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_crossentropies(from_logits):
    labels = np.array([0, 3, 1])
    onehot = np.eye(4, dtype=np.float32)[labels]
    output = X if from_logits else _probs((3, 4))
    log_p = (special.log_softmax(output.astype(np.float64), axis=-1) if from_logits
             else np.log(output.astype(np.float64)))
    expected = -log_p[np.arange(3), labels]
    check(ops.categorical_crossentropy(onehot, output, from_logits=from_logits),
          expected, "float32", rtol=1e-5)
    check(ops.sparse_categorical_crossentropy(labels, output, from_logits=from_logits),
          expected, "float32", rtol=1e-5)
    # a trailing length-1 label axis, as Keras accepts
    check(ops.sparse_categorical_crossentropy(labels[:, None], output, from_logits=from_logits),
          expected, rtol=1e-5)
    # classes along axis 0
    check(ops.categorical_crossentropy(onehot.T, output.T, from_logits=from_logits, axis=0),
          expected, rtol=1e-5)


def test_categorical_crossentropy_rescales_unnormalized_probabilities():
    onehot = np.eye(4, dtype=np.float32)[[0, 3, 1]]
    probs = _probs((3, 4))
    check(ops.categorical_crossentropy(onehot, 5 * probs),
          ops.categorical_crossentropy(onehot, probs), rtol=1e-6)
    # a zero probability for the true class is clipped to 1e-7: a finite loss
    check(ops.categorical_crossentropy(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])),
          [-np.log(1e-7)], rtol=1e-5)
    check(ops.sparse_categorical_crossentropy(np.array([0]), np.array([[0.0, 1.0]])),
          [-np.log(1e-7)], rtol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        ops.categorical_crossentropy(onehot, probs[:, :3])
    with pytest.raises(ValueError, match="target"):
        ops.sparse_categorical_crossentropy(np.array([0, 1]), probs)


# -- tensors, dtypes and creation ----------------------------------------------------------------

@pytest.mark.parametrize("make, expected", [
    (lambda: ops.zeros((2, 3)), np.zeros((2, 3))),
    (lambda: ops.ones(4), np.ones(4)),
    (lambda: ops.full((2,), 7), np.full((2,), 7.0)),
    (lambda: ops.eye(3, 4, k=1), np.eye(3, 4, k=1)),
    (lambda: ops.linspace(0, 1, 5), np.linspace(0, 1, 5)),
    (lambda: ops.arange(0.0, 1.0, 0.25), np.arange(0.0, 1.0, 0.25)),
    (lambda: ops.zeros_like(np.ones((2,), np.int32), dtype="float32"), np.zeros(2)),
], ids=["zeros", "ones", "full", "eye", "linspace", "arange_float", "zeros_like_dtype"])
def test_creation_defaults_to_float32(make, expected):
    check(make(), expected, "float32")
    # the default does not follow JAX's x64 flag (Keras's floatx)
    with jax.enable_x64(True):
        check(make(), expected, "float32")


def test_creation_with_dtypes():
    check(ops.arange(5), np.arange(5), "int32")
    check(ops.arange(1, 7, 2), np.arange(1, 7, 2), "int32")
    check(ops.zeros((2,), dtype="int32"), np.zeros(2, np.int32), "int32")
    check(ops.ones_like(np.zeros((2,), np.int32)), np.ones(2, np.int32), "int32")
    check(ops.full_like(X, 2), np.full_like(X, 2), "float32")
    check(ops.full((2,), 3, dtype="int32"), np.array([3, 3]), "int32")
    start, step = ops.linspace(0, 2, 3, endpoint=False, retstep=True)
    check(start, np.linspace(0, 2, 3, endpoint=False))
    assert float(step) == pytest.approx(2 / 3)
    with jax.enable_x64(True):
        check(ops.arange(3), np.arange(3), "int32")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int32", "bool", "uint8",
                                   np.float16, jnp.int8])
def test_cast(dtype):
    values = np.abs(X) * 3   # non-negative: casting negatives to unsigned is platform-defined
    result = ops.cast(values, dtype)
    assert result.dtype == jnp.dtype(dtype)
    expected = values.astype(jnp.dtype(dtype)).astype(np.float32)
    check(np.asarray(result).astype(np.float32), expected, rtol=1e-2)


def test_convert_to_tensor_numpy_shape():
    tensor = ops.convert_to_tensor([[1, 2], [3, 4]], dtype="float32")
    assert isinstance(tensor, jax.Array) and tensor.dtype == jnp.float32
    check(tensor, np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert ops.convert_to_tensor(np.int32(5)).dtype == jnp.int32
    array = ops.convert_to_numpy(ops.ones((2,)))
    assert isinstance(array, np.ndarray) and array.dtype == np.float32
    assert ops.shape(X) == (3, 4) and isinstance(ops.shape(ops.ones((2,))), tuple)
    assert ops.shape([[1, 2, 3]]) == (1, 3)
    assert ops.ndim(X) == 2 and ops.size(X) == 12
    with pytest.raises(ValueError, match="sparse"):
        ops.convert_to_tensor(X, sparse=True)


def test_shape_is_static_under_jit():
    seen = []
    jax.jit(lambda x: seen.append(ops.shape(x)) or x)(X)
    assert seen == [(3, 4)] and all(type(d) is int for d in seen[0])


def test_stop_gradient_blocks_the_gradient():
    grad = jax.grad(lambda x: ops.sum(x * ops.stop_gradient(x)))(X)
    check(grad, X)   # d/dx (x * c) = c, not 2x


# -- control flow --------------------------------------------------------------------------------

def test_cond():
    def pick(flag):
        return ops.cond(flag, lambda: ops.ones((2,)), lambda: ops.zeros((2,)))

    check(pick(True), np.ones(2))
    check(jax.jit(pick)(False), np.zeros(2))
    check(jax.jit(pick)(True), np.ones(2))


def test_while_loop_structures():
    # a tuple of loop variables is unpacked into cond and body; the result is a tuple
    i, total = ops.while_loop(lambda i, s: i < 5, lambda i, s: (i + 1, s + i), (0, 0))
    assert (int(i), int(total)) == (5, 10)
    result = ops.while_loop(lambda i, s: i < 3, lambda i, s: [i + 1, s * 2], [0, 1.0])
    assert isinstance(result, list) and float(result[1]) == 8.0
    # a single loop variable comes back bare
    assert int(ops.while_loop(lambda i: i < 7, lambda i: i + 2, 0)) == 8
    # maximum_iterations stops early
    assert int(ops.while_loop(lambda i: i < 100, lambda i: i + 1, 0, maximum_iterations=4)) == 4
    jitted = jax.jit(lambda n: ops.while_loop(lambda i: i < n, lambda i: i + 1, 0))
    assert int(jitted(6)) == 6


def test_fori_loop_and_scan():
    assert int(ops.fori_loop(0, 5, lambda i, acc: acc + i, 0)) == 10

    def running(carry, x):
        carry = carry + x
        return carry, carry

    final, ys = ops.scan(running, 0.0, X[0])
    check(ys, np.cumsum(X[0]))
    check(final, np.sum(X[0]))
    _, reversed_ys = jax.jit(lambda xs: ops.scan(running, 0.0, xs, reverse=True))(X[0])
    check(reversed_ys, np.cumsum(X[0][::-1])[::-1])
    _, counted = ops.scan(lambda c, _: (c + 1, c), 0, length=3)
    check(counted, np.arange(3))


# -- Variables as arguments ----------------------------------------------------------------------

def _var(value, name="w"):
    return Variable(np.asarray(value), name=name)


# (id, call taking the value, which is either the array X or a Variable holding it)
WITH_VARIABLES = [
    ("add", lambda v: ops.add(v, 1.0)),
    ("add_right", lambda v: ops.add(1.0, v)),
    ("matmul", lambda v: ops.matmul(v, M)),
    ("einsum", lambda v: ops.einsum("ij,jk->ik", v, M)),
    ("mean", lambda v: ops.mean(v, axis=0)),
    ("max", lambda v: ops.max(v)),
    ("concatenate", lambda v: ops.concatenate([v, v], axis=1)),
    ("stack", lambda v: ops.stack([v, X])),
    ("reshape", lambda v: ops.reshape(v, (-1,))),
    ("transpose", lambda v: ops.transpose(v)),
    ("where", lambda v: ops.where(v > 0, v, 0.0)),
    ("clip", lambda v: ops.clip(v, -0.1, 0.1)),
    ("relu", ops.relu),
    ("softmax", ops.softmax),
    ("exp", ops.exp),
    ("cast", lambda v: ops.cast(v, "bfloat16")),
    ("convert_to_tensor", ops.convert_to_tensor),
    ("convert_to_tensor_list", lambda v: ops.convert_to_tensor([v, v])),
    ("stop_gradient", ops.stop_gradient),
    ("zeros_like", ops.zeros_like),
    ("take", lambda v: ops.take(v, np.array([1]), axis=0)),
    ("slice", lambda v: ops.slice(v, (0, 1), (2, 2))),
    ("slice_update", lambda v: ops.slice_update(X, (0, 0), ops.slice(v, (0, 0), (1, 2)))),
    ("normalize", ops.normalize),
    ("moments", lambda v: ops.moments(v, axes=[0])),
    ("binary_crossentropy", lambda v: ops.binary_crossentropy(ops.sigmoid(X), v,
                                                              from_logits=True)),
    ("sparse_categorical_crossentropy",
     lambda v: ops.sparse_categorical_crossentropy(np.array([0, 1, 2]), v, from_logits=True)),
    ("shape", lambda v: np.array(ops.shape(v))),
    ("convert_to_numpy", ops.convert_to_numpy),
]


@pytest.mark.parametrize("call", [w[1] for w in WITH_VARIABLES], ids=[w[0] for w in WITH_VARIABLES])
def test_ops_accept_variables(call):
    expected = call(X)
    actual = call(_var(X))
    for got, want in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        check(got, want, dtype=np.asarray(want).dtype)


def test_variables_inside_jit_through_an_apply_scope():
    """The way a layer's call runs in a compiled step: the Variable is bound to a traced array
    by the scope, and ops read that array."""
    from kilnet import _scope

    kernel = _var(M, "kernel")

    @jax.jit
    def forward(weights, x):
        with _scope.opened(_scope.Scope(bindings={id(kernel): weights})):
            return ops.relu(ops.matmul(x, kernel))

    check(forward(M, X), np.maximum(X.astype(np.float64) @ M, 0))
    check(forward(2 * M, X), np.maximum(X.astype(np.float64) @ (2 * M), 0))


# -- the docstring examples ----------------------------------------------------------------------

# The package and each of its modules (every function's examples run in its own module).
DOCTEST_MODULES = ["kilnet.ops", "kilnet.ops._convert", "kilnet.ops._core", "kilnet.ops._einops",
                   "kilnet.ops._math",
                   "kilnet.ops.image", "kilnet.ops.linalg", "kilnet.ops.nn", "kilnet.ops.numpy",
                   "kilnet.random"]


@pytest.mark.parametrize("name", DOCTEST_MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0
    assert failed == 0


def test_all_names_exist_and_have_docstrings():
    for module in (ops, kilnet.random):
        for name in module.__all__:
            assert getattr(module, name).__doc__, f"{module.__name__}.{name} has no docstring"
