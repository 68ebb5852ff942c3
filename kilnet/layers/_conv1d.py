"""Conv1D over sequences (steps, channels), channels-last, with "valid", "same" and "causal"
padding and dilation.

On CPU the steps are the rows of a one-column image and the convolution is Conv2D's, whose
gradients are written in the layout XLA's CPU backend runs fast inside the training loop
(kilnet/_kernels/conv.py; a text Conv1D model's epoch measured 1.97 s with patches + one matmul,
1.51 s this way); elsewhere the native `lax.conv_general_dilated`. Both get the same explicit
(left, right) padding, so they compute the same numbers (tests/test_text_conv.py compares them).

The number of steps may be unknown when the model is declared (`Input(shape=(None,))`): the
output length is then None too, and each compiled program sees the data's real length.
"""

from __future__ import annotations

import math

import jax
from jax import lax

from kilnet.layers._base import check_channels_last
from kilnet.layers._conv_base import ConvolutionLayer, as_single, check_filters
from kilnet._kernels.conv import conv2d_cpu

PADDINGS = ("valid", "same", "causal")


# -- the computation -----------------------------------------------------------------------------
def conv1d_padding(length: int, kernel: int, stride: int, dilation: int,
                   padding: str) -> tuple[int, int]:
    """(left, right) zeros added to the steps: Keras's 'same' (TensorFlow's rule: output
    ceil(length / stride), any odd zero after) and 'causal' (all before: step t sees only
    steps <= t)."""
    span = dilation * (kernel - 1) + 1
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return span - 1, 0
    total = max((math.ceil(length / stride) - 1) * stride + span - length, 0)
    return total // 2, total - total // 2


def conv1d_length(length, kernel: int, stride: int, dilation: int, padding: str):
    """Output steps for `length` input steps (None stays None)."""
    if length is None:
        return None
    left, right = conv1d_padding(length, kernel, stride, dilation, padding)
    return (length + left + right - dilation * (kernel - 1) - 1) // stride + 1


def conv1d_cpu(x, kernel, stride: int, dilation: int, pads):
    """The steps as the rows of a one-column image: Conv2D's CPU convolution."""
    y = conv2d_cpu(x[:, :, None, :], kernel[:, None], (stride, 1), (tuple(pads), (0, 0)),
                   (dilation, 1))
    return y[:, :, 0, :]


def conv1d_native(x, kernel, stride: int, dilation: int, pads):
    return lax.conv_general_dilated(x, kernel, window_strides=(stride,), padding=[pads],
                                    rhs_dilation=(dilation,),
                                    dimension_numbers=("NWC", "WIO", "NWC"))


def conv1d(x, kernel, stride: int, dilation: int, padding: str):
    # Shapes are static inside a trace: a too-short sequence fails here, not as an empty slice.
    if conv1d_length(x.shape[1], kernel.shape[0], stride, dilation, padding) < 1:
        raise ValueError(f"Conv1D kernel_size={kernel.shape[0]} with dilation_rate={dilation} "
                         f"does not fit sequences of {x.shape[1]} steps with padding="
                         f"'{padding}'. Received: inputs of shape {tuple(x.shape)}")
    pads = conv1d_padding(x.shape[1], kernel.shape[0], stride, dilation, padding)
    if jax.default_backend() == "cpu":
        return conv1d_cpu(x, kernel, stride, dilation, pads)
    return conv1d_native(x, kernel, stride, dilation, pads)


class Conv1D(ConvolutionLayer):
    """1-D convolution over the steps of a sequence: inputs (steps, channels), outputs
    (new steps, filters).

    Args:
        filters: number of output channels.
        kernel_size: window length (an int or a tuple of one).
        strides: step between windows.
        padding: "valid" (no padding), "same" (output length ceil(steps / strides)) or
            "causal" (zeros before the sequence: output step t depends on steps <= t only).
        dilation_rate: spacing between the taps of the window (with strides 1).
        activation, use_bias, kernel_initializer, bias_initializer: as Dense.

    The kernel has Keras's shape (kernel_size, in_channels, filters).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.Conv1D(4, 3, padding="causal", activation="relu")
        >>> layer(np.zeros((2, 10, 8), np.float32)).shape
        (2, 10, 4)
        >>> [w.shape for w in layer.get_weights()]
        [(3, 8, 4), (4,)]
    """
    saves_declared_weights_only = True   # as Keras's save_own_variables does

    config_keys = ("filters", "kernel_size", "strides", "padding", "data_format",
                   "dilation_rate", "groups", "activation", "use_bias", "kernel_initializer",
                   "bias_initializer", "kernel_regularizer", "bias_regularizer",
                   "activity_regularizer", "kernel_constraint", "bias_constraint")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.filters = check_filters(filters)
        self._set_window_sizes(as_single, kernel_size, strides, dilation_rate)
        if not isinstance(padding, str) or padding.lower() not in PADDINGS:
            raise ValueError("padding must be 'valid', 'same' or 'causal'. "
                             f"Received: padding={padding!r}")
        if groups != 1:
            raise ValueError("Conv1D supports groups=1 only for now (Conv2D takes groups: "
                             "reshape the sequence to a (steps, 1) image). Received: "
                             f"groups={groups!r}")
        self.groups = 1
        self._set_weight_arguments(
            use_bias, kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer)
        self.padding = padding.lower()
        self.data_format = check_channels_last(data_format)

    def sample_output_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "Conv1D expects sequences of shape (steps, channels) with a known number of "
                f"channels. Received an input of shape {tuple(input_shape)}; for token ids "
                "add an Embedding first, for a plain series add a last axis of 1.")
        steps = conv1d_length(input_shape[0], self.kernel_size[0], self.strides[0],
                              self.dilation_rate[0], self.padding)
        if steps is not None and steps < 1:
            raise ValueError(
                f"Conv1D kernel_size={self.kernel_size[0]} with dilation_rate="
                f"{self.dilation_rate[0]} does not fit {input_shape[0]} steps with padding="
                f"'{self.padding}'; use padding='same' or a smaller kernel.")
        return (steps, self.filters)

    def convolution_op(self, inputs, kernel):
        """The convolution of `inputs` with `kernel`, as Keras's `Conv1D.convolution_op`:
        the layer computes through it, so a subclass may override it.

        Example:
            >>> import numpy as np
            >>> from kilnet import layers
            >>> layers.Conv1D(1, 2).convolution_op(np.ones((1, 5, 1)), np.ones((2, 1, 1))).shape
            (1, 4, 1)
        """
        return conv1d(inputs, kernel, self.strides[0], self.dilation_rate[0], self.padding)

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        y = self.convolution_op(x, params["kernel"])
        return self._biased_output(y, params, sample_mask), state
