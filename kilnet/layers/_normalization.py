"""BatchNormalization over the last axis, with Keras's defaults and moving statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kilnet._custom_gradients import custom_vjp
from kilnet import _scope, constraints, initializers, regularizers
from kilnet._kernels import onednn_batch_norm
from kilnet.layers._base import Layer


class BatchNormalization(Layer):
    _supports_masking = True  # passes a sequence mask on, as Keras
    # Under a 16-bit policy the inputs are cast but gamma, beta and the moving statistics stay
    # float32, and the statistics are computed in float32 (Keras: BN is prone to overflow in
    # float16); the output is cast back to the compute dtype (Layer.autocast_apply).
    autocast_weights = False
    state_names = ("moving_mean", "moving_variance")
    config_keys = ("axis", "momentum", "epsilon", "center", "scale", "beta_initializer",
                   "gamma_initializer", "moving_mean_initializer", "moving_variance_initializer",
                   "beta_regularizer", "gamma_regularizer", "beta_constraint",
                   "gamma_constraint", "synchronized", "renorm", "renorm_clipping",
                   "renorm_momentum")

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, renorm=False, renorm_clipping=None,
                 renorm_momentum=0.99, synchronized=False, **kwargs):
        super().__init__(**kwargs)
        _refuse_unsupported(renorm, synchronized)
        initializers.set_layer_initializers(
            self, beta_initializer=beta_initializer, gamma_initializer=gamma_initializer,
            moving_mean_initializer=moving_mean_initializer,
            moving_variance_initializer=moving_variance_initializer)
        regularizers.set_layer_regularizers(self, beta_regularizer=beta_regularizer,
                                            gamma_regularizer=gamma_regularizer)
        constraints.set_layer_constraints(self, beta_constraint=beta_constraint,
                                          gamma_constraint=gamma_constraint)
        # Keras's ResNet and friends write the channels axis by number (axis=3 on images):
        # any spelling of the last axis is accepted, checked against the rank when built.
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError("axis must be the channels axis, -1 (or its number, e.g. 3 for "
                             f"images). Received: axis={axis!r}")
        self.axis = axis
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1]. Received: momentum={momentum!r}")
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        # Keras's batch renormalization settings, kept for the config as Keras keeps them
        # (without renorm they change nothing)
        self.synchronized, self.renorm = False, False
        self.renorm_clipping, self.renorm_momentum = renorm_clipping, renorm_momentum

    @property
    def param_names(self):
        return (("gamma",) if self.scale else ()) + (("beta",) if self.center else ())

    def sample_output_shape(self, input_shape):
        self._check_axis(input_shape)
        return input_shape

    def _check_axis(self, input_shape):
        rank = len(input_shape) + 1   # with the batch axis, as Keras counts `axis`
        if self.axis not in (-1, rank - 1):
            raise ValueError(f"BatchNormalization normalizes the last (channels) axis only: "
                             f"for inputs of rank {rank} that is axis=-1 or axis={rank - 1}. "
                             f"Received: axis={self.axis!r}. Move the axis last first "
                             "(layers.Permute).")

    def init(self, rng, input_shape):
        self._check_axis(input_shape)
        channels = input_shape[-1]
        params = {}
        for name, initializer, used in (("gamma", self.gamma_initializer, self.scale),
                                        ("beta", self.beta_initializer, self.center)):
            if used:
                params[name] = initializers.initial_values(initializer, rng, (channels,))
        state = {"moving_mean": initializers.initial_values(
                     self.moving_mean_initializer, rng, (channels,)),
                 "moving_variance": initializers.initial_values(
                     self.moving_variance_initializer, rng, (channels,))}
        return params, state, input_shape

    def get_config(self):
        return constraints.serialize_into(regularizers.serialize_into(
            super().get_config(), self), self)

    def apply(self, params, state, x, *, training=False, sample_mask=None, mask=None, **_):
        regularizers.add_layer_penalties(self, params)
        if mask is not None and jnp.ndim(mask) != x.ndim - 1:
            raise ValueError(f"{self.name}: the mask should have one dimension less than the "
                             f"inputs. Received: mask.shape={jnp.shape(mask)}, "
                             f"inputs.shape={x.shape}")
        if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
            x = x.astype(jnp.float32)  # 16-bit inputs: statistics in float32, as Keras
        if training and self.trainable:  # frozen: inference mode, as Keras
            # A sequence mask (Keras's masked moments): the statistics count unmasked steps.
            y, mean, var = _normalize_batch(x, params.get("gamma"), params.get("beta"),
                                            _scope.rows_mask(sample_mask, x), self.epsilon,
                                            mask)
            m = self.momentum
            state = {"moving_mean": state["moving_mean"] * m + mean * (1 - m),
                     "moving_variance": state["moving_variance"] * m + var * (1 - m)}
            return y, state
        mean, var = state["moving_mean"], state["moving_variance"]
        y = (x - mean) * jnp.reciprocal(jnp.sqrt(var + self.epsilon))
        if self.scale:
            y = y * params["gamma"]
        if self.center:
            y = y + params["beta"]
        return y, state


def _refuse_unsupported(renorm, synchronized):
    if synchronized:   # Keras's words: on JAX its layer refuses it too
        raise ValueError("Argument synchronized=True is only supported with the TensorFlow "
                         "backend.")
    if renorm:
        raise ValueError("BatchNormalization(renorm=True) (batch renormalization) is not "
                         "implemented in kilnet; leave renorm=False (renorm_clipping and "
                         "renorm_momentum then change nothing). Received: renorm=True")


def _normalize_batch(x, gamma, beta, sample_mask, epsilon, mask=None):
    """Training-mode batch normalization over every axis but the last: (y, mean, var).
    The statistics count only the real samples of a padded batch (`sample_mask`) and the
    unmasked positions of a sequence mask (`mask`, x's shape without channels); gamma and beta
    may be None (scale / center off). oneDNN's kernels where they take x (float32 on the CPU,
    no sequence mask; `onednn_batch_norm`), else the XLA form below."""
    channels = x.shape[-1]
    scale = jnp.ones((channels,), x.dtype) if gamma is None else gamma
    shift = jnp.zeros((channels,), x.dtype) if beta is None else beta
    if mask is None and onednn_batch_norm.accepts(x):
        weights = (jnp.ones(x.shape[:1], x.dtype) if sample_mask is None
                   else sample_mask.astype(x.dtype))
        return onednn_batch_norm.batch_norm_onednn(x, scale, shift, weights, epsilon)
    rows = x.reshape(-1, channels)
    y, mean, var = _batch_norm_rows(rows, scale, shift, _row_weights(x, sample_mask, mask),
                                    epsilon)
    return y.reshape(x.shape), mean, var


def _row_weights(x, sample_mask, mask):
    """One weight per row of x seen as (rows, channels): 0 for a padded sample's rows and for
    masked positions, else 1; None when every row counts."""
    if sample_mask is None and mask is None:
        return None
    weights = jnp.ones(x.shape[:-1], x.dtype)
    if sample_mask is not None:
        weights = weights * sample_mask.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 2))
    if mask is not None:
        weights = weights * jnp.broadcast_to(mask, x.shape[:-1]).astype(x.dtype)
    return weights.reshape(-1)


def _column_sums(rows, weights=None):
    return jnp.sum(rows if weights is None else rows * weights[:, None], axis=0)


def _row_statistics(rows, weights, epsilon):
    count = rows.shape[0] if weights is None else jnp.maximum(jnp.sum(weights), 1.0)
    mean = _column_sums(rows, weights) / count
    centered = rows - mean
    var = _column_sums(centered * centered, weights) / count
    return mean, var, count, centered * jax.lax.rsqrt(var + epsilon)


# A written-out gradient: JAX's derivative of the formula above adds reductions over the rows
# (the transposes of the broadcasts of mean and variance) and more passes over the batch; this
# one needs two sums. ResNet-8 bench epoch 1.13-1.17x faster (in-process A/B, medians of 7).
# The sums stay `jnp.sum`: XLA fuses the elementwise product into the reduction, which measured
# 2-3% faster than a product with a row of ones over the materialized operand.
@custom_vjp(nondiff_argnums=(4,))
def _batch_norm_rows(rows, gamma, beta, weights, epsilon):
    mean, var, _, normalized = _row_statistics(rows, weights, epsilon)
    return normalized * gamma + beta, mean, var


def _batch_norm_rows_forward(rows, gamma, beta, weights, epsilon):
    mean, var, count, normalized = _row_statistics(rows, weights, epsilon)
    return (normalized * gamma + beta, mean, var), (rows, gamma, weights, mean, var, count)


def _batch_norm_rows_backward(epsilon, residuals, cotangents):
    """dx_i = gamma / s * (dy_i - w_i / n * (sum dy + xhat_i * sum dy xhat)) plus the
    moving statistics' own cotangents, where s = sqrt(var + eps), xhat = (x - mean) / s, w_i
    the row's weight (1, or 0 for padding) and n the weights' sum; the sums run over every
    row (y_j depends on the statistics for padded rows too)."""
    rows, gamma, weights, mean, var, count = residuals
    d_y, d_mean, d_var = cotangents
    inverse = jax.lax.rsqrt(var + epsilon)
    centered = rows - mean
    normalized = centered * inverse
    d_beta, d_gamma = _column_sums(d_y), _column_sums(d_y * normalized)
    share = 1.0 / count if weights is None else weights[:, None] / count
    d_rows = (gamma * inverse * (d_y - share * (d_beta + normalized * d_gamma))
              + share * (d_mean + 2.0 * centered * d_var))
    d_weights = None if weights is None else jnp.zeros_like(weights)
    return d_rows, d_gamma, d_beta, d_weights


_batch_norm_rows.defvjp(_batch_norm_rows_forward, _batch_norm_rows_backward)
