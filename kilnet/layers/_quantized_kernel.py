"""What a layer with a `kernel` and an optional `bias` (Dense, EinsumDense, the attention
projections) needs to be quantized as Keras's Dense and EinsumDense are, to int8
(kilnet.layers._int8) or int4 (kilnet.layers._int4): its weight names per mode, its
quantized weights from its float ones, its product, and its built-quantized form (a layer
made with dtype "int8_from_float32" or "int4/128_from_float32", or read from a quantized
file).

Why a module of its own: the two modes' arithmetic live apart, and the layers reach them
through this one class.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from kilnet import quantization_config, quantizers
from kilnet.layers import _int4, _int8


class QuantizableKernel(_int8.Int8Configured):
    """A kernel layer's quantization, int8 or int4, as Keras's.

    The class defines `kernel_shape(input_shape)`, `kernel_contraction(input_ndim)` and,
    when the int8 scale's shape is not the outputs' layout, `stored_scale_shape(shape)`
    (Dense keeps (units,)); `int4_divides_outputs` says whether its per-channel int4 product
    divides by the scales after the product (Keras's Dense) rather than dequantizing the
    kernel first (Keras's EinsumDense).

    Example:
        >>> import kilnet
        >>> dense = kilnet.layers.Dense(3, dtype="int4/2_from_float32")
        >>> dense.build((None, 5))
        >>> [(w.name, w.shape) for w in dense.weights]
        [('bias', (3,)), ('kernel', (5, 2)), ('kernel_scale', (3, 3)), ('kernel_zero', (3, 3)), \
('g_idx', (5,))]
    """
    quantization_modes = ("int8", "int4")
    takes_int8_quantizers = True
    int4_config = None   # the Int4QuantizationConfig of an int4 layer (None: its policy's)
    int4_divides_outputs = False

    @property
    def quantization_config(self):
        if self.quantization_mode == "int4":
            return quantizers.serialize(self.int4_config)
        return super().quantization_config

    def take_quantization_config(self, value, layer_class: str) -> None:
        """Keep the `quantization_config=` argument of the layer's constructor."""
        config = _int8.config_argument(value, layer_class)
        if isinstance(config, quantization_config.Int4QuantizationConfig):
            self.int4_config = config
        else:
            self.int8_custom_config = config

    @property
    def int4_block_size(self):
        """The rows of a group of the int4 kernel (None: per channel)."""
        return _int4.block_size_of(self.int4_config, self.dtype_policy)

    @property
    def param_names(self):
        bias = ("bias",) if self.use_bias else ()
        return bias if self.quantization_mode else ("kernel",) + bias

    @property
    def state_names(self):
        if self.quantization_mode == "int4":
            grouped = ("kernel_zero", "g_idx") if self.int4_block_size is not None else ()
            return ("kernel", "kernel_scale") + grouped
        return ("kernel", "kernel_scale") if self.quantization_mode else ()

    @property
    def saved_weight_order(self):
        """Keras's save_own_variables order of a quantized kernel layer."""
        if not self.quantization_mode:
            return None
        return ("kernel", "bias", "kernel_scale", "kernel_zero", "g_idx")

    def stored_scale_shape(self, shape) -> tuple:
        return tuple(shape)

    def int4_layout(self, input_shape) -> _int4.Int4Layout:
        """The int4 kernel's layout for samples of `input_shape` (no batch axis)."""
        return _int4.Int4Layout(self.kernel_contraction(len(input_shape) + 1),
                                tuple(self.kernel_shape(input_shape)), self.int4_block_size,
                                self.int4_divides_outputs)

    def quantized_state(self, input_shape, kernel=None) -> dict:
        """The quantized kernel and its scales in the layer's mode: from the float `kernel`,
        or as a quantized build makes them (which a file's arrays then replace)."""
        if self.quantization_mode != "int4":
            return self.int8_state(input_shape, kernel)
        layout = self.int4_layout(input_shape)
        if kernel is None:
            return _int4.empty_state(layout)
        weight_quantizer = getattr(self.int4_config, "weight_quantizer", None)
        return _int4.quantized_state(layout, kernel, weight_quantizer)

    def int8_state(self, input_shape, kernel=None) -> dict:
        """The int8 kernel and its scale: from the float `kernel`, or as a quantized build
        makes them (zeros and ones, which a file's arrays then replace)."""
        contraction = self.kernel_contraction(len(input_shape) + 1)
        if kernel is None:
            shape = self.kernel_shape(input_shape)
            return {"kernel": np.zeros(shape, np.int8),
                    "kernel_scale": np.ones(self.stored_scale_shape(
                        contraction.scale_shape(shape)), np.float32)}
        weight_quantizer = getattr(self.int8_custom_config, "weight_quantizer", None)
        quantized, scale = _int8.quantize_kernel(contraction, kernel, weight_quantizer)
        return {"kernel": quantized,
                "kernel_scale": scale.reshape(self.stored_scale_shape(scale.shape))}

    def quantized_weights(self, mode) -> tuple:
        """(params, state) of the quantized form in `mode`, from the layer's float weights."""
        params = {"bias": self.bias.numpy()} if self.use_bias else {}
        kernel = self.kernel.numpy()
        if mode == "int4":
            return params, _int4.quantized_state(
                self.int4_layout(self.build_shape), kernel,
                getattr(self.int4_config, "weight_quantizer", None))
        return params, self.int8_state(self.build_shape, kernel)

    def quantized_product(self, x, state):
        """The quantized kernel's product with `x` (the bias is added by the layer)."""
        if self.quantization_mode == "int4":
            layout = self.int4_layout(tuple(jnp.shape(x))[1:])
            inputs_quantizer = getattr(self.int4_config, "activation_quantizer", None)
            own = {name: state[name] for name in layout.state_names}
            return _int4.straight_through_product(layout, inputs_quantizer, x, own)
        contraction = self.kernel_contraction(jnp.ndim(x))
        custom = self.int8_custom_config
        inputs_quantizer = _int8.DEFAULT_INPUTS_QUANTIZER if custom is None else \
            custom.activation_quantizer
        return _int8.straight_through_product(contraction, inputs_quantizer, x,
                                              state["kernel"], state["kernel_scale"])
