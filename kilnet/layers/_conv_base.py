"""What kilnet's convolution layers share as layers (Conv1D/2D/3D, the transposed, depthwise
and separable convolutions, ConvLSTM's arguments): Keras's checks of their arguments, and
`ConvolutionLayer`, the base class that holds their window sizes, their weights' initializers,
penalties and constraints, their bias and their config.

Why one base class: the layers differ only in their computation and kernel shapes; the rest is
the same Keras contract, so it is written once.
"""

from __future__ import annotations

from kilnet import constraints, initializers, regularizers
from kilnet.layers._base import KernelLayer
from kilnet.layers._bias import add_bias


# -- arguments -------------------------------------------------------------------------------------
def as_single(value, argument: str) -> tuple[int]:
    """Keras accepts `3` or `(3,)` for a 1-D kernel size, stride or dilation.

    Example:
        >>> as_single(3, "kernel_size"), as_single([2], "strides")
        ((3,), (2,))
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        single = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        single = ()
    if len(single) != 1 or single[0] < 1:
        raise ValueError(f"{argument} must be a positive integer (or a tuple of one). "
                         f"Received: {argument}={value!r}")
    return single


def check_filters(filters):
    """`filters`, a positive integer (the number of output channels), or a clear error.

    Example:
        >>> check_filters(8)
        8
    """
    if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
        raise ValueError(f"filters must be a positive integer. Received: filters={filters!r}")
    return filters


def check_no_dilated_strides(strides, dilation_rate):
    """Refuses strides and dilation both above 1 (Keras refuses them too).

    Example:
        >>> check_no_dilated_strides((2, 2), (2, 1))
        Traceback (most recent call last):
        ...
        ValueError: strides > 1 cannot be combined with dilation_rate > 1 (as in Keras). Received: strides=(2, 2), dilation_rate=(2, 1)
    """
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ValueError("strides > 1 cannot be combined with dilation_rate > 1 (as in Keras). "
                         f"Received: strides={strides}, dilation_rate={dilation_rate}")


# -- the layer ---------------------------------------------------------------------------------------
_WEIGHT_ARGUMENT_KINDS = ("_regularizer", "_constraint", "_initializer")


class ConvolutionLayer(KernelLayer):
    """A convolution layer's common parts: its window sizes, Keras's `*_initializer`,
    `*_regularizer` and `*_constraint` arguments of its weights, its bias, and its output with
    the bias added and the penalties counted. The layers add their own computation and
    kernel shapes.

    Example:
        >>> from kilnet import layers
        >>> conv = layers.Conv1D(2, 3, dilation_rate=2, kernel_regularizer="l2")
        >>> isinstance(conv, ConvolutionLayer), conv.dilation_rate
        (True, (2,))
        >>> conv.get_config()["kernel_regularizer"]["class_name"]
        'L2'
    """

    def _set_window_sizes(self, as_tuple, kernel_size, strides, dilation_rate) -> None:
        """kernel_size, strides and dilation_rate as tuples of the layer's rank (`as_tuple`:
        as_single, as_pair or as_triple), strides and dilation not both above 1."""
        self.kernel_size = as_tuple(kernel_size, "kernel_size")
        self.strides = as_tuple(strides, "strides")
        self.dilation_rate = as_tuple(dilation_rate, "dilation_rate")
        check_no_dilated_strides(self.strides, self.dilation_rate)

    def _set_weight_arguments(self, use_bias, **arguments) -> None:
        """use_bias, and the weights' `*_regularizer`, `*_constraint` and `*_initializer`
        arguments resolved onto the layer (each checked, its name in the error)."""
        unknown = [name for name in arguments if not name.endswith(_WEIGHT_ARGUMENT_KINDS)]
        if unknown:
            raise TypeError(f"_set_weight_arguments takes *_regularizer, *_constraint and "
                            f"*_initializer arguments. Received: {unknown}")

        def ending(suffix):
            return {name: value for name, value in arguments.items() if name.endswith(suffix)}
        regularizers.set_layer_regularizers(self, **ending("_regularizer"))
        constraints.set_layer_constraints(self, **ending("_constraint"))
        initializers.set_layer_initializers(self, **ending("_initializer"))
        self.use_bias = bool(use_bias)

    def init(self, rng, input_shape):
        out_shape = self.sample_output_shape(input_shape)
        shape = self._kernel_shape(input_shape[-1])
        kernel = initializers.initial_values(self.kernel_initializer, rng, shape)
        return {"kernel": kernel, **self._bias_weights(rng, self.filters)}, {}, out_shape

    def _kernel_shape(self, channels: int) -> tuple:
        """Keras's kernel shape for inputs of `channels` channels: (window..., channels per
        group, filters); the transposed convolutions swap the last two."""
        return self.kernel_size + (channels // self.groups, self.filters)

    def _bias_weights(self, rng, size: int) -> dict:
        """{"bias": (size,) values} with use_bias, else {}."""
        if not self.use_bias:
            return {}
        return {"bias": initializers.initial_values(self.bias_initializer, rng, (size,))}

    def _biased_output(self, y, params, sample_mask):
        """The convolution's output `y` plus the bias (use_bias), with the weights' and the
        activity's penalties added."""
        if self.use_bias:
            y = add_bias(y, params["bias"])
        regularizers.add_layer_penalties(self, params, lambda: self.activate(y), sample_mask)
        return y

    def get_config(self):
        return constraints.serialize_into(regularizers.serialize_into(
            super().get_config(), self), self)
