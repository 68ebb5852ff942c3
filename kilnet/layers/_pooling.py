"""Max and average pooling (2-D, channels-last) and global average pooling.

Pooling is written with strided slices (or a reshape when windows tile the image), not
`lax.reduce_window`, for the same reason convolutions are: XLA's CPU windowed ops are slow
inside the training loop. Max pooling's gradient is written out (`window_maximum`): JAX's
derivative of strided slices pads each one with zeros, and XLA sums those padded arrays slowly.
"""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
import numpy as np

from kilnet._custom_gradients import custom_jvp, custom_vjp
from kilnet.layers._base import Layer, as_pair, check_channels_last, check_padding, set_untracked
from kilnet._kernels.conv import output_size, pad_same, too_small, window_slices
from kilnet.layers._conv_base import as_single


class _Pooling2D(Layer):
    config_keys = ("pool_size", "padding", "strides", "data_format")   # Keras's order

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_channels_last(data_format)
        self.pool_size = as_pair(pool_size, "pool_size")
        self.strides = as_pair(strides if strides is not None else self.pool_size, "strides")
        self.padding = check_padding(padding)

    def sample_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects (height, width, channels) inputs. "
                f"Received an input of shape {input_shape}."
            )
        h, w, c = input_shape
        ho = output_size(h, self.pool_size[0], self.strides[0], self.padding)
        wo = output_size(w, self.pool_size[1], self.strides[1], self.padding)
        if too_small(ho, wo):
            raise ValueError(f"pool_size={self.pool_size} is larger than the input {input_shape}.")
        return (ho, wo, c)

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


def window_maximum(x, pool_size, strides):
    """Max pooling of channels-last `x` (padding already added) by the tiled form when the
    windows tile it, else by the strided one. The gradient goes to each window's first maximum.

    Example:
        >>> import jax.numpy as jnp
        >>> from kilnet.layers._pooling import window_maximum
        >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        >>> window_maximum(x, (2, 2), (2, 2))[0, :, :, 0].tolist()
        [[5.0, 7.0], [13.0, 15.0]]
        >>> window_maximum(x, (3, 3), (1, 1))[0, :, :, 0].tolist()
        [[10.0, 11.0], [14.0, 15.0]]
    """
    if tuple(pool_size) == tuple(strides):
        return tiled_maximum(x, pool_size)
    return strided_maximum(x, pool_size, strides)


def tiled_maximum(x, pool_size):
    """Max pooling of channels-last `x` (batch, *spatial, channels) over windows of
    `pool_size` that tile it (strides equal to the window, as `MaxPooling2D(2)`); a remainder
    that fills no window is dropped, as padding "valid" does. Each window's gradient goes to its
    first maximum, as `first_maximum`'s does.

    The same numbers as `first_maximum` over the window's views, with a gradient written as one
    elementwise pass: each input element takes its window's output gradient if it is that
    window's first maximum. JAX's own gradient of the strided views is a sum of one zero-padded
    array per window position, and XLA recomputes the incoming gradient (the MNIST convnet's
    Dropout mask hash) in each: measured in a loop (2-core Intel Xeon, batch 128), forward and
    gradient of the convnet's second pooling with its Dropout 5.0-7.1 ms against 0.8-1.3 ms,
    its first pooling 2.2-3.5 against 1.7-2.1 ms; the whole convnet's training step 36.8
    against 29.5 ms (1.25x, in-process A/B of 8 alternated epochs). The derivative is a custom
    JVP, not a custom VJP, so forward-mode differentiation still works.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from kilnet.layers._pooling import tiled_maximum
        >>> x = jnp.array([[1.0, 3.0, 3.0, 0.0, 9.0]]).reshape(1, 5, 1)
        >>> tiled_maximum(x, (2,)).ravel().tolist()
        [3.0, 3.0]
        >>> jax.grad(lambda x: tiled_maximum(x, (2,)).sum())(x).ravel().tolist()
        [0.0, 1.0, 1.0, 0.0, 0.0]
    """
    pool_size = tuple(pool_size)
    return _maximum_of_tiles(_whole_windows(x, pool_size), pool_size)


def _whole_windows(x, pool_size):
    """x without the end rows (columns, ...) that fill no window of `pool_size`."""
    return x[(slice(None),) + tuple(slice(0, size - size % window)
                                    for size, window in zip(x.shape[1:-1], pool_size))]


@custom_jvp(nondiff_argnums=(1,), eager_compiled=True)   # eager: one call, not one a tile
def _maximum_of_tiles(x, pool_size):
    return first_maximum(_tile_views(_tiles(x, pool_size), pool_size))


@_maximum_of_tiles.defjvp
def _maximum_of_tiles_jvp(pool_size, primals, tangents):
    # The tangent is a masked sum over each window, linear in the tangent, so JAX transposes
    # it into the one-pass gradient: the output gradient broadcast over the window, masked.
    (x,), (x_dot,) = primals, tangents
    out, position = _first_maximum_and_position(_tile_views(_tiles(x, pool_size), pool_size))
    window_axes = tuple(range(2, 2 + 2 * len(pool_size), 2))
    codes = jnp.arange(math.prod(pool_size), dtype=position.dtype).reshape(
        _interleave_windows(pool_size, (1,) * len(pool_size)))
    winner = jnp.expand_dims(position, window_axes) == codes
    out_dot = jnp.where(winner, _tiles(x_dot, pool_size), jnp.zeros((), x_dot.dtype))
    return out, out_dot.sum(axis=window_axes)


def _tiles(x, pool_size):
    """(batch, *spatial, channels) -> (batch, s0 / p0, p0, s1 / p1, p1, ..., channels)."""
    counts = tuple(size // window for size, window in zip(x.shape[1:-1], pool_size))
    return x.reshape(_interleave_windows(pool_size, counts, x.shape[0], x.shape[-1]))


def _interleave_windows(pool_size, counts, batch=1, channels=1):
    return (batch,) + sum(zip(counts, pool_size), ()) + (channels,)


def _tile_views(tiles, pool_size):
    """Each window position's view of `_tiles`, in row-major order of the offsets."""
    return [tiles[(slice(None),) + sum(((slice(None), o) for o in offsets), ())]
            for offsets in itertools.product(*(range(window) for window in pool_size))]


def _first_maximum_and_position(views):
    """Each window's first maximum (NaN wins) and its position in the window: the index of
    the first view holding it."""
    dtype = jnp.int8 if len(views) <= 127 else jnp.int32
    out, position = views[0], jnp.zeros(views[0].shape, dtype)
    for code, view in enumerate(views[1:], 1):
        take = (view > out) | jnp.isnan(view)
        out = jnp.where(take, view, out)
        position = jnp.where(take, jnp.asarray(code, dtype), position)
    return out, position


def strided_maximum(x, pool_size, strides):
    """Max pooling of channels-last `x` (batch, *spatial, channels; padding already added)
    over windows of `pool_size` every `strides`, any overlap or gap; each window's gradient goes
    to its first maximum, as `first_maximum`'s does.

    The gradient is a custom VJP written one phase of the input grid at a time (the input
    positions equal modulo the strides): a window position's gradient lands on one phase,
    shifted by a whole number of steps, so each phase is a sum of shifted, masked copies of
    the output gradient, and the phases interleave into the input's gradient. JAX's derivative
    of the strided views is one zero-padded array with interior padding per window position,
    each summed over the whole input. Measured in a loop (2-core Intel Xeon), forward and
    gradient of `MaxPooling2D(3, strides=2, padding="same")`: input (128, 32, 32, 64)
    28.4 -> 20.9 ms, (32, 90, 90, 64) 62.9 -> 41.3 ms; XLA's own `reduce_window` with its
    select-and-scatter gradient took 131 ms on the first (valid padding). Forward-mode
    differentiation is not available through it (as through the convolutions on CPU).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from kilnet.layers._pooling import strided_maximum
        >>> x = jnp.array([1.0, 3.0, 2.0, 5.0, 4.0]).reshape(1, 5, 1)
        >>> strided_maximum(x, (3,), (2,)).ravel().tolist()
        [3.0, 5.0]
        >>> jax.grad(lambda x: strided_maximum(x, (3,), (2,)).sum())(x).ravel().tolist()
        [0.0, 1.0, 0.0, 1.0, 0.0]
    """
    return _strided_maximum(x, tuple(pool_size), tuple(strides))


def _strided_views(x, pool_size, strides):
    """Each window position's strided view of x, in row-major order of the offsets."""
    counts = [(size - window) // step + 1
              for size, window, step in zip(x.shape[1:-1], pool_size, strides)]
    return [x[(slice(None),) + tuple(slice(o, o + (n - 1) * step + 1, step)
                                     for o, n, step in zip(offsets, counts, strides))]
            for offsets in itertools.product(*(range(window) for window in pool_size))]


@custom_vjp(nondiff_argnums=(1, 2), eager_compiled=True)
def _strided_maximum(x, pool_size, strides):
    return first_maximum(_strided_views(x, pool_size, strides))


def _strided_maximum_forward(x, pool_size, strides):
    out, position = _first_maximum_and_position(_strided_views(x, pool_size, strides))
    # A zero-size array whose shape carries the input's spatial sizes to the backward pass.
    return out, (position, jnp.zeros(x.shape[1:-1] + (0,), x.dtype))


def _strided_maximum_backward(pool_size, strides, residuals, g):
    position, sizes = residuals
    spatial = sizes.shape[:-1]
    phase_counts = tuple(-(-size // step) for size, step in zip(spatial, strides))
    phases = {}
    for phase in itertools.product(*(range(step) for step in strides)):
        total = jnp.zeros((g.shape[0],) + phase_counts + (g.shape[-1],), g.dtype)
        for offsets in itertools.product(*(range(r, window, step) for r, window, step
                                           in zip(phase, pool_size, strides))):
            code = int(np.ravel_multi_index(offsets, pool_size))
            shifts = [o // step for o, step in zip(offsets, strides)]
            total = total + jnp.pad(
                jnp.where(position == code, g, jnp.zeros((), g.dtype)),
                [(0, 0)] + [(shift, count - n - shift) for shift, count, n
                            in zip(shifts, phase_counts, g.shape[1:-1])] + [(0, 0)])
        phases[phase] = total
    grid = _interleave_phases(phases, strides, ())
    whole = grid.reshape((g.shape[0],) + tuple(c * step for c, step in zip(phase_counts, strides))
                         + (g.shape[-1],))
    return (whole[(slice(None),) + tuple(slice(0, size) for size in spatial)],)


def _interleave_phases(phases, strides, prefix):
    """The phases stacked as (batch, count0, stride0, count1, stride1, ..., channels)."""
    depth = len(prefix)
    if depth == len(strides):
        return phases[prefix]
    return jnp.stack([_interleave_phases(phases, strides, prefix + (r,))
                      for r in range(strides[depth])], axis=2 + depth)


_strided_maximum.defvjp(_strided_maximum_forward, _strided_maximum_backward)


class MaxPooling2D(_Pooling2D):
    def apply(self, params, state, x, **_):
        if self.padding == "same":
            x = pad_same(x, self.pool_size, self.strides, value=-jnp.inf)
        return window_maximum(x, self.pool_size, self.strides), state


class AveragePooling2D(_Pooling2D):
    def apply(self, params, state, x, **_):
        if self._tiling():
            # Windows that exactly tile the image: a reshape is the cheapest gather.
            return _tiles(_whole_windows(x, self.pool_size), self.pool_size).mean(
                axis=(2, 4)), state
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


# -- 1-D pooling over sequences (steps, channels), and global max pooling ------------------------
# A 1-D pooling is its 2-D twin on a (steps, 1) image: the same strided slices and the same
# 'same' rules, so the two cannot drift apart.
class _Pooling1D(Layer):
    config_keys = ("pool_size", "padding", "strides", "data_format")   # Keras's order
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

    def sample_output_shape(self, input_shape):
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
    """The reduction of every spatial axis. Unlike kilnet's other image layers these take
    data_format="channels_first" too, since it only moves the axes reduced: Keras's
    timeseries Transformer averages (batch, steps, features) over its last axis with
    GlobalAveragePooling1D(data_format="channels_first")."""

    config_keys = ("data_format", "keepdims")
    _axes: tuple = ()   # the spatial axes, channels last

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last", "channels_first"):
            raise ValueError("data_format must be 'channels_last' or 'channels_first'. "
                             f"Received: data_format={data_format!r}")
        self.data_format = data_format or "channels_last"
        if not isinstance(keepdims, bool):
            raise ValueError(f"keepdims must be True or False. Received: keepdims={keepdims!r}")
        self.keepdims = keepdims

    @property
    def spatial_axes(self) -> tuple:
        shift = 1 if self.data_format == "channels_first" else 0
        return tuple(axis + shift for axis in self._axes)

    def sample_output_shape(self, input_shape):
        rank = len(self._axes) + 1
        if len(input_shape) != rank:
            what = {2: "(steps, channels)", 3: "(height, width, channels)"}.get(
                rank, "(depth, height, width, channels)")
            if self.data_format == "channels_first":
                what = "(channels, " + what[1:].replace(", channels)", ")")
            raise ValueError(f"{type(self).__name__} expects {what} inputs. Received an input "
                             f"of shape {tuple(input_shape)}.")
        kept = (1,) * len(self._axes) if self.keepdims else ()
        if self.data_format == "channels_first":
            return (input_shape[0],) + kept
        return kept + (input_shape[-1],)

    def apply(self, params, state, x, **_):
        return self._reduce(x, axis=self.spatial_axes, keepdims=self.keepdims), state


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
        steps = self.spatial_axes[0]
        channels = 1 if self.data_format == "channels_first" else 2
        weight = jnp.expand_dims(mask.astype(x.dtype), channels)
        total = jnp.sum(x * weight, axis=steps, keepdims=self.keepdims)
        return total / jnp.sum(weight, axis=steps, keepdims=self.keepdims), state


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


class GlobalAveragePooling2D(_GlobalPooling):
    """The mean over the pixels of each channel: (height, width, channels) -> (channels,), or
    (1, 1, channels) with keepdims=True (a squeeze-and-excite block's shape), as Keras's.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.arange(8.0).reshape(1, 2, 2, 2)
        >>> kilnet.layers.GlobalAveragePooling2D()(x).tolist()
        [[3.0, 4.0]]
        >>> kilnet.layers.GlobalAveragePooling2D(keepdims=True)(x).shape
        (1, 1, 1, 2)
    """

    _axes = (1, 2)
    _reduce = staticmethod(jnp.mean)


class GlobalAveragePooling3D(_GlobalPooling):
    """The mean over the voxels of each channel: (depth, height, width, channels) ->
    (channels,), or (1, 1, 1, channels) with keepdims=True, as Keras's.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.arange(16.0).reshape(1, 2, 2, 2, 2)
        >>> kilnet.layers.GlobalAveragePooling3D()(x).tolist()
        [[7.0, 8.0]]
    """

    _axes = (1, 2, 3)
    _reduce = staticmethod(jnp.mean)


class GlobalMaxPooling3D(_GlobalPooling):
    """The maximum over the voxels of each channel: (depth, height, width, channels) ->
    (channels,), or (1, 1, 1, channels) with keepdims=True, as Keras's.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.arange(16.0).reshape(1, 2, 2, 2, 2)
        >>> kilnet.layers.GlobalMaxPooling3D(keepdims=True)(x).shape
        (1, 1, 1, 1, 2)
    """

    _axes = (1, 2, 3)
    _reduce = staticmethod(jnp.max)
