"""BatchNormalization over the last axis, with Keras's defaults and moving statistics."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from kilnet import constraints, regularizers
from kilnet.layers._base import Layer


class BatchNormalization(Layer):
    _supports_masking = True  # passes a sequence mask on, as Keras
    # Under a 16-bit policy the inputs are cast but gamma, beta and the moving statistics stay
    # float32, and the statistics are computed in float32 (Keras: BN is prone to overflow in
    # float16); the output is cast back to the compute dtype (Layer.autocast_apply).
    autocast_weights = False
    state_names = ("moving_mean", "moving_variance")
    config_keys = ("momentum", "epsilon", "center", "scale", "beta_regularizer",
                   "gamma_regularizer", "beta_constraint", "gamma_constraint")

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        regularizers.set_layer_regularizers(self, beta_regularizer=beta_regularizer,
                                            gamma_regularizer=gamma_regularizer)
        constraints.set_layer_constraints(self, beta_constraint=beta_constraint,
                                          gamma_constraint=gamma_constraint)
        if axis != -1:
            raise ValueError(f"Only axis=-1 (channels-last) is supported. Received: axis={axis!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1]. Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)

    @property
    def param_names(self):
        return (("gamma",) if self.scale else ()) + (("beta",) if self.center else ())

    def init(self, rng, input_shape):
        channels = input_shape[-1]
        params = {}
        if self.scale:
            params["gamma"] = np.ones((channels,), np.float32)
        if self.center:
            params["beta"] = np.zeros((channels,), np.float32)
        state = {"moving_mean": np.zeros((channels,), np.float32),
                 "moving_variance": np.ones((channels,), np.float32)}
        return params, state, input_shape

    def get_config(self):
        return constraints.serialize_into(regularizers.serialize_into(
            super().get_config(), self), self)

    def apply(self, params, state, x, *, training=False, sample_mask=None, **_):
        regularizers.add_layer_penalties(self, params)
        if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
            x = x.astype(jnp.float32)  # 16-bit inputs: statistics in float32, as Keras
        axes = tuple(range(x.ndim - 1))
        if training and self.trainable:  # frozen: inference mode, as Keras
            mean, var = _masked_moments(x, axes, sample_mask)
            m = self.momentum
            state = {"moving_mean": state["moving_mean"] * m + mean * (1 - m),
                     "moving_variance": state["moving_variance"] * m + var * (1 - m)}
        else:
            mean, var = state["moving_mean"], state["moving_variance"]
        y = (x - mean) * jnp.reciprocal(jnp.sqrt(var + self.epsilon))
        if self.scale:
            y = y * params["gamma"]
        if self.center:
            y = y + params["beta"]
        return y, state


def _masked_moments(x, axes, mask):
    """Mean and (biased) variance over the real samples of a possibly padded batch."""
    if mask is None:
        return x.mean(axes), x.var(axes)
    weight = mask.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
    count = jnp.maximum(weight.sum() * (x.size // (x.shape[0] * x.shape[-1])), 1.0)
    mean = (x * weight).sum(axes) / count
    var = (jnp.square(x - mean) * weight).sum(axes) / count
    return mean, var
