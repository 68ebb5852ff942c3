"""Dense: y = activation(x @ kernel + bias), applied on the last axis."""

from __future__ import annotations

from kilnet import constraints, initializers, regularizers
from kilnet.layers._base import KernelLayer
from kilnet.layers._matmul import last_axes_product


class Dense(KernelLayer):
    saves_declared_weights_only = True   # as Keras's save_own_variables does
    _supports_masking = True  # passes a sequence mask on, as Keras
    config_keys = ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer",
                   "kernel_regularizer", "bias_regularizer", "activity_regularizer",
                   "kernel_constraint", "bias_constraint")

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units must be a positive integer. Received: units={units!r}")
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

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (self.units,)

    def init(self, rng, input_shape):
        params = {"kernel": initializers.get(self.kernel_initializer).sample(
            rng, (input_shape[-1], self.units))}
        if self.use_bias:
            params["bias"] = initializers.get(self.bias_initializer).sample(rng, (self.units,))
        return params, {}, self.compute_output_shape(input_shape)

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        y = last_axes_product(x, params["kernel"], params["bias"] if self.use_bias else None)
        regularizers.add_layer_penalties(self, params, lambda: self.activate(y), sample_mask)
        return y, state


_REGULARIZERS = ("kernel_regularizer", "bias_regularizer", "activity_regularizer")
_CONSTRAINTS = ("kernel_constraint", "bias_constraint")
