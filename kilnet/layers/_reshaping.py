"""Layers that move values without weights: Permute, RepeatVector, UpSampling1D/2D,
ZeroPadding1D/2D and Cropping1D/2D, as Keras's `keras.layers.reshaping`.

They rearrange, repeat, pad or cut the axes of a sample so that branches line up (a decoder
upsamples back to the encoder's size, a skip connection is cropped to fit) and so that a
sequence can feed a layer that expects another layout. Images are channels-last only:
(height, width, channels), as the rest of kilnet; `data_format="channels_first"` is refused.
Sizes may be None (a variable-length axis) where the layer does not need them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kilnet.layers._base import Layer

# jax.image.resize's name for each Keras interpolation other than "nearest" (a repeat).
_RESIZE_METHODS = {"bilinear": "bilinear", "bicubic": "bicubic", "lanczos3": "lanczos3",
                   "lanczos5": "lanczos5"}
_INTERPOLATIONS = ("nearest",) + tuple(_RESIZE_METHODS)


# -- argument checks ------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value, n: int, argument: str, *, allow_zero: bool) -> tuple:
    """Keras's standardize_tuple: an int for all n, or n ints; positive (or >= 0)."""
    items = (value,) * n if _is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    smallest = 0 if allow_zero else 1
    if len(items) != n or not all(_is_int(v) and v >= smallest for v in items):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{argument} must be a {kind} integer or a tuple of {n} of them. "
                         f"Received: {argument}={value!r}")
    return items


def _pairs(value, n: int, argument: str) -> tuple:
    """ZeroPadding / Cropping amounts over n spatial axes: an int for every side, n ints (both
    sides of each axis), or n (start, end) pairs."""
    if _is_int(value):
        return (_int_tuple(value, 2, argument, allow_zero=True),) * n
    try:
        parts = tuple(value)
    except TypeError:
        parts = ()
    if len(parts) != n:
        forms = ("a pair of integers (rows, columns) or a pair of pairs ((top, bottom), "
                 "(left, right))" if n == 2 else
                 "three integers (depth, rows, columns) or three pairs ((front, back), "
                 "(top, bottom), (left, right))")
        raise ValueError(f"{argument} must be an integer, {forms}. Received: "
                         f"{argument}={value!r}")
    return tuple(_int_tuple(p, 2, argument, allow_zero=True) for p in parts)


def _pairs_2d(value, argument: str) -> tuple:
    """ZeroPadding2D / Cropping2D amounts: n, (rows, cols), or ((top, bottom), (left, right))."""
    return _pairs(value, 2, argument)


def _channels_last(data_format) -> str:
    if data_format not in (None, "channels_last"):
        raise ValueError("Only data_format='channels_last' is supported: samples are "
                         "(..., channels). Transpose channels-first data with "
                         f"Permute first. Received: data_format={data_format!r}")
    return "channels_last"


def _check_rank(layer, input_shape, rank: int, layout: str) -> tuple:
    if len(input_shape) != rank:
        raise ValueError(f"{type(layer).__name__} expects samples of shape {layout} "
                         f"({rank} axes besides the batch axis). Received: an input of shape "
                         f"{(None,) + tuple(input_shape)}")
    return tuple(input_shape)


def _scaled(size, factor):
    return None if size is None else size * factor


class _Movement(Layer):
    """A layer that only moves, copies or pads values: the output keeps the input's dtype."""

    def compute_output_dtype(self, input_dtype) -> str:
        return "float32" if input_dtype is None else str(input_dtype)


# -- the layers -----------------------------------------------------------------------------------
class Permute(_Movement):
    """Reorders the axes of a sample; `dims` counts them from 1 (the batch axis stays first).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layers.Permute((2, 1))(np.zeros((4, 10, 64))).shape
        (4, 64, 10)
    """

    config_keys = ("dims",)

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        try:
            order = tuple(dims)
        except TypeError:
            order = ()
        if not order or not all(_is_int(d) for d in order) or sorted(order) != list(
                range(1, len(order) + 1)):
            raise ValueError("dims must be a permutation of 1..n, the axes of a sample counted "
                             f"from 1 (the batch axis is not included). Received: dims={dims!r}")
        self.dims = order

    def sample_output_shape(self, input_shape):
        _check_rank(self, input_shape, len(self.dims), f"of {len(self.dims)} axes, as dims")
        return tuple(input_shape[d - 1] for d in self.dims)

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        return jnp.transpose(x, (0,) + self.dims), state


class RepeatVector(_Movement):
    """Repeats a vector `n` times: (batch, features) -> (batch, n, features).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.RepeatVector(2)(np.array([[1.0, 2.0]]))).tolist()
        [[[1.0, 2.0], [1.0, 2.0]]]
    """

    config_keys = ("n",)

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(n):
            raise TypeError(f"n must be an integer. Received: n={n!r}")
        if n < 1:
            raise ValueError(f"n must be a positive integer. Received: n={n!r}")
        self.n = n

    def sample_output_shape(self, input_shape):
        (features,) = _check_rank(self, input_shape, 1, "(features,)")
        return (self.n, features)

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        return jnp.repeat(x[:, None, :], self.n, axis=1), state


class UpSampling1D(_Movement):
    """Repeats each step of a sequence `size` times: (steps, features) -> (steps * size, ...).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.UpSampling1D(2)(np.array([[[1.0], [2.0]]])))[0, :, 0].tolist()
        [1.0, 1.0, 2.0, 2.0]
    """

    config_keys = ("size",)

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(size):
            raise TypeError(f"size must be an integer. Received: size={size!r}")
        if size < 1:
            raise ValueError(f"size must be a positive integer. Received: size={size!r}")
        self.size = size

    def sample_output_shape(self, input_shape):
        steps, features = _check_rank(self, input_shape, 2, "(steps, features)")
        return (_scaled(steps, self.size), features)

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        return jnp.repeat(x, self.size, axis=1), state


class UpSampling2D(_Movement):
    """Enlarges images `size` times: each pixel repeated ("nearest"), or interpolated
    ("bilinear", "bicubic", "lanczos3", "lanczos5", with jax.image.resize as Keras on JAX).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> y = layers.UpSampling2D((2, 3))(np.arange(4.0).reshape(1, 2, 2, 1))
        >>> y.shape, np.asarray(y)[0, :, :, 0].tolist()[0]
        ((1, 4, 6, 1), [0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    """

    config_keys = ("size", "data_format", "interpolation")

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.size = _int_tuple(size, 2, "size", allow_zero=False)
        self.data_format = _channels_last(data_format)
        if not isinstance(interpolation, str) or interpolation.lower() not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(_INTERPOLATIONS)}. "
                             f"Received: interpolation={interpolation!r}")
        self.interpolation = interpolation.lower()

    def sample_output_shape(self, input_shape):
        h, w, c = _check_rank(self, input_shape, 3, "(height, width, channels)")
        return (_scaled(h, self.size[0]), _scaled(w, self.size[1]), c)

    def compute_output_dtype(self, input_dtype) -> str:
        # Interpolated pixels are fractions whatever the input.
        return super().compute_output_dtype(input_dtype) if self.interpolation == "nearest" \
            else "float32"

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        (sh, sw), (n, h, w, c) = self.size, x.shape
        if self.interpolation == "nearest":
            return jnp.repeat(jnp.repeat(x, sh, axis=1), sw, axis=2), state
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        # antialias=False as Keras: it only matters when shrinking.
        return jax.image.resize(x, (n, h * sh, w * sw, c),
                                method=_RESIZE_METHODS[self.interpolation],
                                antialias=False), state


class ZeroPadding1D(_Movement):
    """Adds zero steps at the start and end of a sequence: padding=n or (start, end).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> np.asarray(layers.ZeroPadding1D((1, 2))(np.ones((1, 2, 1))))[0, :, 0].tolist()
        [0.0, 1.0, 1.0, 0.0, 0.0]
    """

    config_keys = ("padding", "data_format")

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _int_tuple(padding, 2, "padding", allow_zero=True)
        self.data_format = _channels_last(data_format)

    def sample_output_shape(self, input_shape):
        steps, features = _check_rank(self, input_shape, 2, "(steps, features)")
        return (None if steps is None else steps + sum(self.padding), features)

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        return jnp.pad(x, ((0, 0), self.padding, (0, 0))), state


class ZeroPadding2D(_Movement):
    """Adds rows and columns of zeros around images: padding=n, (rows, columns) for both
    sides, or ((top, bottom), (left, right)).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layers.ZeroPadding2D(((1, 0), (2, 2)))(np.ones((1, 3, 3, 1))).shape
        (1, 4, 7, 1)
    """

    config_keys = ("padding", "data_format")

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs_2d(padding, "padding")
        self.data_format = _channels_last(data_format)

    def sample_output_shape(self, input_shape):
        h, w, c = _check_rank(self, input_shape, 3, "(height, width, channels)")
        (top, bottom), (left, right) = self.padding
        return (None if h is None else h + top + bottom,
                None if w is None else w + left + right, c)

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        return jnp.pad(x, ((0, 0),) + self.padding + ((0, 0),)), state


def _cropped(size, start: int, end: int, layer, argument: str, input_shape):
    if size is None:
        return None
    if start + end >= size:
        raise ValueError(f"{type(layer).__name__} would crop {start} + {end} of an axis of "
                         f"size {size}: nothing would be left. Received: {argument}="
                         f"{getattr(layer, argument)!r} for an input of shape "
                         f"{(None,) + tuple(input_shape)}")
    return size - start - end


class Cropping1D(_Movement):
    """Cuts steps off the start and end of a sequence: cropping=n or (start, end).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> x = np.arange(5.0).reshape(1, 5, 1)
        >>> np.asarray(layers.Cropping1D((1, 2))(x))[0, :, 0].tolist()
        [1.0, 2.0]
    """

    config_keys = ("cropping",)

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = _int_tuple(cropping, 2, "cropping", allow_zero=True)

    def sample_output_shape(self, input_shape):
        steps, features = _check_rank(self, input_shape, 2, "(steps, features)")
        return (_cropped(steps, *self.cropping, self, "cropping", input_shape), features)

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        start, end = self.cropping
        return x[:, start:x.shape[1] - end, :], state


class Cropping2D(_Movement):
    """Cuts rows and columns off the edges of images: cropping=n, (rows, columns) for both
    sides, or ((top, bottom), (left, right)).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layers.Cropping2D(((1, 0), (2, 2)))(np.ones((1, 5, 6, 3))).shape
        (1, 4, 2, 3)
    """

    config_keys = ("cropping", "data_format")

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs_2d(cropping, "cropping")
        self.data_format = _channels_last(data_format)

    def sample_output_shape(self, input_shape):
        h, w, c = _check_rank(self, input_shape, 3, "(height, width, channels)")
        rows, cols = self.cropping
        return (_cropped(h, *rows, self, "cropping", input_shape),
                _cropped(w, *cols, self, "cropping", input_shape), c)

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        (top, bottom), (left, right) = self.cropping
        return x[:, top:x.shape[1] - bottom, left:x.shape[2] - right, :], state


# -- volumes (depth, height, width, channels): the 3-D twins ---------------------------------------
_VOLUME = "(depth, height, width, channels)"


class ZeroPadding3D(_Movement):
    """Adds zeros around volumes: padding=n, (depth, rows, columns) for both sides, or
    ((front, back), (top, bottom), (left, right)), as Keras's ZeroPadding3D.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layers.ZeroPadding3D(((1, 0), (0, 0), (2, 2)))(np.ones((1, 2, 3, 3, 1))).shape
        (1, 3, 3, 7, 1)
    """

    config_keys = ("padding", "data_format")

    def __init__(self, padding=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.padding = _pairs(padding, 3, "padding")
        self.data_format = _channels_last(data_format)

    def sample_output_shape(self, input_shape):
        *spatial, c = _check_rank(self, input_shape, 4, _VOLUME)
        return tuple(None if size is None else size + sum(sides)
                     for size, sides in zip(spatial, self.padding)) + (c,)

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        return jnp.pad(x, ((0, 0),) + self.padding + ((0, 0),)), state


class Cropping3D(_Movement):
    """Cuts the edges off volumes: cropping=n, (depth, rows, columns) for both sides, or
    ((front, back), (top, bottom), (left, right)), as Keras's Cropping3D.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layers.Cropping3D(((1, 0), (1, 1), (0, 2)))(np.ones((1, 4, 5, 6, 2))).shape
        (1, 3, 3, 4, 2)
    """

    config_keys = ("cropping", "data_format")

    def __init__(self, cropping=((1, 1), (1, 1), (1, 1)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.cropping = _pairs(cropping, 3, "cropping")
        self.data_format = _channels_last(data_format)

    def sample_output_shape(self, input_shape):
        *spatial, c = _check_rank(self, input_shape, 4, _VOLUME)
        return tuple(_cropped(size, *sides, self, "cropping", input_shape)
                     for size, sides in zip(spatial, self.cropping)) + (c,)

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        kept = tuple(slice(start, size - end)
                     for size, (start, end) in zip(x.shape[1:4], self.cropping))
        return x[(slice(None),) + kept + (slice(None),)], state


class UpSampling3D(_Movement):
    """Enlarges volumes `size` times, each voxel repeated, as Keras's UpSampling3D.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layers.UpSampling3D((1, 2, 3))(np.ones((1, 2, 2, 2, 1))).shape
        (1, 2, 4, 6, 1)
    """

    config_keys = ("size", "data_format")

    def __init__(self, size=(2, 2, 2), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.size = _int_tuple(size, 3, "size", allow_zero=False)
        self.data_format = _channels_last(data_format)

    def sample_output_shape(self, input_shape):
        *spatial, c = _check_rank(self, input_shape, 4, _VOLUME)
        return tuple(_scaled(n, k) for n, k in zip(spatial, self.size)) + (c,)

    def apply(self, params, state, x, **_):
        self.sample_output_shape(x.shape[1:])
        for axis, times in enumerate(self.size, start=1):
            x = jnp.repeat(x, times, axis=axis)
        return x, state
