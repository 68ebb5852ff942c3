"""Max and average pooling (2-D, channels-last) and global average pooling.

Pooling is written with strided slices (or a reshape when windows tile the image), not
`lax.reduce_window`, for the same reason convolutions are: XLA's CPU windowed ops are slow
inside the training loop.
"""

from __future__ import annotations

import jax.numpy as jnp

from kilnet.layers._base import Layer, as_pair, check_padding, set_untracked
from kilnet.layers._conv import output_size, pad_same, window_slices
from kilnet.layers._conv1d import as_single, check_channels_last


class _Pooling2D(Layer):
    config_keys = ("pool_size", "strides", "padding")

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError("Only data_format='channels_last' is supported. "
                             f"Received: data_format={data_format!r}")
        self.pool_size = as_pair(pool_size, "pool_size")
        self.strides = as_pair(strides if strides is not None else self.pool_size, "strides")
        self.padding = check_padding(padding)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects (height, width, channels) inputs. "
                f"Received an input of shape {input_shape}."
            )
        h, w, c = input_shape
        ho = output_size(h, self.pool_size[0], self.strides[0], self.padding)
        wo = output_size(w, self.pool_size[1], self.strides[1], self.padding)
        if ho < 1 or wo < 1:
            raise ValueError(f"pool_size={self.pool_size} is larger than the input {input_shape}.")
        return (ho, wo, c)

    def _tiles(self, x):
        """Windows that exactly tile the image: a reshape is the cheapest gather."""
        (ph, pw), (n, h, w, c) = self.pool_size, x.shape
        ho, wo = h // ph, w // pw
        return x[:, :ho * ph, :wo * pw, :].reshape(n, ho, ph, wo, pw, c)

    def _tiling(self):
        return self.padding == "valid" and self.pool_size == self.strides


def first_maximum(views):
    """The elementwise maximum of same-shaped views, whose gradient goes to the first view
    holding it, as Keras's max pooling gives each window's gradient to its first maximum (a
    maximum or a reduction would share it among ties). NaN wins, so it propagates.

    Elementwise selections, not a reduction over a window axis: measured in a loop (2-core AMD
    EPYC), the MNIST convnet's first pooling, forward and gradient, 6.5-7.2 ms as a reduction
    over (2, 2) tiles against 5.2-5.8 ms; its second 1.6-2.0 against 0.7-0.9 ms. The whole
    convnet's epoch: 1.03-1.05x in three in-process A/Bs of 9-11 alternations, 0.93x in a fourth.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from kilnet.layers._pooling import first_maximum
        >>> jax.grad(lambda a, b: first_maximum([a, b]), (0, 1))(1.0, 1.0)
        (Array(1., dtype=float32, weak_type=True), Array(0., dtype=float32, weak_type=True))
    """
    out = views[0]
    for view in views[1:]:
        out = jnp.where((view > out) | jnp.isnan(view), view, out)
    return out


class MaxPooling2D(_Pooling2D):
    def apply(self, params, state, x, **_):
        if self.padding == "same":
            x = pad_same(x, self.pool_size, self.strides, value=-jnp.inf)
        return first_maximum(window_slices(x, self.pool_size, self.strides)), state


class AveragePooling2D(_Pooling2D):
    def apply(self, params, state, x, **_):
        if self._tiling():
            return self._tiles(x).mean(axis=(2, 4)), state
        if self.padding == "valid":
            return sum(window_slices(x, self.pool_size, self.strides)) / (
                self.pool_size[0] * self.pool_size[1]), state
        # Keras averages 'same' windows over the real pixels only, not the padding.
        total = sum(window_slices(pad_same(x, self.pool_size, self.strides), self.pool_size,
                                  self.strides))
        ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
        count = sum(window_slices(pad_same(ones, self.pool_size, self.strides), self.pool_size,
                                  self.strides))
        return total / count, state


class GlobalAveragePooling2D(Layer):
    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError("GlobalAveragePooling2D expects (height, width, channels) inputs. "
                             f"Received an input of shape {input_shape}.")
        return (input_shape[-1],)

    def apply(self, params, state, x, **_):
        return x.mean(axis=(1, 2)), state


# -- 1-D pooling over sequences (steps, channels), and global max pooling ------------------------
# A 1-D pooling is its 2-D twin on a (steps, 1) image: the same strided slices and the same
# 'same' rules, so the two cannot drift apart.
class _Pooling1D(Layer):
    config_keys = ("pool_size", "strides", "padding", "data_format")
    _twin_type: type = _Pooling2D

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_channels_last(data_format)
        self.pool_size = as_single(pool_size, "pool_size")
        self.strides = as_single(strides if strides is not None else self.pool_size,
                                  "strides")
        self.padding = check_padding(padding)
        set_untracked(self, "_twin", self._twin_type(
            pool_size=(self.pool_size[0], 1), strides=(self.strides[0], 1),
            padding=self.padding))

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{type(self).__name__} expects (steps, channels) inputs. "
                             f"Received an input of shape {tuple(input_shape)}.")
        steps = input_shape[0]
        if steps is not None:
            steps = output_size(steps, self.pool_size[0], self.strides[0], self.padding)
            if steps < 1:
                raise ValueError(f"pool_size={self.pool_size[0]} is longer than the "
                                 f"{input_shape[0]} steps of the input.")
        return (steps, input_shape[1])

    def apply(self, params, state, x, **_):
        y, _ = self._twin.apply({}, {}, x[:, :, None, :])
        return y[:, :, 0, :], state


class MaxPooling1D(_Pooling1D):
    """The maximum over windows of `pool_size` steps, every `strides` steps (default:
    pool_size); padding "valid" or "same" (output ceil(steps / strides)).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.array([[[1.0], [3.0], [2.0], [5.0], [4.0]]])
        >>> kilnet.layers.MaxPooling1D(2)(x)[0, :, 0].tolist()
        [3.0, 5.0]
        >>> kilnet.layers.MaxPooling1D(2, padding="same")(x)[0, :, 0].tolist()
        [3.0, 5.0, 4.0]
    """

    _twin_type = MaxPooling2D


class AveragePooling1D(_Pooling1D):
    """The mean over windows of `pool_size` steps, every `strides` steps (default:
    pool_size); with padding "same" a window at the edge averages its real steps only.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.array([[[1.0], [3.0], [2.0], [5.0], [4.0]]])
        >>> kilnet.layers.AveragePooling1D(2, padding="same")(x)[0, :, 0].tolist()
        [2.0, 3.5, 4.0]
    """

    _twin_type = AveragePooling2D


class _GlobalPooling(Layer):
    config_keys = ("data_format", "keepdims")
    _axes: tuple = ()

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_channels_last(data_format)
        if not isinstance(keepdims, bool):
            raise ValueError(f"keepdims must be True or False. Received: keepdims={keepdims!r}")
        self.keepdims = keepdims

    def compute_output_shape(self, input_shape):
        rank = len(self._axes) + 1
        if len(input_shape) != rank:
            what = "(steps, channels)" if rank == 2 else "(height, width, channels)"
            raise ValueError(f"{type(self).__name__} expects {what} inputs. Received an input "
                             f"of shape {tuple(input_shape)}.")
        return ((1,) * len(self._axes) if self.keepdims else ()) + (input_shape[-1],)

    def apply(self, params, state, x, **_):
        return self._reduce(x, axis=self._axes, keepdims=self.keepdims), state


class GlobalAveragePooling1D(_GlobalPooling):
    """The mean over the steps of each channel: (steps, channels) -> (channels,), or
    (1, channels) with keepdims=True. Any number of steps.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.array([[[1.0, 0.0], [3.0, 4.0]]])
        >>> kilnet.layers.GlobalAveragePooling1D()(x).tolist()
        [[2.0, 2.0]]
    """

    _axes = (1,)
    _reduce = staticmethod(jnp.mean)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.supports_masking = True  # a masked mean over the steps, as Keras

    def compute_mask(self, inputs, previous_mask=None):
        return None  # the steps are gone

    def apply(self, params, state, x, *, mask=None, **_):
        if mask is None:
            return super().apply(params, state, x)
        weight = mask.astype(x.dtype)[:, :, None]
        total = jnp.sum(x * weight, axis=1, keepdims=self.keepdims)
        return total / jnp.sum(weight, axis=1, keepdims=self.keepdims), state


class GlobalMaxPooling1D(_GlobalPooling):
    """The maximum over the steps of each channel: (steps, channels) -> (channels,), or
    (1, channels) with keepdims=True. Any number of steps.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.array([[[1.0, 0.0], [3.0, 4.0], [2.0, -1.0]]])
        >>> kilnet.layers.GlobalMaxPooling1D()(x).tolist()
        [[3.0, 4.0]]
    """

    _axes = (1,)
    _reduce = staticmethod(jnp.max)


class GlobalMaxPooling2D(_GlobalPooling):
    """The maximum over the pixels of each channel: (height, width, channels) -> (channels,),
    or (1, 1, channels) with keepdims=True.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.arange(12.0).reshape(1, 2, 3, 2)
        >>> kilnet.layers.GlobalMaxPooling2D(keepdims=True)(x).shape
        (1, 1, 1, 2)
    """

    _axes = (1, 2)
    _reduce = staticmethod(jnp.max)
