"""Dense: y = activation(x @ kernel + bias), applied on the last axis."""

from __future__ import annotations

from kilnet import initializers
from kilnet.layers._base import ActivatedLayer


class Dense(ActivatedLayer):
    _supports_masking = True  # passes a sequence mask on, as Keras
    config_keys = ("units", "activation", "use_bias", "kernel_initializer", "bias_initializer")

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", **kwargs):
        super().__init__(activation=activation, **kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units must be a positive integer. Received: units={units!r}")
        initializers.get(kernel_initializer), initializers.get(bias_initializer)
        self.units = units
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer

    @property
    def param_names(self):
        return ("kernel", "bias") if self.use_bias else ("kernel",)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (self.units,)

    def init(self, rng, input_shape):
        params = {"kernel": initializers.get(self.kernel_initializer)(
            rng, (input_shape[-1], self.units))}
        if self.use_bias:
            params["bias"] = initializers.get(self.bias_initializer)(rng, (self.units,))
        return params, {}, self.compute_output_shape(input_shape)

    def pre_activation(self, params, state, x, **_):
        y = x @ params["kernel"]
        if self.use_bias:
            y = y + params["bias"]
        return y, state
