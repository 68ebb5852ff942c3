"""Preprocessing that trains with the model: Normalization (statistics adapted on the data),
Resizing and CenterCrop (images, channels-last).

Putting preprocessing inside the model means a saved model takes raw data: the statistics
`Normalization.adapt` measures are non-trainable weights saved in the model file, and resizing
runs inside the compiled programs like any layer. `adapt` itself runs once, on the host, before
training (it reads the data, not the model).
"""

from __future__ import annotations

import itertools
import math
import numbers

import jax.numpy as jnp
import numpy as np

from kilnet import config
from kilnet.layers._base import Layer
from kilnet.layers._node import KerasTensor
from kilnet.ops import image

# Keras divides by max(sqrt(variance), epsilon) with its backend epsilon, so a constant feature
# (variance 0) maps to 0 instead of NaN.

_RESIZE_INTERPOLATIONS = image.RESIZE_INTERPOLATIONS


# -- Normalization -------------------------------------------------------------------------------
class Normalization(Layer):
    """Shifts and scales inputs to mean 0 and variance 1: `(x - mean) / sqrt(variance)`.

    The statistics come either from the data, with `layer.adapt(data)` before training (they
    are then non-trainable weights "mean", "variance" and "count", saved with the model), or
    from `mean=` and `variance=` given to the constructor (then the layer has no weights).

    Args:
        axis: the axis or axes (of the input with its batch axis, as Keras) that keep a separate
            mean and variance per index; None for one scalar mean and variance. Default -1: one
            per feature of the last axis.
        mean, variance: the statistics, given together (numbers or arrays broadcastable to the
            kept axes), instead of adapt.
        invert: True for the inverse: `mean + x * sqrt(variance)`.

    The "count" weight exists for Keras's weight layout only; Keras 3 leaves it at 0, and so
    does kilnet (as a float32 scalar: kilnet's weights are float32, Keras's count is int32).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.Normalization()
        >>> layer.adapt(np.array([[0.0, 7.0], [2.0, 9.0]]))
        >>> np.asarray(layer(np.array([[1.0, 9.0]]))).round(4).tolist()
        [[0.0, 1.0]]
        >>> fixed = kilnet.layers.Normalization(mean=3.0, variance=4.0)
        >>> np.asarray(fixed(np.array([[5.0]]))).tolist()
        [[1.0]]
    """

    _supports_masking = True  # elementwise, so a sequence mask passes through, as Keras
    config_keys = ("axis", "invert")

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, **kwargs):
        super().__init__(**kwargs)
        self.axis = _as_axes(axis)
        if not isinstance(invert, bool):
            raise TypeError(f"invert must be True or False. Received: invert={invert!r}")
        self.invert = invert
        if (mean is None) != (variance is None):
            raise ValueError("mean and variance must be given together (or neither, then call "
                             f"adapt()). Received: mean={mean!r}, variance={variance!r}")
        if mean is not None:
            mean, variance = _as_statistic(mean, "mean"), _as_statistic(variance, "variance")
            if np.shape(mean) != np.shape(variance):
                raise ValueError(f"mean and variance must have the same shape. Received: mean "
                                 f"of shape {np.shape(mean)}, variance of shape "
                                 f"{np.shape(variance)}")
            if np.ndim(mean) > len(self.axis):
                raise ValueError(f"mean has more dimensions ({np.ndim(mean)}) than there are "
                                 f"kept axes (axis={self.axis!r}). Received: mean={mean!r}")
            if np.any(np.asarray(variance) < 0):
                raise ValueError(f"variance must not be negative. Received: variance="
                                 f"{variance!r}")
        # Config values (JSON-friendly numbers or nested lists), under Keras's attribute names;
        # `mean` and `variance` are what the layer computes with (properties below).
        self.input_mean, self.input_variance = mean, variance

    @property
    def state_names(self):
        return ("mean", "variance", "count") if self.input_mean is None else ()

    def get_config(self):
        return {**super().get_config(), "mean": self.input_mean,
                "variance": self.input_variance}

    # -- the statistics, as Keras's attributes ---------------------------------------------------
    @property
    def mean(self):
        """The mean the layer subtracts, as Keras's `layer.mean`: shaped to broadcast against
        the inputs, with the batch axis ((1, 3) for inputs of shape (None, 3), (1, 1, 1, 3)
        for images, (1, 1) with axis=None), in the compute dtype; None until the layer is
        built. Read from the weights each time, so it is current after adapt, set_weights,
        training or loading.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> layer = kilnet.layers.Normalization()
            >>> layer.adapt(np.array([[0.0, 7.0], [2.0, 9.0]]))
            >>> np.asarray(layer.mean).tolist(), layer.adapt_mean.shape
            ([[1.0, 8.0]], (2,))
        """
        return self._broadcast_statistic(0)

    @property
    def variance(self):
        """The variance the layer divides by (its square root), shaped as `mean`; None until
        the layer is built."""
        return self._broadcast_statistic(1)

    @property
    def adapt_mean(self):
        """Keras's name for the weight `adapt` fills with the mean (a Variable of the kept
        axes' shape, as `get_weights()` gives it); None when the layer was given `mean` and
        `variance` or is not built."""
        return self._statistic_weight("mean")

    @property
    def adapt_variance(self):
        """Keras's name for the weight `adapt` fills with the variance; see `adapt_mean`."""
        return self._statistic_weight("variance")

    def _statistic_weight(self, name):
        self.build_if_shapes_known()   # called on an Input: built then, as Keras's
        return next((v for v in self._non_trainable_vars if v.name == name), None)

    def _broadcast_statistic(self, which):
        self.build_if_shapes_known()
        if not self.built or self.build_shape is None:
            return None
        if self.input_mean is not None:
            value = self._given_statistics(self.build_shape)[which]
        else:
            weight = self._statistic_weight(("mean", "variance")[which])
            value = np.reshape(weight.numpy(), self._broadcast_shape(self.build_shape))
        return jnp.asarray(value, self.compute_dtype)

    # -- shapes ---------------------------------------------------------------------------------
    def _kept_axes(self, input_shape) -> tuple[int, ...]:
        """The kept axes as positions in the input with its batch axis (never 0)."""
        ndim = len(input_shape) + 1
        kept = []
        for a in self.axis:
            if not -ndim <= a < ndim:
                raise ValueError(f"axis {a} is out of range for inputs of rank {ndim} (batch "
                                 f"axis included). Received: axis={self.axis!r}")
            a = a % ndim
            if a == 0:
                raise ValueError("axis cannot keep the batch axis (0): statistics per sample "
                                 "position depend on the batch size. Use axis=None for one "
                                 f"mean and variance. Received: axis={self.axis!r}")
            if input_shape[a - 1] is None:
                raise ValueError(f"the kept axis {a} must have a known size. Received: an "
                                 f"input of shape {(None,) + tuple(input_shape)}")
            kept.append(a)
        return tuple(sorted(set(kept)))

    def _statistics_shape(self, input_shape):
        return tuple(input_shape[a - 1] for a in self._kept_axes(input_shape))

    def _broadcast_shape(self, input_shape):
        kept = self._kept_axes(input_shape)
        return (1,) + tuple(d if a in kept else 1 for a, d in enumerate(input_shape, 1))

    def sample_output_shape(self, input_shape):
        self._kept_axes(input_shape)
        if self.input_mean is not None:
            self._given_statistics(input_shape)  # fails early when they cannot broadcast
        return input_shape

    def _given_statistics(self, input_shape):
        """mean and variance given to the constructor, shaped to broadcast against inputs:
        their dimensions align with the last kept axes, as Keras does."""
        kept, target = self._kept_axes(input_shape), self._broadcast_shape(input_shape)
        out = []
        for value in (self.input_mean, self.input_variance):
            value = np.asarray(value, np.float32)
            expanded = [1] * len(target)
            for i in range(1, value.ndim + 1):
                expanded[kept[-i]] = value.shape[-i]
            try:
                out.append(np.broadcast_to(value.reshape(expanded), target))
            except ValueError:
                raise ValueError(f"mean and variance of shape {value.shape} cannot broadcast "
                                 f"to the kept axes {self.axis!r} of inputs of shape "
                                 f"{(None,) + tuple(input_shape)}.") from None
        return out

    # -- weights and computation ----------------------------------------------------------------
    def init(self, rng, input_shape):
        self.sample_output_shape(input_shape)
        if self.input_mean is not None:
            return {}, {}, input_shape
        shape = self._statistics_shape(input_shape)
        state = {"mean": np.zeros(shape, np.float32), "variance": np.ones(shape, np.float32),
                 "count": np.zeros((), np.float32)}
        # The statistics are data, not a random draw: a model rebuilt after adapt keeps them.
        for v in self._non_trainable_vars:
            if v.name in state and v.shape == state[v.name].shape:
                state[v.name] = v.numpy()
        return {}, state, input_shape

    def apply(self, params, state, x, **_):
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        target = (1,) + tuple(self._broadcast_shape(x.shape[1:])[1:])
        if self.input_mean is None:
            mean = state["mean"].reshape(target)
            variance = state["variance"].reshape(target)
        else:
            mean, variance = (jnp.asarray(v) for v in self._given_statistics(x.shape[1:]))
        scale = jnp.maximum(jnp.sqrt(variance), config.epsilon()).astype(x.dtype)
        mean = mean.astype(x.dtype)
        y = mean + x * scale if self.invert else (x - mean) / scale
        return y, state

    # -- adapt ----------------------------------------------------------------------------------
    def adapt(self, data) -> None:
        """Measure the mean and variance of `data` and keep them as the layer's weights.

        Args:
            data: a NumPy or JAX array (first axis: samples), or an iterable of batches (a
                list of arrays, a generator; an (x, y) tuple counts as its x). Batches are
                merged with a streaming mean and variance, as Keras's adapt.
        """
        if self.input_mean is not None:
            raise ValueError("This Normalization layer was given mean and variance; adapt() "
                             "would have nowhere to keep new statistics. Create it without "
                             "them to adapt.")
        batches = _batches(data)
        first = next(batches)
        input_shape = tuple(first.shape[1:])
        if not self.built:
            self.build_weights(np.random.default_rng(0), input_shape)
        expected = self._statistics_shape(self.build_shape)
        mean, variance, total = np.zeros(expected), np.zeros(expected), 0
        for batch in itertools.chain([first], batches):
            if batch.ndim != len(self.build_shape) + 1 or \
                    self._statistics_shape(batch.shape[1:]) != expected:
                raise ValueError(f"adapt() got a batch of shape {batch.shape}; the layer keeps "
                                 f"statistics of shape {expected} for inputs of shape "
                                 f"{(None,) + tuple(self.build_shape)}.")
            mean, variance, total = _merge_moments(mean, variance, total, batch,
                                                   self._reduced_axes(batch.ndim))
        if total == 0:
            raise ValueError("adapt() received no samples (every batch was empty).")
        weights = {v.name: v for v in self._non_trainable_vars}
        weights["mean"].assign(mean.astype(np.float32))
        weights["variance"].assign(variance.astype(np.float32))

    def _reduced_axes(self, ndim):
        kept = self._kept_axes(self.build_shape)
        return tuple(a for a in range(ndim) if a not in kept)


def _as_axes(axis) -> tuple[int, ...]:
    if axis is None:
        return ()
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        return (int(axis),)
    if isinstance(axis, (tuple, list)) and all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis):
        return tuple(int(a) for a in axis)
    raise TypeError(f"axis must be an integer, a tuple of integers or None. Received: "
                    f"axis={axis!r}")


def _as_statistic(value, argument):
    try:
        array = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or not np.all(np.isfinite(array)):
        raise ValueError(f"{argument} must be a finite number or an array of them. Received: "
                         f"{argument}={value!r}")
    return array.tolist()


def _batches(data):
    """The batches of adapt's data, as float64 NumPy arrays with a batch axis."""
    if hasattr(data, "shape") and hasattr(data, "dtype"):
        items = iter([data])
    elif isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        raise TypeError("adapt() takes an array or an iterable of batches (arrays). Received: "
                        f"{type(data).__name__}")
    else:
        items = iter(data)

    def convert(batch):
        if isinstance(batch, tuple):  # (x, y) or (x, y, sample_weight): x only
            batch = batch[0]
        array = np.asarray(batch)
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) or array.ndim < 1:
            raise TypeError("adapt() needs numeric arrays with a batch axis. Received: a batch "
                            f"of dtype {array.dtype} and shape {array.shape}")
        return array.astype(np.float64)

    converted = map(convert, items)
    first = next(converted, None)
    if first is None:
        raise ValueError("adapt() received an empty iterable: give at least one batch, e.g. "
                         "layer.adapt([x]).")
    return itertools.chain([first], converted)


def _merge_moments(mean, variance, count, batch, axes):
    """Fold one batch into running (mean, variance, count): the exact pooled moments of
    everything seen so far (the same merge as Keras's adapt over batches)."""
    n = math.prod(batch.shape[a] for a in axes) if axes else 1
    if n == 0:
        return mean, variance, count
    batch_mean, batch_var = batch.mean(axis=axes), batch.var(axis=axes)
    total = count + n
    w_batch = n / total
    w_old = 1.0 - w_batch
    new_mean = mean * w_old + batch_mean * w_batch
    variance = ((variance + (mean - new_mean) ** 2) * w_old
                + (batch_var + (batch_mean - new_mean) ** 2) * w_batch)
    return new_mean, variance, total


# -- images: Resizing and CenterCrop -------------------------------------------------------------
def check_channels_last(data_format):
    if data_format not in (None, "channels_last"):
        raise ValueError("Only data_format='channels_last' is supported. Received: "
                         f"data_format={data_format!r}")
    return "channels_last"


def as_size(value, argument: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{argument} must be a positive integer. Received: "
                         f"{argument}={value!r}")
    return int(value)


class TakesOneImage:
    """Mixed into the image layers: called on one unbatched (height, width, channels) image
    (`layer(image)`, a map over single images), the layer runs it as a batch of one and
    returns it unbatched, as Keras's image layers do.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layers.Resizing(4, 6)(np.zeros((8, 8, 3), np.float32)).shape
        (4, 6, 3)
    """

    def __call__(self, *args, **kwargs):
        first = args[0] if args else None
        if getattr(first, "ndim", None) == 3 and not isinstance(first, KerasTensor):
            return super().__call__(first[None], *args[1:], **kwargs)[0]
        return super().__call__(*args, **kwargs)

    def get_config(self):
        # Keras's image layers write data_format (their base class's key) before their own
        config = super().get_config()
        if "data_format" not in config:
            return config
        own = [key for key in self.config_keys if key in config and key != "data_format"]
        base = {key: value for key, value in config.items()
                if key not in own and key != "data_format"}
        return {**base, "data_format": config["data_format"],
                **{key: config[key] for key in own}}


def check_image_shape(layer, input_shape):
    if len(input_shape) != 3:
        raise ValueError(f"{type(layer).__name__} expects (height, width, channels) images. "
                         f"Received an input of shape {tuple(input_shape)}.")


def as_float(x):
    """Images arrive as any number type (uint8 pixels); the layers compute in float."""
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


class Resizing(TakesOneImage, Layer):
    """Resizes images (height, width, channels) to (height, width), as `keras.layers.Resizing`.

    Args:
        height, width: the output size.
        interpolation: "bilinear" (default), "nearest", "bicubic", "lanczos3" or "lanczos5".
        crop_to_aspect_ratio: True to first take the largest centered crop with the target
            aspect ratio, so the image is not distorted.
        pad_to_aspect_ratio: True to first pad (with fill_value) to the target aspect ratio.
        fill_mode: "constant" only (as Keras on JAX); fill_value: the padding value.
        antialias: True to filter when downsampling (jax.image.resize's antialias).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.arange(16.0).reshape(1, 4, 4, 1)
        >>> kilnet.layers.Resizing(2, 2)(images)[0, :, :, 0].tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """

    config_keys = ("height", "width", "interpolation", "crop_to_aspect_ratio",
                   "pad_to_aspect_ratio", "fill_mode", "fill_value", "antialias",
                   "data_format")

    def __init__(self, height, width, interpolation="bilinear", crop_to_aspect_ratio=False,
                 pad_to_aspect_ratio=False, fill_mode="constant", fill_value=0.0,
                 antialias=False, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = as_size(height, "height"), as_size(width, "width")
        if interpolation not in _RESIZE_INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(_RESIZE_INTERPOLATIONS)}. "
                             f"Received: interpolation={interpolation!r}")
        self.interpolation = interpolation
        for name, flag in (("crop_to_aspect_ratio", crop_to_aspect_ratio),
                           ("pad_to_aspect_ratio", pad_to_aspect_ratio),
                           ("antialias", antialias)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False. Received: {name}={flag!r}")
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError("Only one of crop_to_aspect_ratio and pad_to_aspect_ratio can be "
                             "True. Received: both True")
        self.crop_to_aspect_ratio = crop_to_aspect_ratio
        self.pad_to_aspect_ratio = pad_to_aspect_ratio
        if fill_mode != "constant":
            raise ValueError("fill_mode must be 'constant' (the only mode Keras supports for "
                             f"resizing). Received: fill_mode={fill_mode!r}")
        self.fill_mode = fill_mode
        if not isinstance(fill_value, numbers.Real) or isinstance(fill_value, bool):
            raise TypeError(f"fill_value must be a number. Received: fill_value={fill_value!r}")
        self.fill_value = float(fill_value)
        self.antialias = antialias
        self.data_format = check_channels_last(data_format)

    def sample_output_shape(self, input_shape):
        check_image_shape(self, input_shape)
        return (self.height, self.width, input_shape[2])

    def apply(self, params, state, x, **_):
        return image.resize(as_float(x), (self.height, self.width), self.interpolation,
                            self.antialias, self.crop_to_aspect_ratio,
                            self.pad_to_aspect_ratio, self.fill_mode, self.fill_value), state


class CenterCrop(TakesOneImage, Layer):
    """Crops the center (height, width) of images, as `keras.layers.CenterCrop`.

    An image smaller than the crop on either side is instead cropped to the target aspect
    ratio and resized (bilinear) to (height, width), as Keras does.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.arange(16.0).reshape(1, 4, 4, 1)
        >>> kilnet.layers.CenterCrop(2, 2)(images)[0, :, :, 0].tolist()
        [[5.0, 6.0], [9.0, 10.0]]
    """

    config_keys = ("height", "width", "data_format")

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = as_size(height, "height"), as_size(width, "width")
        self.data_format = check_channels_last(data_format)

    def sample_output_shape(self, input_shape):
        check_image_shape(self, input_shape)
        return (self.height, self.width, input_shape[2])

    def apply(self, params, state, x, **_):
        x = as_float(x)
        h, w = x.shape[1:3]
        if h >= self.height and w >= self.width:
            top, left = (h - self.height) // 2, (w - self.width) // 2
            return x[:, top:top + self.height, left:left + self.width, :], state
        return image.resize(x, (self.height, self.width), crop_to_aspect_ratio=True), state
