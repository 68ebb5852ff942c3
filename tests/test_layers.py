"""Layers: output shapes and dtypes, values against NumPy, gradients against finite
differences, then errors. Every layer is used through its pure init/apply pair."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_grad, numeric_grad

import kilnet
from kilnet import layers
from kilnet._kernels.conv import conv2d_native, conv2d_patches

KEY = jax.random.PRNGKey(0)  # dropout keys; weights are drawn from NumPy generators


def rng(seed=0):
    return np.random.default_rng(seed)


def away_from_zero(shape, seed=0, low=0.2, high=2.0):
    """Inputs that stay clear of the kinks of relu-like functions at 0."""
    r = rng(seed)
    return (r.choice([-1.0, 1.0], shape) * r.uniform(low, high, shape)).astype(np.float32)


def jit_apply(layer, params, state, x, *, training=False, rng=None, sample_mask=None):
    """layer.apply as one compiled program: cheaper than compiling each eager op."""
    run = jax.jit(lambda p, s, x, k, m: layer.apply(p, s, x, training=training, rng=k,
                                                   sample_mask=m))
    return run(params, state, x, rng, sample_mask)


def init_apply(layer, x, *, training=False, rng=None, sample_mask=None, seed=0):
    params, state, out_shape = layer.init(np.random.default_rng(seed), tuple(x.shape[1:]))
    y, new_state = jit_apply(layer, params, state, x, training=training, rng=rng,
                             sample_mask=sample_mask)
    return np.asarray(y), params, state, new_state, out_shape


# -- shapes and dtypes ----------------------------------------------------------------------------
SHAPE_CASES = [
    ("dense", lambda: layers.Dense(5), (7,), (5,)),
    ("dense_3d", lambda: layers.Dense(4, activation="relu"), (3, 6), (3, 4)),
    ("flatten", lambda: layers.Flatten(), (2, 3, 4), (24,)),
    ("reshape", lambda: layers.Reshape((3, 4)), (12,), (3, 4)),
    ("reshape_infer", lambda: layers.Reshape((-1, 2)), (3, 4), (6, 2)),
    ("activation", lambda: layers.Activation("tanh"), (5,), (5,)),
    ("dropout", lambda: layers.Dropout(0.5), (6,), (6,)),
    ("rescaling", lambda: layers.Rescaling(1 / 255), (4, 4, 1), (4, 4, 1)),
    ("conv_valid", lambda: layers.Conv2D(3, 3), (7, 6, 2), (5, 4, 3)),
    ("conv_same_stride", lambda: layers.Conv2D(3, 3, strides=2, padding="same"), (7, 6, 2),
     (4, 3, 3)),
    ("conv_valid_stride", lambda: layers.Conv2D(2, (3, 2), strides=(2, 1)), (7, 6, 1),
     (3, 5, 2)),
    ("maxpool", lambda: layers.MaxPooling2D(), (7, 6, 2), (3, 3, 2)),
    ("maxpool_same", lambda: layers.MaxPooling2D(3, strides=2, padding="same"), (7, 6, 2),
     (4, 3, 2)),
    ("avgpool", lambda: layers.AveragePooling2D((2, 3)), (7, 6, 2), (3, 2, 2)),
    ("avgpool_same", lambda: layers.AveragePooling2D(2, strides=1, padding="same"),
     (5, 4, 3), (5, 4, 3)),
    ("gap", lambda: layers.GlobalAveragePooling2D(), (5, 4, 3), (3,)),
    ("batchnorm", lambda: layers.BatchNormalization(), (4, 4, 3), (4, 4, 3)),
]


@pytest.mark.parametrize("make, in_shape, out_shape",
                         [c[1:] for c in SHAPE_CASES], ids=[c[0] for c in SHAPE_CASES])
@pytest.mark.parametrize("training", [False, True])
def test_output_shape_and_dtype(make, in_shape, out_shape, training):
    layer = make()
    params, state, declared = layer.init(rng(), in_shape)
    x = jax.ShapeDtypeStruct((3,) + in_shape, jnp.float32)
    # Traced, not run: shapes and dtypes need no compilation (values are tested below).
    y, new_state = jax.eval_shape(
        lambda p, s, x: layer.apply(p, s, x, training=training, rng=KEY), params, state, x)
    assert declared == out_shape
    assert layer.sample_output_shape(in_shape) == out_shape
    assert y.shape == (3,) + out_shape
    assert y.dtype == jnp.float32
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state) == jax.tree.map(
        lambda a: (a.shape, a.dtype), state)


def test_input_declares_the_model_input_shape():
    model = kilnet.Sequential([kilnet.Input(shape=(3, 4)), layers.Flatten(), layers.Dense(2)])
    assert model.input_shape == (None, 3, 4)  # Keras's convention: batch axis first
    assert len(model.layers) == 2  # the Input is a declaration, not a layer
    model.build()
    assert model.output_shape == (None, 2)
    y = model(np.zeros((5, 3, 4), np.float32))
    assert y.shape == (5, 2) and y.dtype == jnp.float32
    assert layers.Input(shape=7).shape == (None, 7)


def test_model_output_shapes_match_the_arrays():
    model = kilnet.Sequential([
        layers.Input(shape=(9, 8, 1)),
        layers.Rescaling(1 / 255),
        layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.BatchNormalization(),
        layers.MaxPooling2D(),
        layers.Conv2D(2, 2),
        layers.AveragePooling2D(padding="same"),
        layers.Flatten(),
        layers.Dropout(0.2),
        layers.Dense(3, activation="softmax"),
    ])
    model.build(seed=0)

    def every_output(params, state, x):
        outputs = []
        for layer in model.layers:
            x, _ = layer.apply(params[layer.name], state[layer.name], x, training=True,
                               rng=KEY)
            outputs.append(x)
        return outputs

    outputs = jax.eval_shape(every_output, model.params, model.state,
                             jax.ShapeDtypeStruct((2, 9, 8, 1), jnp.float32))
    for layer, out in zip(model.layers, outputs):
        assert out.shape == (2,) + layer.output.shape[1:], layer.name
        assert out.dtype == jnp.float32, layer.name


# -- values against NumPy ------------------------------------------------------------------------
def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805
NUMPY_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": np_softmax,
    "gelu": lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),  # Keras's default slope is 0.2
    "softplus": lambda x: np.log1p(np.exp(x)),
    "swish": lambda x: x / (1 + np.exp(-x)),
    "linear": lambda x: x,
    "relu6": lambda x: np.clip(x, 0, 6),
    "hard_sigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
    "hard_silu": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "hard_tanh": lambda x: np.clip(x, -1, 1),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "exponential": np.exp,
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
    "log_softmax": lambda x: np.log(np_softmax(x)),
    "log_sigmoid": lambda x: -np.log1p(np.exp(-x)),
    "celu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "hard_shrink": lambda x: np.where(np.abs(x) > 0.5, x, 0.0),
    "soft_shrink": lambda x: np.sign(x) * np.maximum(np.abs(x) - 0.5, 0.0),
    "tanh_shrink": lambda x: x - np.tanh(x),
    "sparse_plus": lambda x: np.where(x <= -1, 0.0, np.where(x >= 1, x, (x + 1) ** 2 / 4)),
    "sparse_sigmoid": lambda x: np.clip((x + 1) / 2, 0.0, 1.0),
    "squareplus": lambda x: (x + np.sqrt(x * x + 4)) / 2,
}


@pytest.mark.parametrize("name", sorted(NUMPY_ACTIVATIONS))
def test_activation_values(name):
    x = rng(1).normal(scale=2.0, size=(4, 6)).astype(np.float32)
    y, *_ = init_apply(layers.Activation(name), x)
    expected = NUMPY_ACTIVATIONS[name](x.astype(np.float64))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    # Keras's configs name the function, not the alias ("swish" is silu)
    assert layers.Activation(name).get_config()["activation"] == {"swish": "silu"}.get(name,
                                                                                       name)


def test_activation_gradients():
    """All activations in one gradient check (two compilations); each name's slice is
    compared separately so a failure names the activation."""
    names = sorted(NUMPY_ACTIVATIONS)
    fns = [layers.Activation(name) for name in names]
    x = away_from_zero((len(names), 3, 5), 3)
    r = rng(2).normal(size=x.shape)

    def total(xs):
        return sum(jnp.sum(fn.apply({}, {}, xs[i])[0] * r[i]) for i, fn in enumerate(fns))

    with jax.enable_x64(True):
        analytic = np.asarray(jax.jit(jax.grad(total))(x.astype(np.float64)))
        numeric = numeric_grad(jax.jit(total), [x], 0)
    for i, name in enumerate(names):
        np.testing.assert_allclose(analytic[i], numeric[i], rtol=1e-5, atol=1e-7, err_msg=name)


def test_dense_values_and_activation():
    layer = layers.Dense(4, activation="relu")
    x = rng().normal(size=(5, 3)).astype(np.float32)
    y, params, *_ = init_apply(layer, x)
    k, b = np.asarray(params["kernel"]), np.asarray(params["bias"])
    assert k.shape == (3, 4) and b.shape == (4,) and not b.any()  # zeros bias by default
    np.testing.assert_allclose(y, np.maximum(x @ k + b, 0), rtol=1e-5, atol=1e-6)
    z, _ = jax.jit(lambda p, x: layer.apply(p, {}, x, logits=True))(params, x)
    np.testing.assert_allclose(z, x @ k + b, rtol=1e-5, atol=1e-6)


def test_dense_glorot_uniform_limit():
    params, _, _ = layers.Dense(50).init(rng(), (30,))
    limit = math.sqrt(6 / (30 + 50))
    k = np.asarray(params["kernel"])
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.9 * limit


def test_dense_without_bias():
    layer = layers.Dense(2, use_bias=False)
    assert layer.param_names == ("kernel",)
    x = np.ones((1, 3), np.float32)
    y, params, *_ = init_apply(layer, x)
    np.testing.assert_allclose(y, x @ np.asarray(params["kernel"]), rtol=1e-6)


def test_flatten_and_reshape_values():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    y, *_ = init_apply(layers.Flatten(), x)
    np.testing.assert_array_equal(y, x.reshape(2, 12))
    y, *_ = init_apply(layers.Reshape((4, 3)), x)
    np.testing.assert_array_equal(y, x.reshape(2, 4, 3))
    y, *_ = init_apply(layers.Reshape((-1,)), x)
    np.testing.assert_array_equal(y, x.reshape(2, 12))


def test_rescaling_values():
    x = rng().uniform(0, 255, (3, 4)).astype(np.float32)
    y, *_ = init_apply(layers.Rescaling(1 / 127.5, offset=-1), x)
    np.testing.assert_allclose(y, x / 127.5 - 1, rtol=1e-6, atol=1e-6)


def test_dropout_is_identity_at_inference():
    x = rng().normal(size=(4, 10)).astype(np.float32)
    y, *_ = init_apply(layers.Dropout(0.5), x, training=False, rng=KEY)
    np.testing.assert_array_equal(y, x)
    y, *_ = init_apply(layers.Dropout(0.0), x, training=True, rng=KEY)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_dropout_in_training_drops_and_rescales(rate):
    x = rng().uniform(1, 2, (50, 100)).astype(np.float32)
    y, *_ = init_apply(layers.Dropout(rate), x, training=True, rng=KEY)
    dropped = y == 0
    assert abs(dropped.mean() - rate) < 0.03
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - rate), rtol=1e-6)


def test_dropout_mask_comes_from_the_explicit_key():
    layer = layers.Dropout(0.5)
    x = jnp.ones((8, 16))
    run = jax.jit(lambda k: layer.apply({}, {}, x, training=True, rng=k)[0])
    a, b, c = run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(1)), run(jax.random.PRNGKey(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_dropout_gradient():
    layer = layers.Dropout(0.3)
    r = rng(4).normal(size=(3, 6))
    check_grad(lambda x: jnp.sum(layer.apply({}, {}, x, training=True, rng=KEY)[0] * r),
               rng(5).normal(size=(3, 6)))


# -- convolution and pooling ---------------------------------------------------------------------
def tf_same_pads(size, kernel, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def np_windows(x, window, strides, padding, pad_value=0.0):
    """Yields (i, j, patch) for every output position, with TF/Keras 'same' padding."""
    (kh, kw), (sh, sw) = window, strides
    if padding == "same":
        ph, pw = tf_same_pads(x.shape[1], kh, sh), tf_same_pads(x.shape[2], kw, sw)
        x = np.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=pad_value)
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    for i in range(ho):
        for j in range(wo):
            yield i, j, ho, wo, x[:, i * sh:i * sh + kh, j * sw:j * sw + kw, :]


def np_conv2d(x, kernel, strides, padding):
    out = None
    for i, j, ho, wo, patch in np_windows(x.astype(np.float64), kernel.shape[:2], strides,
                                          padding):
        if out is None:
            out = np.zeros((x.shape[0], ho, wo, kernel.shape[-1]))
        out[:, i, j] = np.tensordot(patch, kernel, axes=([1, 2, 3], [0, 1, 2]))
    return out


def np_pool(x, window, strides, padding, kind):
    out = None
    x = x.astype(np.float64)
    ones = np.ones(x.shape[:3] + (1,))
    pad_value = -np.inf if kind == "max" else 0.0
    counts = [c for *_, c in np_windows(ones, window, strides, padding)]
    for (i, j, ho, wo, patch), count in zip(np_windows(x, window, strides, padding, pad_value),
                                            counts):
        if out is None:
            out = np.zeros((x.shape[0], ho, wo, x.shape[-1]))
        if kind == "max":
            out[:, i, j] = patch.max(axis=(1, 2))
        else:  # Keras averages 'same' windows over the real pixels only
            out[:, i, j] = patch.sum(axis=(1, 2)) / count.sum(axis=(1, 2))
    return out


CONV_CASES = [
    ((3, 3), (1, 1), "valid"),
    ((3, 3), (1, 1), "same"),
    ((3, 3), (2, 2), "valid"),
    ((2, 3), (2, 1), "same"),
    ((4, 4), (3, 2), "same"),
]


@pytest.mark.parametrize("kernel_size, strides, padding", CONV_CASES)
def test_conv2d_against_numpy(kernel_size, strides, padding):
    layer = layers.Conv2D(3, kernel_size, strides=strides, padding=padding)
    x = rng().normal(size=(2, 7, 8, 2)).astype(np.float32)
    params, _, out_shape = layer.init(rng(), x.shape[1:])
    params = {"kernel": jnp.asarray(rng(1).normal(size=params["kernel"].shape), jnp.float32),
              "bias": jnp.asarray(rng(2).normal(size=(3,)), jnp.float32)}
    y, _ = jit_apply(layer, params, {}, x)
    expected = np_conv2d(x, np.asarray(params["kernel"]), strides, padding) + np.asarray(
        params["bias"])
    assert y.shape == expected.shape == (2,) + out_shape
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_size, strides, padding", CONV_CASES)
def test_conv2d_patches_equals_native_convolution(kernel_size, strides, padding):
    x = jnp.asarray(rng().normal(size=(2, 7, 8, 3)), jnp.float32)
    kernel = jnp.asarray(rng(1).normal(size=kernel_size + (3, 4)), jnp.float32)
    a, b = jax.jit(lambda x, k: (conv2d_patches(x, k, strides, padding),
                                 conv2d_native(x, k, strides, padding)))(x, kernel)
    assert a.shape == b.shape and a.dtype == b.dtype == jnp.float32
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_conv2d_gradients():
    layer = layers.Conv2D(2, 3, strides=2, padding="same", activation="tanh")
    x = rng().normal(size=(2, 5, 4, 2))
    params, _, _ = layer.init(rng(), x.shape[1:])
    kernel = rng(1).normal(size=params["kernel"].shape) * 0.5
    bias = rng(2).normal(size=(2,))
    r = rng(3).normal(size=(2, 3, 2, 2))

    def out(k, b, xx):
        return jnp.sum(layer.apply({"kernel": k, "bias": b}, {}, xx)[0] * r)

    check_grad(out, kernel, bias, x)


POOL_CASES = [
    ((2, 2), None, "valid"),      # windows tile the image: the reshape path
    ((2, 2), None, "same"),
    ((3, 3), (2, 2), "valid"),
    ((3, 3), (2, 2), "same"),
    ((2, 3), (1, 2), "same"),
]


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("pool_size, strides, padding", POOL_CASES)
def test_pooling_against_numpy(kind, pool_size, strides, padding):
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    layer = cls(pool_size, strides=strides, padding=padding)
    x = rng().normal(size=(2, 7, 5, 3)).astype(np.float32)
    y, _, _, _, out_shape = init_apply(layer, x)
    expected = np_pool(x, pool_size, strides or pool_size, padding,
                       "max" if kind == "max" else "avg")
    assert y.shape == expected.shape == (2,) + out_shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["max", "average"])
@pytest.mark.parametrize("pool_size, strides, padding", [POOL_CASES[0], POOL_CASES[3]])
def test_pooling_gradients(kind, pool_size, strides, padding):
    cls = layers.MaxPooling2D if kind == "max" else layers.AveragePooling2D
    layer = cls(pool_size, strides=strides, padding=padding)
    x = rng().normal(size=(1, 5, 4, 2))
    shape = (1,) + layer.sample_output_shape(x.shape[1:])
    r = rng(1).normal(size=shape)
    check_grad(lambda xx: jnp.sum(layer.apply({}, {}, xx)[0] * r), x)


def test_global_average_pooling_values_and_gradient():
    x = rng().normal(size=(2, 3, 4, 5)).astype(np.float32)
    y, *_ = init_apply(layers.GlobalAveragePooling2D(), x)
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    r = rng(1).normal(size=(2, 5))
    layer = layers.GlobalAveragePooling2D()
    check_grad(lambda xx: jnp.sum(layer.apply({}, {}, xx)[0] * r), x)


def test_shape_layer_gradients():
    x = rng().normal(size=(2, 3, 4))
    r = rng(1).normal(size=(2, 12))
    chain = (layers.Flatten(), layers.Reshape((3, 4)), layers.Rescaling(0.5, offset=2.0),
             layers.Reshape((12,)))

    def f(xx):
        for layer in chain:
            xx = layer.apply({}, {}, xx)[0]
        return jnp.sum(xx * r)

    check_grad(f, x)


def test_dense_gradients():
    layer = layers.Dense(3, activation="sigmoid")
    x = rng().normal(size=(4, 5))
    kernel, bias = rng(1).normal(size=(5, 3)), rng(2).normal(size=(3,))
    r = rng(3).normal(size=(4, 3))

    def out(k, b, xx):
        return jnp.sum(layer.apply({"kernel": k, "bias": b}, {}, xx)[0] * r)

    check_grad(out, kernel, bias, x)


# -- batch normalization -------------------------------------------------------------------------
def bn_params(channels, seed=0):
    r = rng(seed)
    params = {"gamma": jnp.asarray(r.uniform(0.5, 1.5, channels), jnp.float32),
              "beta": jnp.asarray(r.normal(size=channels), jnp.float32)}
    state = {"moving_mean": jnp.asarray(r.normal(size=channels), jnp.float32),
             "moving_variance": jnp.asarray(r.uniform(0.5, 2.0, channels), jnp.float32)}
    return params, state


@pytest.mark.parametrize("shape", [(6, 3), (5, 2, 3, 4)])
def test_batchnorm_training_uses_batch_statistics(shape):
    layer = layers.BatchNormalization(momentum=0.9)
    x = rng().normal(loc=2.0, scale=3.0, size=shape).astype(np.float32)
    params, state = bn_params(shape[-1])
    y, new_state = jit_apply(layer, params, state, x, training=True)
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axes), x.var(axes)  # biased variance, as Keras
    g, b = np.asarray(params["gamma"]), np.asarray(params["beta"])
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3) * g + b, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(new_state["moving_mean"],
                               np.asarray(state["moving_mean"]) * 0.9 + mean * 0.1, rtol=1e-5)
    np.testing.assert_allclose(new_state["moving_variance"],
                               np.asarray(state["moving_variance"]) * 0.9 + var * 0.1,
                               rtol=1e-5)


def test_batchnorm_inference_uses_moving_statistics():
    layer = layers.BatchNormalization()
    x = rng().normal(size=(4, 3)).astype(np.float32)
    params, state = bn_params(3)
    y, new_state = jit_apply(layer, params, state, x, training=False)
    mm, mv = np.asarray(state["moving_mean"]), np.asarray(state["moving_variance"])
    expected = (x - mm) / np.sqrt(mv + 1e-3) * np.asarray(params["gamma"]) + np.asarray(
        params["beta"])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert all(np.array_equal(new_state[k], state[k]) for k in state)


@pytest.mark.parametrize("shape", [(6, 3), (6, 2, 2, 3)])
def test_batchnorm_masked_samples_are_excluded(shape):
    layer = layers.BatchNormalization()
    x = rng().normal(size=shape).astype(np.float32)
    x[4:] = 1e4  # padding rows: must not move the statistics
    mask = jnp.asarray([1, 1, 1, 1, 0, 0], bool)
    params, state = bn_params(shape[-1])
    y, new_state = jit_apply(layer, params, state, x, training=True, sample_mask=mask)
    real = x[:4]
    axes = tuple(range(x.ndim - 1))
    mean, var = real.mean(axes), real.var(axes)
    expected = (real - mean) / np.sqrt(var + 1e-3) * np.asarray(params["gamma"]) + np.asarray(
        params["beta"])
    np.testing.assert_allclose(np.asarray(y)[:4], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(new_state["moving_mean"],
                               np.asarray(state["moving_mean"]) * 0.99 + mean * 0.01,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state["moving_variance"],
                               np.asarray(state["moving_variance"]) * 0.99 + var * 0.01,
                               rtol=1e-5, atol=1e-6)


def test_batchnorm_init_and_weights():
    layer = layers.BatchNormalization()
    params, state, shape = layer.init(rng(), (4, 4, 3))
    assert shape == (4, 4, 3)
    np.testing.assert_array_equal(params["gamma"], np.ones(3))
    np.testing.assert_array_equal(params["beta"], np.zeros(3))
    np.testing.assert_array_equal(state["moving_mean"], np.zeros(3))
    np.testing.assert_array_equal(state["moving_variance"], np.ones(3))
    assert layers.BatchNormalization(center=False, scale=False).param_names == ()


def test_batchnorm_gradients():
    layer = layers.BatchNormalization()
    x = rng().normal(size=(5, 3))
    gamma, beta = rng(1).uniform(0.5, 1.5, 3), rng(2).normal(size=3)
    state = {"moving_mean": np.zeros(3), "moving_variance": np.ones(3)}
    r = rng(3).normal(size=(5, 3))

    def out(g, b, xx, training=True):
        return jnp.sum(layer.apply({"gamma": g, "beta": b}, state, xx, training=training)[0] * r)

    check_grad(out, gamma, beta, x, rtol=1e-4)
    check_grad(lambda g, b, xx: out(g, b, xx, training=False), gamma, beta, x)


# -- errors ----------------------------------------------------------------------------------------
def test_layer_argument_errors():
    with pytest.raises(ValueError, match="units must be a positive integer"):
        layers.Dense(0)
    with pytest.raises(ValueError, match="Unknown activation"):
        layers.Dense(3, activation="relux")
    with pytest.raises(ValueError, match="rate must be a number in"):
        layers.Dropout(1.0)
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        layers.Conv2D(2, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size must be a positive integer"):
        layers.Conv2D(2, (3, 3, 3))
    with pytest.raises(ValueError, match="target_shape must hold"):
        layers.Reshape((-1, -1))
    with pytest.raises(ValueError, match="input_shape must be a tuple"):
        layers.Dense(2, input_shape=(0, 3))


def test_layer_shape_errors():
    with pytest.raises(ValueError, match="Conv2D expects images"):
        layers.Conv2D(2, 3).sample_output_shape((28, 28))
    with pytest.raises(ValueError, match="does not fit"):
        layers.Conv2D(2, 5).sample_output_shape((3, 3, 1))
    with pytest.raises(ValueError, match="Reshape cannot turn"):
        layers.Reshape((5,)).sample_output_shape((2, 3))
    # As in Keras, the error comes as soon as the layer meets the input shape.
    with pytest.raises(ValueError, match=r"conv2d.*\(None, 28, 28\).*Reshape"):
        kilnet.Sequential([layers.Input(shape=(28, 28)), layers.Conv2D(2, 3)])
