"""Conv2DTranspose and Conv3DTranspose: the upsampling convolutions of decoders and
autoencoders (images, volumes and videos), channels-last, with Keras's output sizes and kernel
layout (spatial..., filters, in_channels). The computation is
`kilnet._kernels.conv_transpose.conv_transpose`, for every rank (Conv1DTranspose, in
kilnet/layers/_conv_more.py, runs the 2-D one on a one-column image).
"""

from __future__ import annotations

from kilnet._kernels.conv_transpose import conv_transpose, transpose_size
from kilnet.layers._base import as_pair, check_channels_last, check_padding
from kilnet.layers._conv_base import ConvolutionLayer, check_filters
from kilnet.layers._conv3d import as_triple


class _ConvTranspose(ConvolutionLayer):
    """What Conv2DTranspose and Conv3DTranspose share: Keras's arguments, output sizes,
    kernel (spatial..., filters, in_channels) and computation, for RANK spatial axes. Each
    subclass keeps Keras's own argument order and defaults."""

    RANK = 2

    @property
    def sample_rank(self) -> int:   # (spatial..., channels): how build((10,)) reads
        return self.RANK + 1

    config_keys = ("filters", "kernel_size", "strides", "padding", "output_padding",
                   "data_format", "dilation_rate", "activation", "use_bias",
                   "kernel_initializer", "bias_initializer", "kernel_regularizer",
                   "bias_regularizer", "activity_regularizer", "kernel_constraint",
                   "bias_constraint")

    def __init__(self, filters, kernel_size, *, strides, padding, output_padding, data_format,
                 dilation_rate, activation, use_bias, kernel_initializer, bias_initializer,
                 kernel_regularizer, bias_regularizer, activity_regularizer, kernel_constraint,
                 bias_constraint, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.filters = check_filters(filters)
        self._set_window_sizes(as_pair if self.RANK == 2 else as_triple, kernel_size, strides,
                               dilation_rate)
        self.padding = check_padding(padding)
        self.output_padding = _check_output_padding(output_padding, self.strides)
        self._set_weight_arguments(
            use_bias, kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer)
        self.data_format = check_channels_last(data_format)

    def sample_output_shape(self, input_shape):
        name = type(self).__name__
        if len(input_shape) != self.RANK + 1 or input_shape[-1] is None:
            what = ("images of shape (height, width, channels)" if self.RANK == 2
                    else "volumes of shape (depth, height, width, channels)")
            raise ValueError(
                f"{name} expects {what} with a known number of channels. Received an input "
                f"of shape {tuple(input_shape)}; add layers.Reshape(...) first to give it a "
                "channels axis.")
        extra = (None,) * self.RANK if self.output_padding is None else self.output_padding
        sizes = tuple(transpose_size(input_shape[i], self.kernel_size[i], self.strides[i],
                                     self.dilation_rate[i], self.padding, extra[i])
                      for i in range(self.RANK))
        return sizes + (self.filters,)

    def _kernel_shape(self, channels: int) -> tuple:
        return self.kernel_size + (self.filters, channels)

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        y = conv_transpose(x, params["kernel"], self.strides, self.dilation_rate, self.padding,
                           self.output_padding)
        return self._biased_output(y, params, sample_mask), state


class Conv2DTranspose(_ConvTranspose):
    """Transposed 2-D convolution (sometimes called deconvolution): upsamples images, e.g.
    doubles their size with strides=2 and padding="same".

    Args:
        filters: number of output channels.
        kernel_size, strides, dilation_rate: an int or a pair.
        padding: "valid" (output (size - 1) * strides + max(kernel_size, strides)) or
            "same" (output size * strides).
        output_padding: None, or an int or pair (each < strides) of extra rows/columns at
            the end: the output is then (size - 1) * strides + kernel % 2 + output_padding
            with "same", (size - 1) * strides + kernel + output_padding with "valid".
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as Conv2D.

    The kernel has Keras's shape (kh, kw, filters, in_channels).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.Conv2DTranspose(3, 3, strides=2, padding="same")
        >>> layer(np.zeros((1, 4, 4, 8), np.float32)).shape
        (1, 8, 8, 3)
        >>> [w.shape for w in layer.get_weights()]
        [(3, 3, 3, 8), (3,)]
    """

    RANK = 2

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid",
                 output_padding=None, data_format=None, dilation_rate=(1, 1), activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(
            filters, kernel_size, strides=strides, padding=padding,
            output_padding=output_padding, data_format=data_format,
            dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, **kwargs)


class Conv3DTranspose(_ConvTranspose):
    """Transposed 3-D convolution: upsamples volumes and videos (depth, height, width,
    channels), e.g. doubles every size with strides=2 and padding="same".

    Args:
        filters: number of output channels.
        kernel_size, strides, dilation_rate: an int or a tuple of 3.
        padding: "valid" or "same", output_padding: None or an int or tuple of 3 (each <
            strides), with Conv2DTranspose's output sizes along each axis.
        activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, activity_regularizer, kernel_constraint, bias_constraint: as
            Conv3D.

    The kernel has Keras's shape (kd, kh, kw, filters, in_channels). Keras's argument order:
    data_format comes before output_padding here (not in Conv2DTranspose).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.Conv3DTranspose(2, 3, strides=(1, 2, 2), padding="same")
        >>> layer(np.zeros((1, 2, 4, 4, 5), np.float32)).shape
        (1, 2, 8, 8, 2)
        >>> [w.shape for w in layer.get_weights()]
        [(3, 3, 3, 2, 5), (2,)]
    """

    RANK = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid",
                 data_format=None, output_padding=None, dilation_rate=(1, 1, 1),
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(
            filters, kernel_size, strides=strides, padding=padding,
            output_padding=output_padding, data_format=data_format,
            dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
            kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, **kwargs)


def _check_output_padding(output_padding, strides):
    """None, or an int or a tuple (one per spatial axis), each in [0, strides)."""
    if output_padding is None:
        return None
    given, rank = output_padding, len(strides)
    if isinstance(output_padding, int) and not isinstance(output_padding, bool):
        output_padding = (output_padding,) * rank
    try:
        values = tuple(int(v) for v in output_padding)
    except (TypeError, ValueError):
        values = ()
    if len(values) != rank or min(values) < 0 or any(p >= s for p, s in zip(values, strides)):
        raise ValueError(f"output_padding must be None, or a non-negative integer or a tuple "
                         f"of {rank}, each smaller than strides={strides}. Received: "
                         f"output_padding={given!r}")
    return values
