"""Activation layers with arguments: ReLU, LeakyReLU, PReLU, ELU, Softmax, Identity.

Why layers and not only `Activation("relu")`: Keras code builds these with arguments an
activation name cannot carry (a ReLU capped at 6, a LeakyReLU slope, a learned PReLU slope, a
softmax over another axis), and saved Keras models name them. Each is elementwise (Softmax:
along one axis), keeps the input's shape and passes a sequence mask on, as Keras.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kilnet import constraints, initializers, regularizers
from kilnet.activations import relu
from kilnet.layers._base import Layer


def _number(value, argument: str, *, allow_none=False, minimum=0.0) -> float | None:
    """A number >= minimum (Keras refuses negative ReLU arguments)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or value < minimum:
        raise ValueError(f"{argument} must be a number >= {minimum}. "
                         f"Received: {argument}={value!r}")
    return float(value)


class ReLU(Layer):
    """Rectified linear unit with Keras's options: `max_value` caps the output,
    `negative_slope` is the slope below `threshold`.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.ReLU(max_value=6.0)(np.array([[-1.0, 3.0, 9.0]]))).tolist()
        [[0.0, 3.0, 6.0]]
    """

    _supports_masking = True
    config_keys = ("max_value", "negative_slope", "threshold")

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = _number(max_value, "max_value", allow_none=True)
        self.negative_slope = _number(negative_slope, "negative_slope")
        self.threshold = _number(threshold, "threshold")

    def apply(self, params, state, x, **_):
        return relu(x, self.negative_slope, self.max_value, self.threshold), state


class LeakyReLU(Layer):
    """`x` for x >= 0, `negative_slope * x` below (Keras's default slope 0.3).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.LeakyReLU(0.5)(np.array([[-2.0, 3.0]]))).tolist()
        [[-1.0, 3.0]]
    """

    _supports_masking = True
    config_keys = ("negative_slope",)

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:  # Keras 2's name, still accepted by Keras 3
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        self.negative_slope = _number(negative_slope, "negative_slope")

    def apply(self, params, state, x, **_):
        return jnp.where(x >= 0, x, self.negative_slope * x).astype(x.dtype), state


class PReLU(Layer):
    """Leaky ReLU with a learned slope `alpha` per input element (shared along
    `shared_axes`, counted with the batch axis as 0, e.g. shared_axes=[1, 2] for one slope per
    channel of an image).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layer = layers.PReLU(alpha_initializer="ones", shared_axes=[1])
        >>> np.asarray(layer(np.array([[[-2.0, 3.0]]]))).tolist()
        [[[-2.0, 3.0]]]
        >>> [w.shape for w in layer.get_weights()]
        [(1, 2)]
    """

    _supports_masking = True
    param_names = ("alpha",)
    config_keys = ("alpha_initializer", "alpha_regularizer", "alpha_constraint", "shared_axes")

    def __init__(self, alpha_initializer="zeros", alpha_regularizer=None, alpha_constraint=None,
                 shared_axes=None, **kwargs):
        super().__init__(**kwargs)
        initializers.set_layer_initializers(self, alpha_initializer=alpha_initializer)
        if shared_axes is not None and not isinstance(shared_axes, (list, tuple)):
            shared_axes = [shared_axes]
        if shared_axes is not None and not all(
                isinstance(a, int) and not isinstance(a, bool) and a >= 1 for a in shared_axes):
            raise ValueError("shared_axes must be None or a list of axes >= 1 (axis 0 is the "
                             f"batch). Received: shared_axes={shared_axes!r}")
        self.shared_axes = None if shared_axes is None else list(shared_axes)
        regularizers.set_layer_regularizers(self, alpha_regularizer=alpha_regularizer)
        constraints.set_layer_constraints(self, alpha_constraint=alpha_constraint)

    def get_config(self):
        config = regularizers.serialize_into(super().get_config(), self)
        return constraints.serialize_into(config, self)

    def sample_output_shape(self, input_shape):
        for axis in self.shared_axes or ():
            if axis > len(input_shape):
                raise ValueError(f"PReLU shared_axes={self.shared_axes} names an axis beyond "
                                 f"an input of shape {(None,) + tuple(input_shape)}")
        # A shared axis has one alpha entry, so it may be variable (Keras allows it too).
        if any(d is None and axis + 1 not in (self.shared_axes or ())
               for axis, d in enumerate(input_shape)):
            raise ValueError("PReLU needs every axis of its input known but shared_axes (its "
                             "alpha has one entry per element). Received: an input of shape "
                             f"{(None,) + tuple(input_shape)}")
        return input_shape

    def init(self, rng, input_shape):
        self.sample_output_shape(input_shape)
        shape = [1 if axis + 1 in (self.shared_axes or ()) else d
                 for axis, d in enumerate(input_shape)]
        alpha = initializers.initial_values(self.alpha_initializer, rng, tuple(shape))
        return {"alpha": alpha}, {}, input_shape

    def apply(self, params, state, x, **_):
        regularizers.add_layer_penalties(self, params)
        # relu(x) - alpha * relu(-x), as Keras: gradient 0 at x = 0 (maximum/minimum split
        # it into halves there)
        return jax.nn.relu(x) - params["alpha"] * jax.nn.relu(-x), state


class ELU(Layer):
    """Exponential linear unit: `x` for x > 0, `alpha * (exp(x) - 1)` below.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> [round(float(v), 4) for v in np.asarray(layers.ELU()(np.array([[-1.0, 2.0]])))[0]]
        [-0.6321, 2.0]
    """

    _supports_masking = True
    config_keys = ("alpha",)

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise ValueError(f"alpha must be a number. Received: alpha={alpha!r}")
        self.alpha = float(alpha)

    def get_config(self):
        # Keras's ELU has no get_config of its own: its automatic one lists the constructor's
        # arguments after the name, before the base layer's keys
        config = super().get_config()
        return {"name": config.pop("name"), "alpha": config.pop("alpha"), **config}

    def apply(self, params, state, x, **_):
        # JAX's elu, as Keras: gradient alpha at 0 (the negative branch's), and no overflow
        # in the unused branch for large x
        return jax.nn.elu(x, alpha=self.alpha).astype(x.dtype), state


class Softmax(Layer):
    """Softmax along `axis` (an int or a list of ints; -1: the last axis).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.Softmax()(np.array([[0.0, 0.0]]))).tolist()
        [[0.5, 0.5]]
    """

    _supports_masking = True
    config_keys = ("axis",)

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if not axes or not all(isinstance(a, int) and not isinstance(a, bool) and a != 0
                               for a in axes):
            raise ValueError("axis must be an int or a list of ints other than 0 (the batch "
                             f"axis). Received: axis={axis!r}")
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else axis

    def sample_output_shape(self, input_shape):
        rank = len(input_shape) + 1
        for a in (self.axis if isinstance(self.axis, list) else [self.axis]):
            if not -rank < a < rank or a % rank == 0:
                raise ValueError(f"Softmax axis={self.axis} is not an axis of a sample of an "
                                 f"input of shape {(None,) + tuple(input_shape)}")
        return input_shape

    def apply(self, params, state, x, *, mask=None, **_):
        """The softmax of `x`; with a `mask` (broadcastable to x: True or > 0.5 where a value
        counts), the masked positions take no share and are 0 in the output, as Keras's
        (an axis wholly masked is all zeros, not uniform)."""
        self.sample_output_shape(tuple(x.shape[1:]))
        axis = tuple(self.axis) if isinstance(self.axis, list) else self.axis
        if mask is None:
            return jax.nn.softmax(x, axis=axis), state
        keep = _broadcastable_mask(mask, x)
        # Keras's large negative number: -1e9, or -3e4 where float16 cannot hold it
        masked = jnp.where(keep, x, -3e4 if x.dtype == jnp.float16 else -1e9)
        return jnp.where(keep, jax.nn.softmax(masked, axis=axis), 0.0).astype(x.dtype), state


class Identity(Layer):
    """Returns its input unchanged (a placeholder in a model's structure).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.Identity()(np.array([[1.0, -2.0]]))).tolist()
        [[1.0, -2.0]]
    """

    _supports_masking = True

    def apply(self, params, state, x, **_):
        return x, state


def _broadcastable_mask(mask, x):
    """Softmax's mask as booleans (a float mask counts where > 0.5), checked to broadcast to
    `x` as Keras checks it: no more axes, each trailing axis 1 or x's."""
    mask = jnp.asarray(mask)
    shape_ok = mask.ndim <= x.ndim and all(
        m in (1, i) for m, i in zip(mask.shape[::-1], x.shape[::-1]))
    if not shape_ok:
        raise ValueError("Softmax's mask must broadcast to its inputs (no more axes, each "
                         "trailing axis 1 or the input's). Received: inputs.shape="
                         f"{tuple(x.shape)}, mask.shape={tuple(mask.shape)}. Pass a mask "
                         "shaped like the inputs or with axes of size 1 to broadcast; a "
                         "sequence mask of an earlier layer (Masking, Embedding(mask_zero="
                         "True)) reaches Softmax as its mask too, as in Keras: use "
                         "Dense(..., activation='softmax') or ops.softmax there instead.")
    return mask if mask.dtype == jnp.bool_ else mask > 0.5
