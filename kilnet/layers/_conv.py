"""Conv2D, channels-last, as Keras's: the layer around kilnet's 2-D convolution
(`kilnet._kernels.conv.conv2d`: oneDNN's or XLA's forms on the CPU, the native one
elsewhere).
"""

from __future__ import annotations

from kilnet._kernels.conv import conv2d, dilated_span, output_size, too_small
from kilnet.layers._base import as_pair, check_channels_last, check_padding
from kilnet.layers._conv_base import ConvolutionLayer


class Conv2D(ConvolutionLayer):
    saves_declared_weights_only = True   # as Keras's save_own_variables does
    config_keys = ("filters", "kernel_size", "strides", "padding", "data_format",
                   "dilation_rate", "groups", "activation", "use_bias", "kernel_initializer",
                   "bias_initializer", "kernel_regularizer", "bias_regularizer",
                   "activity_regularizer", "kernel_constraint", "bias_constraint")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 data_format=None, dilation_rate=(1, 1), groups=1, kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"filters must be a positive integer. Received: filters={filters!r}")
        self.data_format = check_channels_last(data_format)
        self.filters = filters
        self._set_window_sizes(as_pair, kernel_size, strides, dilation_rate)
        self.padding = check_padding(padding)
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1 \
                or filters % groups:
            raise ValueError("groups must be a positive integer that divides filters="
                             f"{filters}. Received: groups={groups!r}")
        self.groups = groups
        self._set_weight_arguments(
            use_bias, kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint, kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer)

    def sample_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                "Conv2D expects images of shape (height, width, channels). Received an input "
                f"of shape {input_shape}; for grayscale (28, 28) images add "
                "layers.Reshape((28, 28, 1)) first or pass input_shape=(28, 28, 1)."
            )
        h, w, channels = input_shape
        if channels is not None and channels % self.groups:
            raise ValueError(f"Conv2D with groups={self.groups} needs input channels divisible "
                             f"by groups. Received: an input of shape {input_shape}")
        (sh, sw), (dh, dw) = self.strides, self.dilation_rate
        kh, kw = dilated_span(self.kernel_size[0], dh), dilated_span(self.kernel_size[1], dw)
        ho, wo = output_size(h, kh, sh, self.padding), output_size(w, kw, sw, self.padding)
        if too_small(ho, wo):
            raise ValueError(
                f"Conv2D kernel_size={self.kernel_size} does not fit an input of shape "
                f"{input_shape} with padding='{self.padding}'; use padding='same'."
            )
        return (ho, wo, self.filters)

    def convolution_op(self, inputs, kernel):
        """The convolution of `inputs` with `kernel` (no bias, no activation), as Keras's
        `Conv2D.convolution_op`: the layer computes through it, so a subclass that overrides
        it (keras.io's weight-standardized convolution) changes what the layer computes.

        Example:
            >>> import numpy as np
            >>> from kilnet import layers
            >>> conv = layers.Conv2D(1, 2)
            >>> conv.convolution_op(np.ones((1, 3, 3, 1)), np.ones((2, 2, 1, 1))).shape
            (1, 2, 2, 1)
        """
        return conv2d(inputs, kernel, self.strides, self.padding, self.dilation_rate,
                      self.groups)

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        y = self.convolution_op(x, params["kernel"])
        return self._biased_output(y, params, sample_mask), state
