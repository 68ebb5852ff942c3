"""Conv1DTranspose, DepthwiseConv1D/2D and SeparableConv1D/2D: the convolutions of sequence
decoders and of mobile-style networks, channels-last, with Keras's weights and outputs.

The 1-D depthwise and separable layers run their 2-D twins' computation on a (steps, 1) image:
their kernels (k, C, m) are the 2-D kernels (k, 1, C, m) with the unit axis dropped, so the two
cannot drift apart.

Conv1DTranspose is Conv2DTranspose on a (steps, 1) image, so the two share one computation
(and its CPU scatter) and cannot drift apart.

A depthwise convolution filters each input channel on its own (`depth_multiplier` filters per
channel; output channel c * depth_multiplier + m). On CPU it is written as the kh*kw shifted
views of the input stacked, then one einsum with the kernel, because `lax.conv` inside the XLA
training loop is very slow there (see kilnet/_kernels/conv.py). Measured on CPU, a lax.scan of
50 gradient steps over a (32, 16, 16, 8) input, 3x3 kernel, padding "same": DepthwiseConv2D
0.014 s with views + einsum against 0.95 s with lax.conv (feature groups); SeparableConv2D (16
filters) 0.05 s against 0.94 s; Conv1DTranspose (the Conv2DTranspose scatter, (32, 16, 8)
input) 0.005 s against 0.016 s. Elsewhere (GPU) the native convolution is used. Both give the
same numbers (tests/test_conv_more.py compares them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from kilnet import initializers
from kilnet.layers._base import as_pair, check_channels_last, check_padding
from kilnet._kernels.conv import (dilated_span, onednn_convolution, output_size, pad_same,
                                  too_small, window_slices)
from kilnet.layers._conv_base import ConvolutionLayer, as_single, check_filters
from kilnet._kernels.conv_transpose import conv2d_transpose, transpose_size


def _images_only(layer, input_shape):
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(
            f"{layer} expects images of shape (height, width, channels) with a known number of "
            f"channels. Received an input of shape {tuple(input_shape)}.")


# -- Conv1DTranspose -----------------------------------------------------------------------------
class Conv1DTranspose(ConvolutionLayer):
    """Transposed 1-D convolution: upsamples sequences (steps, channels), e.g. doubles their
    length with strides=2 and padding="same".

    Args:
        filters: number of output channels.
        kernel_size, strides, dilation_rate: an int (or a tuple of one).
        padding: "valid" (output (steps - 1) * strides + max(kernel_size, strides)) or "same"
            (output steps * strides).
        output_padding: None, or an int smaller than strides: extra steps at the end, as
            Conv2DTranspose's.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as
            Conv1D.

    The kernel has Keras's shape (kernel_size, filters, in_channels).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.Conv1DTranspose(4, 3, strides=2, padding="same")
        >>> layer(np.zeros((2, 5, 8), np.float32)).shape
        (2, 10, 4)
        >>> [w.shape for w in layer.get_weights()]
        [(3, 4, 8), (4,)]
    """

    sample_rank = 2   # (steps, channels): how build((10,)) reads

    config_keys = ("filters", "kernel_size", "strides", "padding", "output_padding",
                   "data_format", "dilation_rate", "activation", "use_bias",
                   "kernel_initializer", "bias_initializer", "kernel_regularizer",
                   "bias_regularizer", "activity_regularizer", "kernel_constraint",
                   "bias_constraint")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", output_padding=None,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.filters = check_filters(filters)
        self._set_window_sizes(as_single, kernel_size, strides, dilation_rate)
        self.padding = check_padding(padding)
        self.output_padding = _check_1d_output_padding(output_padding, self.strides)
        self._set_weight_arguments(
            use_bias, kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer)
        self.data_format = check_channels_last(data_format)

    def sample_output_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "Conv1DTranspose expects sequences of shape (steps, channels) with a known "
                f"number of channels. Received an input of shape {tuple(input_shape)}.")
        steps = transpose_size(input_shape[0], self.kernel_size[0], self.strides[0],
                               self.dilation_rate[0], self.padding,
                               None if self.output_padding is None else self.output_padding[0])
        return (steps, self.filters)

    def _kernel_shape(self, channels: int) -> tuple:
        return self.kernel_size + (self.filters, channels)

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        # The 2-D transposed convolution of a (steps, 1) image with a (k, 1) kernel.
        output_padding = None if self.output_padding is None else (self.output_padding[0], 0)
        y = conv2d_transpose(x[:, :, None, :], params["kernel"][:, None],
                             (self.strides[0], 1), (self.dilation_rate[0], 1), self.padding,
                             output_padding)[:, :, 0, :]
        return self._biased_output(y, params, sample_mask), state


def _check_1d_output_padding(output_padding, strides):
    """None, or an int (or a tuple of one) in [0, strides)."""
    if output_padding is None:
        return None
    value = output_padding
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        single = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        single = ()
    if len(single) != 1 or not 0 <= single[0] < strides[0]:
        raise ValueError("output_padding must be None, or a non-negative integer smaller than "
                         f"strides={strides[0]}. Received: output_padding={output_padding!r}")
    return single


# -- depthwise convolution -----------------------------------------------------------------------
def depthwise_views(x, kernel, strides, padding, dilation):
    """The views + einsum form: (N, Ho, Wo, C * M) for a (kh, kw, C, M) kernel."""
    kh, kw, channels, multiplier = kernel.shape
    if padding == "same":
        x = pad_same(x, (dilated_span(kh, dilation[0]), dilated_span(kw, dilation[1])),
                     strides)
    views = jnp.stack(window_slices(x, (kh, kw), strides, dilation), axis=3)
    y = jnp.einsum("nhwkc,kcm->nhwcm", views, kernel.reshape(kh * kw, channels, multiplier))
    return y.reshape(y.shape[:3] + (channels * multiplier,))


def depthwise_native(x, kernel, strides, padding, dilation):
    kh, kw, channels, multiplier = kernel.shape
    return lax.conv_general_dilated(
        x, kernel.reshape(kh, kw, 1, channels * multiplier), window_strides=strides,
        padding=padding.upper(), rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)


def depthwise_conv2d(x, kernel, strides, padding, dilation):
    """On CPU oneDNN's grouped convolution (one group a channel) where it can, else strided
    views; XLA's grouped convolution elsewhere."""
    if jax.default_backend() != "cpu":
        return depthwise_native(x, kernel, strides, padding, dilation)
    kh, kw, channels, multiplier = kernel.shape
    y = onednn_convolution(x, kernel.reshape(kh, kw, 1, channels * multiplier), strides, padding,
                    dilation, groups=channels)
    return depthwise_views(x, kernel, strides, padding, dilation) if y is None else y


def _check_depth_multiplier(depth_multiplier):
    if not isinstance(depth_multiplier, int) or isinstance(depth_multiplier, bool) \
            or depth_multiplier < 1:
        raise ValueError("depth_multiplier must be a positive integer. Received: "
                         f"depth_multiplier={depth_multiplier!r}")
    return depth_multiplier


class _DepthwiseBase(ConvolutionLayer):
    """The arguments and output size shared by DepthwiseConv2D and SeparableConv2D."""

    def _set_window(self, kernel_size, strides, padding, depth_multiplier, data_format,
                    dilation_rate):
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.strides = as_pair(strides, "strides")
        self.padding = check_padding(padding)
        self.depth_multiplier = _check_depth_multiplier(depth_multiplier)
        self.data_format = check_channels_last(data_format)
        self.dilation_rate = as_pair(dilation_rate, "dilation_rate")

    def _spatial_output(self, input_shape):
        name = type(self).__name__
        _images_only(name, input_shape)
        sizes = tuple(
            output_size(input_shape[i], dilated_span(self.kernel_size[i], self.dilation_rate[i]),
                        self.strides[i], self.padding) for i in range(2))
        if too_small(*sizes):
            raise ValueError(f"{name} kernel_size={self.kernel_size} with dilation_rate="
                             f"{self.dilation_rate} does not fit an input of shape "
                             f"{tuple(input_shape)} with padding='{self.padding}'; use "
                             "padding='same'.")
        return sizes


class DepthwiseConv2D(_DepthwiseBase):
    """Depthwise 2-D convolution: each input channel is convolved with its own
    `depth_multiplier` filters, with no mixing across channels; (h, w, C) -> (h', w',
    C * depth_multiplier).

    Args:
        kernel_size, strides, dilation_rate: an int or a pair.
        padding: "valid" or "same".
        depth_multiplier: filters per input channel.
        activation, use_bias, depthwise_initializer, bias_initializer: as Conv2D's.
        depthwise_regularizer, bias_regularizer, activity_regularizer, depthwise_constraint,
            bias_constraint: Keras's penalties and constraints (of the kernel, the bias, the
            output).

    The kernel ("kernel", as Keras names it) has shape (kh, kw, C, depth_multiplier).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
        >>> layer(np.zeros((1, 8, 8, 3), np.float32)).shape
        (1, 8, 8, 6)
        >>> [w.shape for w in layer.get_weights()]
        [(3, 3, 3, 2), (6,)]
    """

    config_keys = ("depth_multiplier", "kernel_size", "strides", "padding", "data_format",
                   "dilation_rate", "activation", "use_bias", "depthwise_initializer",
                   "bias_initializer", "depthwise_regularizer", "bias_regularizer",
                   "activity_regularizer", "depthwise_constraint", "bias_constraint")
    weight_arguments = {"kernel": "depthwise"}   # Keras names the weight "kernel"

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=(1, 1), activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self._set_window(kernel_size, strides, padding, depth_multiplier, data_format,
                         dilation_rate)
        self._set_weight_arguments(
            use_bias, depthwise_regularizer=depthwise_regularizer,
            bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
            depthwise_constraint=depthwise_constraint, bias_constraint=bias_constraint,
            depthwise_initializer=depthwise_initializer, bias_initializer=bias_initializer)

    def sample_output_shape(self, input_shape):
        return self._image_output_shape(input_shape)

    def _image_output_shape(self, input_shape):
        return self._spatial_output(input_shape) + (input_shape[-1] * self.depth_multiplier,)

    def init(self, rng, input_shape):
        out_shape = self._image_output_shape(input_shape)
        shape = self.kernel_size + (input_shape[-1], self.depth_multiplier)
        kernel = initializers.initial_values(self.depthwise_initializer, rng, shape)
        return {"kernel": kernel, **self._bias_weights(rng, out_shape[-1])}, {}, out_shape

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        y = depthwise_conv2d(x, params["kernel"], self.strides, self.padding,
                             self.dilation_rate)
        return self._biased_output(y, params, sample_mask), state


class SeparableConv2D(_DepthwiseBase):
    """Depthwise separable 2-D convolution: a depthwise convolution (each channel on its own,
    `depth_multiplier` filters each) then a 1x1 convolution mixing the channels into `filters`.
    Far fewer weights than a Conv2D of the same window.

    Args:
        filters: number of output channels.
        kernel_size, strides, dilation_rate: an int or a pair (of the depthwise step).
        padding: "valid" or "same".
        depth_multiplier: depthwise filters per input channel.
        activation, use_bias: as Conv2D's.
        depthwise_initializer, pointwise_initializer, bias_initializer: Keras's initializers.
        depthwise_/pointwise_/bias_regularizer, activity_regularizer, depthwise_/pointwise_/
            bias_constraint: Keras's penalties and constraints.

    Weights, in Keras's order: depthwise_kernel (kh, kw, C, depth_multiplier),
    pointwise_kernel (1, 1, C * depth_multiplier, filters), bias (filters,).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.SeparableConv2D(4, 3, padding="same")
        >>> layer(np.zeros((1, 8, 8, 3), np.float32)).shape
        (1, 8, 8, 4)
        >>> [w.shape for w in layer.get_weights()]
        [(3, 3, 3, 1), (1, 1, 3, 4), (4,)]
    """

    config_keys = ("depth_multiplier", "filters", "kernel_size", "strides", "padding",
                   "data_format", "dilation_rate", "activation", "use_bias",
                   "depthwise_initializer", "pointwise_initializer", "bias_initializer",
                   "depthwise_regularizer", "pointwise_regularizer", "bias_regularizer",
                   "activity_regularizer", "depthwise_constraint", "pointwise_constraint",
                   "bias_constraint")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.filters = check_filters(filters)
        self._set_window(kernel_size, strides, padding, depth_multiplier, data_format,
                         dilation_rate)
        self._set_weight_arguments(
            use_bias, depthwise_regularizer=depthwise_regularizer,
            pointwise_regularizer=pointwise_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, depthwise_constraint=depthwise_constraint,
            pointwise_constraint=pointwise_constraint, bias_constraint=bias_constraint,
            depthwise_initializer=depthwise_initializer,
            pointwise_initializer=pointwise_initializer, bias_initializer=bias_initializer)

    @property
    def param_names(self):
        names = ("depthwise_kernel", "pointwise_kernel")
        return names + ("bias",) if self.use_bias else names

    def sample_output_shape(self, input_shape):
        return self._image_output_shape(input_shape)

    def _image_output_shape(self, input_shape):
        return self._spatial_output(input_shape) + (self.filters,)

    def init(self, rng, input_shape):
        out_shape = self._image_output_shape(input_shape)
        channels = input_shape[-1]
        params = {
            "depthwise_kernel": initializers.initial_values(self.depthwise_initializer,
                rng, self.kernel_size + (channels, self.depth_multiplier)),
            "pointwise_kernel": initializers.initial_values(self.pointwise_initializer,
                rng, (1, 1, channels * self.depth_multiplier, self.filters)),
            **self._bias_weights(rng, self.filters),
        }
        return params, {}, out_shape

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        y = depthwise_conv2d(x, params["depthwise_kernel"], self.strides, self.padding,
                             self.dilation_rate)
        y = y @ params["pointwise_kernel"][0, 0]
        return self._biased_output(y, params, sample_mask), state


class _Steps1D:
    """What the 1-D depthwise and separable layers add to their 2-D twins (a mixin placed
    before them): 1-D arguments and configs, (steps, channels) inputs, kernels without the
    unit axis. The window is kept as the twin's pair (k, 1)."""

    def _one_d(self, kernel_size, strides, dilation_rate):
        return ((as_single(kernel_size, "kernel_size")[0], 1),
                (as_single(strides, "strides")[0], 1),
                (as_single(dilation_rate, "dilation_rate")[0], 1))

    def get_config(self):
        config = super().get_config()
        for key in ("kernel_size", "strides", "dilation_rate"):
            config[key] = (config[key][0],)
        return config

    def sample_output_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"{type(self).__name__} expects sequences of shape (steps, "
                             f"channels) with a known number of channels. Received: input "
                             f"of shape {(None,) + tuple(input_shape)}")
        steps, _, channels = self._image_output_shape((input_shape[0], 1, input_shape[1]))
        return (steps, channels)

    def init(self, rng, input_shape):
        params, state, _ = super().init(rng, (input_shape[0], 1, input_shape[1]))
        # (k, 1, C, m) -> (k, C, m); a pointwise (1, 1, C*m, filters) -> (1, C*m, filters)
        flat = {name: (value[:, 0] if value.ndim == 4 else value)
                for name, value in params.items()}
        return flat, state, self.sample_output_shape(input_shape)

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        image = {name: (value[:, None] if name in ("kernel", "depthwise_kernel")
                        else value[None] if name == "pointwise_kernel" else value)
                 for name, value in params.items()}
        # the twin adds the penalties, on the image-shaped arrays: the same sums
        y, state = super().pre_activation(image, state, x[:, :, None, :],
                                          sample_mask=sample_mask)
        return y[:, :, 0, :], state


class DepthwiseConv1D(_Steps1D, DepthwiseConv2D):
    """Depthwise 1-D convolution: each channel of a sequence convolved with its own
    `depth_multiplier` filters; (steps, C) -> (steps', C * depth_multiplier), as Keras's.
    Arguments as DepthwiseConv2D's, each window argument one integer; the kernel is
    (kernel_size, C, depth_multiplier).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.DepthwiseConv1D(3, depth_multiplier=2, padding="same")
        >>> layer(np.zeros((1, 8, 3), np.float32)).shape, [w.shape for w in layer.weights]
        ((1, 8, 6), [(3, 3, 2), (6,)])
    """

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                 data_format=None, dilation_rate=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", bias_initializer="zeros",
                 depthwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, bias_constraint=None, **kwargs):
        kernel_size, strides, dilation_rate = self._one_d(kernel_size, strides, dilation_rate)
        super().__init__(
            kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
            data_format=data_format, dilation_rate=dilation_rate, activation=activation,
            use_bias=use_bias, depthwise_initializer=depthwise_initializer,
            bias_initializer=bias_initializer, depthwise_regularizer=depthwise_regularizer,
            bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
            depthwise_constraint=depthwise_constraint, bias_constraint=bias_constraint,
            **kwargs)


class SeparableConv1D(_Steps1D, SeparableConv2D):
    """Depthwise separable 1-D convolution: a depthwise convolution of each channel, then a
    pointwise one mixing them into `filters`, as Keras's. Arguments as SeparableConv2D's, each
    window argument one integer; weights depthwise_kernel (k, C, m), pointwise_kernel
    (1, C * m, filters), bias (filters,).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.SeparableConv1D(4, 3, padding="same")
        >>> layer(np.zeros((1, 8, 3), np.float32)).shape, [w.shape for w in layer.weights]
        ((1, 8, 4), [(3, 3, 1), (1, 3, 4), (4,)])
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, depth_multiplier=1, activation=None, use_bias=True,
                 depthwise_initializer="glorot_uniform", pointwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None,
                 pointwise_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 depthwise_constraint=None, pointwise_constraint=None, bias_constraint=None,
                 **kwargs):
        kernel_size, strides, dilation_rate = self._one_d(kernel_size, strides, dilation_rate)
        super().__init__(
            filters, kernel_size, strides=strides, padding=padding, data_format=data_format,
            dilation_rate=dilation_rate, depth_multiplier=depth_multiplier,
            activation=activation, use_bias=use_bias,
            depthwise_initializer=depthwise_initializer,
            pointwise_initializer=pointwise_initializer, bias_initializer=bias_initializer,
            depthwise_regularizer=depthwise_regularizer,
            pointwise_regularizer=pointwise_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            depthwise_constraint=depthwise_constraint,
            pointwise_constraint=pointwise_constraint, bias_constraint=bias_constraint,
            **kwargs)

