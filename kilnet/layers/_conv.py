"""Conv2D, channels-last, with the convolution written as patches + one matmul on CPU.

Why: `lax.conv` inside an XLA loop is very slow on CPU (jax-ml/jax#12868; we
measured the Keras MNIST convnet at 155 s per epoch in a scan against 14.5 s with patches +
matmul). On GPU the native convolution is the fast one, so it is used there. Both give the
same numbers (tests/test_layers.py compares them).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from kilnet import initializers
from kilnet.layers._base import ActivatedLayer, as_pair, check_padding


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/Keras 'same' padding: output size ceil(size / stride), extra pad after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def pad_same(x, kernel_hw, strides, value=0.0):
    (ph0, ph1) = same_padding(x.shape[1], kernel_hw[0], strides[0])
    (pw0, pw1) = same_padding(x.shape[2], kernel_hw[1], strides[1])
    return jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)), constant_values=value)


def window_slices(x, window, strides):
    """Every (i, j) offset of a window as a strided slice of x: (N, Ho, Wo, C) each."""
    (kh, kw), (sh, sw) = window, strides
    ho = (x.shape[1] - kh) // sh + 1
    wo = (x.shape[2] - kw) // sw + 1
    return [
        x[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :]
        for i in range(kh) for j in range(kw)
    ]


def conv2d_patches(x, kernel, strides, padding):
    """Convolution as im2col: concatenate the kh*kw shifted views, then one matmul."""
    kh, kw, cin, cout = kernel.shape
    if padding == "same":
        x = pad_same(x, (kh, kw), strides)
    patches = jnp.concatenate(window_slices(x, (kh, kw), strides), axis=-1)
    return patches @ kernel.reshape(kh * kw * cin, cout)


def conv2d_native(x, kernel, strides, padding):
    return lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=padding.upper(),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def conv2d(x, kernel, strides, padding):
    if jax.default_backend() == "cpu":
        return conv2d_patches(x, kernel, strides, padding)
    return conv2d_native(x, kernel, strides, padding)


class Conv2D(ActivatedLayer):
    config_keys = ("filters", "kernel_size", "strides", "padding", "activation", "use_bias",
                   "kernel_initializer", "bias_initializer")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 data_format=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive integer. Received: filters={filters!r}")
        if data_format not in (None, "channels_last"):
            raise ValueError("Only data_format='channels_last' is supported. "
                             f"Received: data_format={data_format!r}")
        initializers.get(kernel_initializer), initializers.get(bias_initializer)
        self.filters = filters
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.strides = as_pair(strides, "strides")
        self.padding = check_padding(padding)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    @property
    def param_names(self):
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "Conv2D expects images of shape (height, width, channels). Received an input "
                f"of shape {input_shape}; for grayscale (28, 28) images add "
                "layers.Reshape((28, 28, 1)) first or pass input_shape=(28, 28, 1)."
            )
        h, w, _ = input_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        ho, wo = output_size(h, kh, sh, self.padding), output_size(w, kw, sw, self.padding)
        if ho < 1 or wo < 1:
            raise ValueError(
                f"Conv2D kernel_size={self.kernel_size} does not fit an input of shape "
                f"{input_shape} with padding='{self.padding}'; use padding='same'."
            )
        return (ho, wo, self.filters)

    def init(self, rng, input_shape):
        out_shape = self.compute_output_shape(input_shape)
        shape = self.kernel_size + (input_shape[-1], self.filters)
        params = {"kernel": initializers.get(self.kernel_initializer)(rng, shape)}
        if self.use_bias:
            params["bias"] = initializers.get(self.bias_initializer)(rng, (self.filters,))
        return params, {}, out_shape

    def pre_activation(self, params, state, x, **_):
        y = conv2d(x, params["kernel"], self.strides, self.padding)
        if self.use_bias:
            y = y + params["bias"]
        return y, state
