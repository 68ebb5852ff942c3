"""Conv3D, MaxPooling3D and AveragePooling3D: volumes and videos (depth, height, width,
channels), channels-last.

On CPU the float32 convolution is oneDNN's where it can (kilnet/_kernels/onednn_conv.py, as
Conv2D's); otherwise, as for Conv2D (kilnet/_kernels/conv.py), it is written as patches + one
matmul, and pooling as strided slices, because XLA's CPU convolution and windowed reductions are
very slow inside the training loop. Measured on CPU, a lax.scan of 50 gradient steps over a
(32, 8, 16, 16, 8) input, 3x3x3 kernel, 8 filters, padding "same": 1.1 s with patches + matmul
against 18.6 s with lax.conv. Elsewhere (GPU) the native convolution is used;
both give the same numbers (tests/test_conv_more.py compares them).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from jax import lax

from kilnet.layers._base import Layer, check_channels_last, check_padding
from kilnet._kernels.conv import (dilated_span, onednn_convolution, output_size, same_padding,
                                  too_small)
from kilnet.layers._conv_base import ConvolutionLayer, check_filters
from kilnet.layers._pooling import window_maximum


def as_triple(value, argument: str) -> tuple[int, int, int]:
    """Keras accepts `3` or `(3, 3, 3)` for a 3-D kernel size, stride or dilation."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * 3
    try:
        triple = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        triple = ()
    if len(triple) != 3 or min(triple) < 1:
        raise ValueError(f"{argument} must be a positive integer or a tuple of 3. "
                         f"Received: {argument}={value!r}")
    return triple


def pad_same_3d(x, spans, strides, value=0.0):
    pads = [same_padding(x.shape[1 + i], spans[i], strides[i]) for i in range(3)]
    return jnp.pad(x, [(0, 0)] + pads + [(0, 0)], constant_values=value)


def window_slices_3d(x, window, strides, dilation=(1, 1, 1)):
    """Every tap of a (dilated) 3-D window as a strided slice of x: (N, Do, Ho, Wo, C)."""
    outs = [(x.shape[1 + i] - dilation[i] * (window[i] - 1) - 1) // strides[i] + 1
            for i in range(3)]
    views = []
    for taps in itertools.product(*(range(k) for k in window)):
        index = tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                      for t, d, o, s in zip(taps, dilation, outs, strides))
        views.append(x[(slice(None),) + index])
    return views


def conv3d_patches(x, kernel, strides, padding, dilation):
    *window, cin, cout = kernel.shape
    if padding == "same":
        x = pad_same_3d(x, [dilated_span(k, d) for k, d in zip(window, dilation)], strides)
    patches = jnp.concatenate(window_slices_3d(x, window, strides, dilation), axis=-1)
    return patches @ kernel.reshape(-1, cout)


def conv3d_native(x, kernel, strides, padding, dilation):
    return lax.conv_general_dilated(x, kernel, window_strides=strides, padding=padding.upper(),
                                    rhs_dilation=dilation,
                                    dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def conv3d(x, kernel, strides, padding, dilation):
    """On CPU oneDNN's convolution where it can, else patches + one matmul; XLA's elsewhere."""
    if jax.default_backend() != "cpu":
        return conv3d_native(x, kernel, strides, padding, dilation)
    y = onednn_convolution(x, kernel, strides, padding, dilation)
    return conv3d_patches(x, kernel, strides, padding, dilation) if y is None else y


def _volumes_only(layer, input_shape):
    if len(input_shape) != 4 or input_shape[-1] is None:
        raise ValueError(f"{layer} expects volumes of shape (depth, height, width, channels). "
                         f"Received an input of shape {tuple(input_shape)}.")


class Conv3D(ConvolutionLayer):
    """3-D convolution over volumes or videos: inputs (depth, height, width, channels),
    outputs (depth', height', width', filters).

    Args:
        filters: number of output channels.
        kernel_size, strides, dilation_rate: an int or a tuple of 3.
        padding: "valid" or "same".
        groups: 1 only (refused otherwise).
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as Conv2D's.

    The kernel has Keras's shape (kd, kh, kw, in_channels, filters).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.Conv3D(4, 3, padding="same")
        >>> layer(np.zeros((1, 4, 6, 6, 2), np.float32)).shape
        (1, 4, 6, 6, 4)
        >>> [w.shape for w in layer.get_weights()]
        [(3, 3, 3, 2, 4), (4,)]
    """
    saves_declared_weights_only = True   # as Keras's save_own_variables does

    config_keys = ("filters", "kernel_size", "strides", "padding", "data_format",
                   "dilation_rate", "groups", "activation", "use_bias", "kernel_initializer",
                   "bias_initializer", "kernel_regularizer", "bias_regularizer",
                   "activity_regularizer", "kernel_constraint", "bias_constraint")

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid",
                 data_format=None, dilation_rate=(1, 1, 1), groups=1, activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.filters = check_filters(filters)
        self._set_window_sizes(as_triple, kernel_size, strides, dilation_rate)
        self.padding = check_padding(padding)
        if groups != 1:
            raise ValueError(f"Conv3D supports groups=1 only for now. Received: groups={groups!r}")
        self.groups = 1
        self._set_weight_arguments(
            use_bias, kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer)
        self.data_format = check_channels_last(data_format)

    def sample_output_shape(self, input_shape):
        _volumes_only("Conv3D", input_shape)
        # An axis of unknown size (a video's time axis, `Input((None, h, w, c))`, as Keras's
        # next-frame tutorial) stays unknown; each compiled program sees its real size.
        sizes = tuple(output_size(input_shape[i], dilated_span(self.kernel_size[i],
                                                               self.dilation_rate[i]),
                                  self.strides[i], self.padding) for i in range(3))
        if too_small(*sizes):
            raise ValueError(f"Conv3D kernel_size={self.kernel_size} does not fit an input of "
                             f"shape {tuple(input_shape)} with padding='{self.padding}'; use "
                             "padding='same'.")
        return sizes + (self.filters,)

    def convolution_op(self, inputs, kernel):
        """The convolution of `inputs` with `kernel`, as Keras's `Conv3D.convolution_op`:
        the layer computes through it, so a subclass may override it.

        Example:
            >>> import numpy as np
            >>> from kilnet import layers
            >>> layers.Conv3D(1, 2).convolution_op(np.ones((1, 3, 3, 3, 1)),
            ...                                    np.ones((2, 2, 2, 1, 1))).shape
            (1, 2, 2, 2, 1)
        """
        return conv3d(inputs, kernel, self.strides, self.padding, self.dilation_rate)

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        y = self.convolution_op(x, params["kernel"])
        return self._biased_output(y, params, sample_mask), state


class _Pooling3D(Layer):
    config_keys = ("pool_size", "padding", "strides", "data_format")   # Keras's order

    def __init__(self, pool_size=(2, 2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_channels_last(data_format)
        self.pool_size = as_triple(pool_size, "pool_size")
        self.strides = as_triple(strides if strides is not None else self.pool_size, "strides")
        self.padding = check_padding(padding)

    def sample_output_shape(self, input_shape):
        name = type(self).__name__
        _volumes_only(name, input_shape)
        sizes = tuple(output_size(input_shape[i], self.pool_size[i], self.strides[i],
                                  self.padding) for i in range(3))
        if too_small(*sizes):
            raise ValueError(f"{name} pool_size={self.pool_size} is larger than the input "
                             f"{tuple(input_shape)}.")
        return sizes + (input_shape[-1],)

    def _windows(self, x, value):
        return window_slices_3d(self._padded(x, value), self.pool_size, self.strides)

    def _padded(self, x, value):
        if self.padding == "same":
            x = pad_same_3d(x, self.pool_size, self.strides, value=value)
        return x


class MaxPooling3D(_Pooling3D):
    """The maximum over (d, h, w) windows of `pool_size`, every `strides` (default:
    pool_size); padding "valid" or "same".

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.arange(16.0).reshape(1, 2, 2, 4, 1)
        >>> kilnet.layers.MaxPooling3D(2)(x)[0, 0, 0, :, 0].tolist()
        [13.0, 15.0]
    """

    def apply(self, params, state, x, **_):
        return window_maximum(self._padded(x, -jnp.inf), self.pool_size, self.strides), state


class AveragePooling3D(_Pooling3D):
    """The mean over (d, h, w) windows of `pool_size`, every `strides` (default: pool_size);
    with padding "same" an edge window averages its real voxels only, as Keras.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.arange(16.0).reshape(1, 2, 2, 4, 1)
        >>> kilnet.layers.AveragePooling3D(2)(x)[0, 0, 0, :, 0].tolist()
        [6.5, 8.5]
    """

    def apply(self, params, state, x, **_):
        total = sum(self._windows(x, 0.0))
        if self.padding == "valid":
            return total / (self.pool_size[0] * self.pool_size[1] * self.pool_size[2]), state
        count = sum(self._windows(jnp.ones((1,) + x.shape[1:4] + (1,), x.dtype), 0.0))
        return total / count, state
