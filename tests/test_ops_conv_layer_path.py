"""kilnet.ops.conv runs on the CPU through the convolution kilnet's layers use (oneDNN's, with
its gradients), not XLA's: inside a compiled chunk's loop XLA's made a custom layer's ops.conv
training step about 70x slower than Keras on JAX (keras.io's mixture of experts). Values and
gradients are checked against XLA's convolution and Keras's ops.conv."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _training import sgd_mse_losses  # noqa: E402
from kilnet._kernels.conv_transpose import transpose_padding  # noqa: E402
from kilnet.ops import nn as ops_nn  # noqa: E402

CASES = [  # (input shape, kernel shape, strides, padding, dilation)
    ((2, 9, 9, 4), (3, 3, 4, 6), 1, "same", 1),
    ((2, 9, 9, 4), (3, 3, 4, 6), 2, "valid", 1),
    ((2, 10, 10, 4), (3, 3, 4, 5), 1, "same", 2),
    ((2, 8, 8, 6), (3, 3, 2, 6), 1, "same", 1),     # grouped: 3 groups
    ((2, 12, 3), (5, 3, 4), 2, "same", 1),           # 1-D
    ((1, 5, 6, 7, 2), (2, 3, 2, 2, 3), 1, "valid", 1),   # 3-D
]


def operands(x_shape, k_shape):
    rng = np.random.default_rng(0)
    return (rng.normal(size=x_shape).astype("float32"),
            rng.normal(size=k_shape).astype("float32") * 0.3)


def xla_conv(x, k, strides, padding, dilation):
    rank = x.ndim - 2
    return lax.conv_general_dilated(
        x, k, (strides,) * rank, padding.upper(), rhs_dilation=(dilation,) * rank,
        dimension_numbers=ops_nn.conv_dimension_numbers(rank),
        feature_group_count=x.shape[-1] // k.shape[-2])


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}x{c[1]}-s{c[2]}-{c[3]}-d{c[4]}")
def test_values_and_gradients_are_xlas_and_keras(case):
    x_shape, k_shape, strides, padding, dilation = case
    x, k = operands(x_shape, k_shape)
    ours = kilnet.ops.conv(x, k, strides=strides, padding=padding, dilation_rate=dilation)
    np.testing.assert_allclose(ours, xla_conv(x, k, strides, padding, dilation),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours, keras.ops.conv(x, k, strides=strides, padding=padding,
                                                    dilation_rate=dilation),
                               rtol=1e-4, atol=1e-4)
    weights = np.random.default_rng(1).normal(size=np.shape(ours)).astype("float32")

    def loss_of(fn):
        return jax.jit(jax.grad(lambda x, k: jnp.sum(fn(x, k) * weights), argnums=(0, 1)))

    got = loss_of(lambda x, k: kilnet.ops.conv(x, k, strides=strides, padding=padding,
                                               dilation_rate=dilation))(x, k)
    want = loss_of(lambda x, k: xla_conv(x, k, strides, padding, dilation))(x, k)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


def test_a_custom_layer_calling_ops_conv_trains_as_keras():
    def model_of(ns):
        class ConvK(ns.layers.Layer):   # the mixture-of-experts recipe's Conv2DMoE core
            def build(self, shape):
                self.k = self.add_weight(shape=(3, 3, shape[-1], 8),
                                         initializer="glorot_uniform")

            def call(self, x):
                return ns.ops.conv(x, self.k, strides=1, padding="same")

        inputs = ns.Input((8, 8, 3))
        return ns.Model(inputs, ns.layers.Dense(1)(ns.layers.Flatten()(ConvK()(inputs))))

    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 3)).astype("float32")
    y = rng.random((32, 1)).astype("float32")
    ours, theirs = model_of(kilnet), model_of(keras)
    theirs.set_weights(ours.get_weights())
    losses = sgd_mse_losses((ours, theirs), x, y, batch_size=8, epochs=2)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)


TRANSPOSE_CASES = [  # (input shape, kernel shape, strides, padding, output_padding, dilation)
    ((2, 5, 5, 4), (3, 3, 6, 4), 2, "same", None, 1),
    ((2, 5, 6, 4), (3, 3, 6, 4), 2, "valid", None, 1),
    ((2, 5, 5, 4), (4, 4, 3, 4), 2, "same", 1, 1),
    ((2, 6, 5, 3), (3, 3, 2, 3), 1, "same", None, 2),
    ((2, 7, 3), (3, 5, 3), 2, "same", None, 1),         # 1-D
    ((1, 3, 4, 3, 2), (2, 2, 2, 3, 2), 2, "valid", None, 1),   # 3-D
]


def xla_conv_transpose(x, k, strides, padding, output_padding, dilation):
    rank = x.ndim - 2
    pads = [transpose_padding(size, strides, dilation, padding, output_padding)
            for size in k.shape[:rank]]
    return lax.conv_transpose(x, k, (strides,) * rank, pads, rhs_dilation=(dilation,) * rank,
                              dimension_numbers=ops_nn.conv_dimension_numbers(rank),
                              transpose_kernel=True)


@pytest.mark.parametrize("case", TRANSPOSE_CASES,
                         ids=lambda c: f"{c[0]}x{c[1]}-s{c[2]}-{c[3]}-o{c[4]}-d{c[5]}")
def test_conv_transpose_values_and_gradients_are_xlas_and_keras(case):
    x_shape, k_shape, strides, padding, output_padding, dilation = case
    x, k = operands(x_shape, k_shape)

    def ours_of(x, k):
        return kilnet.ops.conv_transpose(x, k, strides=strides, padding=padding,
                                         output_padding=output_padding,
                                         dilation_rate=dilation)

    ours = ours_of(x, k)
    want = xla_conv_transpose(x, k, strides, padding, output_padding, dilation)
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours, keras.ops.conv_transpose(
        x, k, strides=strides, padding=padding, output_padding=output_padding,
        dilation_rate=dilation), rtol=1e-4, atol=1e-4)
    weights = np.random.default_rng(1).normal(size=np.shape(ours)).astype("float32")

    def grads_of(fn):
        return jax.jit(jax.grad(lambda x, k: jnp.sum(fn(x, k) * weights), argnums=(0, 1)))(x, k)

    for a, b in zip(grads_of(ours_of), grads_of(lambda x, k: xla_conv_transpose(
            x, k, strides, padding, output_padding, dilation))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("layer_module, function, op, kernel_shape, options", [
    ("_conv", "cpu_convolution", "conv", (3, 3, 4, 6), dict(padding="same")),
    ("_conv_transpose", "transposed_convolution", "conv_transpose", (3, 3, 6, 4),
     dict(strides=2, padding="same")),
], ids=["conv", "conv_transpose"])
def test_the_layers_convolution_runs_the_op_on_the_cpu(monkeypatch, layer_module, function, op,
                                                       kernel_shape, options):
    if jax.default_backend() != "cpu":
        pytest.skip("the layers' convolutions are the CPU path")
    from kilnet._kernels import conv as kernel_conv, conv_transpose as kernel_conv_transpose
    layers_module = __import__(f"kilnet.layers.{layer_module}", fromlist=["_"])
    # the op's function is the kernels' one the layer runs
    if op == "conv":
        assert ops_nn.cpu_convolution is kernel_conv.cpu_convolution
        assert layers_module.conv2d is kernel_conv.conv2d
    else:
        assert ops_nn.transposed_convolution is kernel_conv_transpose.conv_transpose
        assert layers_module.conv_transpose is kernel_conv_transpose.conv_transpose
    calls = []
    op_function = getattr(ops_nn, function)

    def counted(*args):
        calls.append(args[0].shape)
        return op_function(*args)

    monkeypatch.setattr(ops_nn, function, counted)
    x, k = operands((2, 5, 5, 4), kernel_shape)
    getattr(kilnet.ops, op)(x, k, **options)
    assert calls == [(2, 5, 5, 4)]
