"""Dense: y = activation(x @ kernel + bias), applied on the last axis."""

from __future__ import annotations

from kilnet import constraints, initializers, regularizers
from kilnet.layers import _int8
from kilnet.layers._quantized_kernel import QuantizableKernel
from kilnet.layers._base import KernelLayer
from kilnet.layers._matmul import last_axes_product


class Dense(QuantizableKernel, KernelLayer):
    saves_declared_weights_only = True   # as Keras's save_own_variables does
    int4_divides_outputs = True   # Keras's int4 Dense divides its product by the scales
    _supports_masking = True  # passes a sequence mask on, as Keras
    # Keras's Dense writes its activity regularizer only when set (kilnet.layers.Layer does)
    config_keys = ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer",
                   "kernel_regularizer", "bias_regularizer", "kernel_constraint",
                   "bias_constraint", "quantization_config")

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, quantization_config=None,
                 **kwargs):
        super().__init__(activation=activation, **kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units must be a positive integer. Received: units={units!r}")
        self.take_quantization_config(quantization_config, "Dense")
        initializers.set_layer_initializers(
            self, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer)
        self.units = units
        self.use_bias = bool(use_bias)
        regularizers.set_layer_regularizers(self, kernel_regularizer=kernel_regularizer,
                                            bias_regularizer=bias_regularizer,
                                            activity_regularizer=activity_regularizer)
        constraints.set_layer_constraints(self, kernel_constraint=kernel_constraint,
                                          bias_constraint=bias_constraint)

    def get_config(self):
        config = regularizers.serialize_into(super().get_config(), self, _REGULARIZERS)
        return constraints.serialize_into(config, self, _CONSTRAINTS)

    def sample_output_shape(self, input_shape):
        return input_shape[:-1] + (self.units,)

    def kernel_shape(self, input_shape) -> tuple:
        return (input_shape[-1], self.units)

    def init(self, rng, input_shape):
        if self.quantization_mode:   # Keras's quantized build: no float kernel
            params, state = {}, self.quantized_state(input_shape)
        else:
            params, state = {"kernel": initializers.initial_values(self.kernel_initializer,
                rng, self.kernel_shape(input_shape))}, {}
        if self.use_bias:
            params["bias"] = initializers.initial_values(self.bias_initializer, rng, (self.units,))
        return params, state, self.sample_output_shape(input_shape)

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        if self.quantization_mode:
            y = self.quantized_product(x, state)
            if self.use_bias:
                y = y + params["bias"]
        else:
            y = last_axes_product(x, params["kernel"], params["bias"] if self.use_bias else None)
        regularizers.add_layer_penalties(self, params, lambda: self.activate(y), sample_mask)
        return y, state

    # -- int8 (model.quantize("int8"); kilnet.layers._int8) ---------------------------------
    def quantize(self, mode=None, type_check=True, config=None):
        """Quantize the kernel in place, as Keras's Dense.quantize. "int8": an int8 `kernel`
        and a float32 `kernel_scale` of shape (units,), both non-trainable; each call then
        quantizes its inputs per row (abs-max) and multiplies in integers. "int4": the kernel
        packed two values a byte, (input_dim, ceil(units / 2)), with a scale (and a zero
        point) per group of `block_size` rows (Keras's default 128; kilnet.layers._int4).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> dense = kilnet.layers.Dense(2, kernel_initializer="ones")
            >>> dense.build((None, 3))
            >>> dense.quantize("int8")
            >>> [(w.name, str(w.dtype)) for w in dense.weights], dense.dtype_policy.name
            ([('bias', 'float32'), ('kernel', 'int8'), ('kernel_scale', 'float32')], \
'int8_from_float32')
            >>> np.asarray(dense(np.array([[1.0, 2.0, 3.0]]))).round(2).tolist()
            [[6.0, 6.0]]
            >>> dense4 = kilnet.layers.Dense(2, kernel_initializer="ones")
            >>> dense4.build((None, 3))
            >>> dense4.quantize("int4")
            >>> dense4.kernel.shape, dense4.dtype_policy.name
            ((3, 1), 'int4/128_from_float32')
        """
        _int8.quantize_layer(self, Dense, mode, type_check, config)

    def kernel_contraction(self, input_ndim):
        return _int8.last_axes(input_ndim, 2)

    def stored_scale_shape(self, shape) -> tuple:
        return (self.units,)   # Keras's Dense keeps one scale per unit, unexpanded


_REGULARIZERS = ("kernel_regularizer", "bias_regularizer")
_CONSTRAINTS = ("kernel_constraint", "bias_constraint")
