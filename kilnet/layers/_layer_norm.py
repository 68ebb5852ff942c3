"""Normalizations computed within each sample: LayerNormalization, GroupNormalization and
UnitNormalization.

Why apart from BatchNormalization: these keep no moving statistics and never look across the
batch, so padded rows of a last batch (sample_mask) cannot affect them and training and
inference compute the same thing. That is what makes them the normalizations of Transformers
and of small-batch models.

Axes follow Keras: they count the batch axis (axis=1 is the first axis of a sample, -1 the
last); normalizing over the batch axis is refused, since it is not a per-sample normalization.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import constraints, initializers, regularizers
from kilnet.layers._base import Layer


class _GammaBeta:
    """What LayerNormalization and GroupNormalization share after normalizing (a mixin of
    kilnet.layers.Layer): Keras's center / scale arguments, the gamma and beta weights (one
    shape, initialized, penalized and constrained as Keras's) and `y * gamma + beta`."""

    def _set_center_and_scale(self, center, scale, beta_initializer, gamma_initializer):
        self.center = _check_bool(center, "center")
        self.scale = _check_bool(scale, "scale")
        initializers.set_layer_initializers(
            self, beta_initializer=beta_initializer, gamma_initializer=gamma_initializer)

    @property
    def param_names(self):
        # Keras's weight order: gamma (with scale), then beta (with center).
        return (("gamma",) if self.scale else ()) + (("beta",) if self.center else ())

    def _gamma_beta_weights(self, rng, shape) -> dict:
        params = {}
        if self.scale:
            params["gamma"] = initializers.initial_values(self.gamma_initializer, rng, shape)
        if self.center:
            params["beta"] = initializers.initial_values(self.beta_initializer, rng, shape)
        return params

    def get_config(self):
        return constraints.serialize_into(regularizers.serialize_into(
            super().get_config(), self), self)

    def _scale_and_shift(self, y, params, weight_shape):
        """`y * gamma + beta`, the weights reshaped to `weight_shape` (size 1 on the axes
        they do not span)."""
        if self.scale:
            y = y * params["gamma"].reshape(weight_shape)
        if self.center:
            y = y + params["beta"].reshape(weight_shape)
        return y


class LayerNormalization(_GammaBeta, Layer):
    """Normalizes each sample over `axis` to mean 0 and variance 1, then scales by `gamma`
    and shifts by `beta` (weights spanning the normalized axes), as Keras's.

    `y = (x - mean) / sqrt(var + epsilon) * gamma + beta`, with the mean and the (biased)
    variance taken over `axis` of each sample.

    Args:
        axis: an axis or a list of axes to normalize over (counting the batch axis, which
            cannot be one of them). Default -1, the features.
        epsilon: added to the variance. Default 1e-3 (Keras's).
        center: learn `beta`. scale: learn `gamma`.
        beta_initializer, gamma_initializer: initializer names ("zeros", "ones").
        beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint: Keras's
            penalties and constraints of beta and gamma.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.LayerNormalization()
        >>> np.asarray(layer(np.array([[1.0, 2.0, 3.0]]))).astype(float).round(3).tolist()
        [[-1.224, 0.0, 1.224]]
        >>> [w.name for w in layer.weights]
        ['gamma', 'beta']
    """

    _supports_masking = True  # passes a sequence mask on, as Keras

    config_keys = ("axis", "epsilon", "center", "scale", "rms_scaling", "beta_initializer",
                   "gamma_initializer", "beta_regularizer", "gamma_regularizer", "beta_constraint",
                   "gamma_constraint")

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 rms_scaling=False, **kwargs):
        super().__init__(**kwargs)
        # As Keras: neither inputs nor weights are cast; statistics in float32 (apply).
        self.autocast = False
        set_gamma_beta_regularization(self, beta_regularizer, gamma_regularizer,
                                      beta_constraint, gamma_constraint)
        if rms_scaling:
            # Keras 3 deprecates it: it scales by the variance, not the root mean square.
            raise ValueError("LayerNormalization(rms_scaling=True) is not supported (Keras 3 "
                             "deprecates it); use layers.RMSNormalization, or leave "
                             "rms_scaling=False. Received: rms_scaling=True")
        self.rms_scaling = False   # Keras 3.15 writes it in the config
        self.axis = _check_axes(axis, "LayerNormalization")
        self.epsilon = _check_epsilon(epsilon)
        self._set_center_and_scale(center, scale, beta_initializer, gamma_initializer)

    def sample_output_shape(self, input_shape):
        _sample_axes(self.axis, input_shape)
        return tuple(input_shape)

    def init(self, rng, input_shape):
        # gamma and beta span the normalized axes, in increasing order (Keras sorts them).
        shape = tuple(input_shape[a - 1] for a in _sample_axes(self.axis, input_shape))
        if None in shape:
            raise ValueError(f"the normalized axes must have a known size. Received: an input "
                             f"of shape {tuple(input_shape)} and axis={self.axis!r}")
        return (self._gamma_beta_weights(rng, shape), {},
                self.sample_output_shape(input_shape))

    def apply(self, params, state, x, **_):
        regularizers.add_layer_penalties(self, params)
        x = _at_least_float32(x)  # 16-bit inputs: statistics in float32, as Keras
        axes = _sample_axes(self.axis, x.shape[1:])
        mean = x.mean(axis=axes, keepdims=True)
        var = jnp.square(x - mean).mean(axis=axes, keepdims=True)
        y = (x - mean) * jnp.reciprocal(jnp.sqrt(var + self.epsilon))
        # The weights have the normalized axes only: give them size-1 axes elsewhere.
        weight_shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
        return self._scale_and_shift(y, params, weight_shape), state


class GroupNormalization(_GammaBeta, Layer):
    """Splits the channels (`axis`) into `groups` and normalizes each group of each sample
    over the group's channels and every other axis of the sample; then a per-channel `gamma`
    and `beta`, as Keras's. groups=1 normalizes whole samples, groups=-1 (one channel per
    group) is instance normalization.

    Args:
        groups: the number of groups; it must divide the number of channels. Default 32.
        axis: the channels axis (counting the batch axis). Default -1.
        epsilon: added to the variance. Default 1e-3.
        center: learn `beta`. scale: learn `gamma`.
        beta_initializer, gamma_initializer: initializer names.
        beta_regularizer, gamma_regularizer, beta_constraint, gamma_constraint: as
            LayerNormalization's.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.GroupNormalization(groups=2)
        >>> x = np.array([[1.0, 3.0, 10.0, 30.0]])
        >>> np.asarray(layer(x)).astype(float).round(2).tolist()
        [[-1.0, 1.0, -1.0, 1.0]]
        >>> kilnet.layers.GroupNormalization(groups=3, name="norm")(np.zeros((1, 4)))
        Traceback (most recent call last):
        ...
        ValueError: Layer 'norm': groups=3 must divide the 4 channels of axis -1.
    """

    _supports_masking = True  # passes a sequence mask on, as Keras

    config_keys = ("groups", "axis", "epsilon", "center", "scale", "beta_initializer",
                   "gamma_initializer", "beta_regularizer", "gamma_regularizer", "beta_constraint",
                   "gamma_constraint")

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.autocast = False  # as LayerNormalization
        set_gamma_beta_regularization(self, beta_regularizer, gamma_regularizer,
                                      beta_constraint, gamma_constraint)
        if not _is_int(groups) or (groups < 1 and groups != -1):
            raise ValueError("groups must be a positive integer, or -1 for one channel per "
                             f"group (instance normalization). Received: groups={groups!r}")
        if not _is_int(axis):
            raise TypeError(f"GroupNormalization's axis must be an integer (the channels axis). "
                            f"Received: axis={axis!r}")
        self.groups = groups
        self.axis = _check_axes(axis, "GroupNormalization")
        self.epsilon = _check_epsilon(epsilon)
        self._set_center_and_scale(center, scale, beta_initializer, gamma_initializer)

    def _channels(self, input_shape) -> tuple[int, int]:
        """(the channels axis counted with the batch axis, the number of groups), checked."""
        (axis,) = _sample_axes(self.axis, input_shape)
        channels = input_shape[axis - 1]
        if channels is None:
            raise ValueError(f"the channels axis ({self.axis}) must have a known size. "
                             f"Received: an input of shape {tuple(input_shape)}")
        groups = channels if self.groups == -1 else self.groups
        if channels % groups:
            raise ValueError(f"groups={self.groups} must divide the {channels} channels of "
                             f"axis {self.axis}.")
        return axis, groups

    def sample_output_shape(self, input_shape):
        self._channels(input_shape)
        return tuple(input_shape)

    def init(self, rng, input_shape):
        axis, _ = self._channels(input_shape)
        shape = (input_shape[axis - 1],)
        return (self._gamma_beta_weights(rng, shape), {},
                self.sample_output_shape(input_shape))

    def apply(self, params, state, x, **_):
        regularizers.add_layer_penalties(self, params)
        x = _at_least_float32(x)  # 16-bit inputs: statistics in float32, as Keras
        axis, groups = self._channels(x.shape[1:])
        channels = x.shape[axis]
        # Split the channels axis into (groups, channels per group); statistics are taken
        # over everything but the batch and the group axes.
        split = x.shape[:axis] + (groups, channels // groups) + x.shape[axis + 1:]
        grouped = x.reshape(split)
        axes = tuple(a for a in range(1, grouped.ndim) if a != axis)
        mean = grouped.mean(axis=axes, keepdims=True)
        var = jnp.square(grouped - mean).mean(axis=axes, keepdims=True)
        y = ((grouped - mean) * jnp.reciprocal(jnp.sqrt(var + self.epsilon))).reshape(x.shape)
        weight_shape = [channels if a == axis else 1 for a in range(x.ndim)]
        return self._scale_and_shift(y, params, weight_shape), state


class UnitNormalization(Layer):
    """Scales each sample to unit L2 norm over `axis`: `y = x / ||x||`, as Keras's (a norm
    below 1e-12 is taken as 1e-12, so zeros stay zeros). No weights.

    Args:
        axis: an axis or a list of axes (counting the batch axis). Default -1.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> y = kilnet.layers.UnitNormalization()(np.array([[3.0, 4.0]]))
        >>> np.asarray(y).astype(float).round(3).tolist()
        [[0.6, 0.8]]
    """

    _supports_masking = True  # passes a sequence mask on, as Keras

    config_keys = ("axis",)

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = _check_axes(axis, "UnitNormalization")

    def sample_output_shape(self, input_shape):
        _sample_axes(self.axis, input_shape)
        return tuple(input_shape)

    def apply(self, params, state, x, **_):
        axes = _sample_axes(self.axis, x.shape[1:])
        square_sum = jnp.square(x).sum(axis=axes, keepdims=True)
        # Keras: x * min(1 / norm, 1e12), i.e. the norm is floored at 1e-12.
        return x * jnp.minimum(jax.lax.rsqrt(square_sum), 1e12), state


class RMSNormalization(Layer):
    """Root-mean-square normalization (Zhang & Sennrich, 2019), as Keras's RMSNormalization:
    `y = x / sqrt(mean(x**2 over axis) + epsilon) * scale`, computed in float32 at least (as
    Keras does under a 16-bit policy) and returned in the input's dtype.

    Args:
        axis: an axis or a list of axes (counting the batch axis) to normalize over. Default -1.
        epsilon: added to the mean square. Default 1e-6.

    Weights: `scale`, ones, of the normalized axes' shape. With axes that are not the last
    ones, the scale is laid along those axes (Keras multiplies it against the last axes).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> y = kilnet.layers.RMSNormalization(epsilon=0.0)(np.array([[3.0, 4.0]]))
        >>> np.asarray(y).astype(float).round(4).tolist()
        [[0.8485, 1.1314]]
    """

    config_keys = ("axis", "epsilon")

    def __init__(self, axis=-1, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.axis = _check_axes(axis, "RMSNormalization")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon < 0:
            raise ValueError(f"epsilon must be a number >= 0. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)

    @property
    def param_names(self):
        return ("scale",)

    def sample_output_shape(self, input_shape):
        _sample_axes(self.axis, input_shape)
        return tuple(input_shape)

    def init(self, rng, input_shape):
        axes = _sample_axes(self.axis, input_shape)
        shape = tuple(input_shape[a - 1] for a in axes)
        if None in shape:
            raise ValueError(f"RMSNormalization needs the normalized axes' sizes known. "
                             f"Received: input of shape {(None,) + tuple(input_shape)}")
        return {"scale": np.ones(shape, np.float32)}, {}, tuple(input_shape)

    def apply(self, params, state, x, **_):
        x = jnp.asarray(x)
        axes = _sample_axes(self.axis, x.shape[1:])
        wide = x.astype(jnp.result_type(x.dtype, jnp.float32))
        inverse_rms = jax.lax.rsqrt(jnp.mean(jnp.square(wide), axis=axes, keepdims=True)
                                    + self.epsilon)
        placed = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
        scale = jnp.reshape(params["scale"].astype(wide.dtype), placed)
        return (wide * inverse_rms * scale).astype(x.dtype), state


# -- argument checks -------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_axes(axis, layer: str):
    """An int or a list of ints, kept as given (a tuple becomes a list, as Keras keeps it)."""
    if _is_int(axis):
        if axis == 0:
            raise ValueError(f"{layer} normalizes within each sample: axis 0 is the batch axis. "
                             f"Received: axis={axis!r}")
        return axis
    if isinstance(axis, (list, tuple)) and axis and all(_is_int(a) for a in axis):
        if 0 in axis:
            raise ValueError(f"{layer} normalizes within each sample: axis 0 is the batch axis. "
                             f"Received: axis={list(axis)!r}")
        return list(axis)
    raise TypeError(f"{layer}'s axis must be an integer or a non-empty list of integers. "
                    f"Received: axis={axis!r}")


def _sample_axes(axis, sample_shape) -> tuple[int, ...]:
    """The axes (counted with the batch axis, sorted) for a sample of `sample_shape`."""
    rank = len(sample_shape) + 1
    resolved = []
    for a in (axis if isinstance(axis, list) else [axis]):
        position = a if a >= 0 else rank + a
        if not 1 <= position < rank:
            raise ValueError(f"axis {a} is out of bounds for inputs of shape "
                             f"{(None,) + tuple(sample_shape)} (the batch axis 0 excluded). "
                             f"Received: axis={axis!r}")
        resolved.append(position)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"axis names the same axis twice. Received: axis={axis!r}")
    return tuple(sorted(resolved))


def _check_epsilon(epsilon) -> float:
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon >= 0:
        raise ValueError(f"epsilon must be a non-negative number. Received: epsilon={epsilon!r}")
    return float(epsilon)


def _check_bool(value, argument: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{argument} must be True or False. Received: {argument}={value!r}")
    return value


def set_gamma_beta_regularization(layer, beta_regularizer, gamma_regularizer,
                                  beta_constraint, gamma_constraint) -> None:
    """A normalization's Keras arguments for its gamma and beta: penalties (added by
    regularizers.add_layer_penalties) and constraints (applied after each update).

    Example:
        >>> from kilnet import layers
        >>> norm = layers.LayerNormalization(gamma_constraint="non_neg")
        >>> norm.constraint_for("gamma")
        NonNeg()
    """
    regularizers.set_layer_regularizers(layer, beta_regularizer=beta_regularizer,
                                        gamma_regularizer=gamma_regularizer)
    constraints.set_layer_constraints(layer, beta_constraint=beta_constraint,
                                      gamma_constraint=gamma_constraint)


def _at_least_float32(x):
    """16-bit floating inputs promoted to float32 (mixed precision: the layer's output is cast
    back to its compute dtype by Layer.autocast_apply)."""
    if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
        return x.astype(jnp.float32)
    return x
