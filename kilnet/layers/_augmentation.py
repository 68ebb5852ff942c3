"""Random image augmentation layers (channels-last), active only while training.

Each layer draws its random transformation from the JAX key that `apply` receives: inside fit
that is the step's key, so a run is reproducible from the model's seed, and no global random
state is read or advanced. Every image gets its own draw from a key folded with its row index,
so an image's augmentation does not depend on the batch size or on the padding rows of a last
partial batch. RandomCrop is the exception: as in Keras, one window position serves the whole
batch. At inference (evaluate, predict, `training=False`) the layers pass images through
unchanged, except RandomCrop, which cuts the center window (its output shape is fixed).

`seed` is accepted and saved for Keras compatibility, but the model's key decides the draws.

The geometric layers (rotation, zoom, translation, shear) resample the image through one
affine map per image, written as Keras writes it: output pixel (row y, column x) reads the
input at column `a0*x + a1*y + a2` and row `b0*x + b1*y + b2`, interpolated with
`jax.scipy.ndimage.map_coordinates` and filled outside the image by `fill_mode`.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

from kilnet import random
from kilnet.layers._base import Layer
from kilnet.ops import image as image_ops
from kilnet.layers._preprocessing import (TakesOneImage, as_float, as_size, check_channels_last,
                                          check_image_shape)

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = {"nearest": 0, "bilinear": 1}   # map_coordinates' spline order


class RandomImageLayer(TakesOneImage, Layer):
    """Shared by the augmentation layers: argument checks, the training switch, and one
    random key per image (subclasses write `augment`).

    Example:
        >>> import numpy as np
        >>> class Negate(RandomImageLayer):
        ...     def augment(self, images, keys):
        ...         return -images
        >>> np.asarray(Negate()(np.ones((1, 1, 1, 1)))).ravel().tolist()
        [-1.0]
    """

    # Whether the layer draws, so owns a SeedGenerator (Keras's AutoContrast and
    # Equalization do not)
    draws_randomly = True

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if seed is not None and (not isinstance(seed, numbers.Integral)
                                 or isinstance(seed, bool)):
            raise TypeError(f"seed must be an integer or None. Received: seed={seed!r}")
        self.seed = seed  # kept for Keras's config
        if self.draws_randomly:   # Keras's attribute name; a compiled step's key decides
            self.generator = random.SeedGenerator(seed)
        self.data_format = check_channels_last(data_format)

    def sample_output_shape(self, input_shape):
        check_image_shape(self, input_shape)
        return input_shape

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        x = as_float(x)
        if not training:
            return x, state
        rng = self.random_key(rng)
        keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(jnp.arange(x.shape[0]))
        return self.augment(x, keys), state

    def keep_generators_for(self, operations) -> None:
        """A SeedGenerator for each random operation the layer runs inside (RandAugment's,
        RandomColorJitter's), as Keras's sub-layers each hold one, so `variables` lists as many
        states as Keras's; the operations draw from the layer's own key.

        Example:
            >>> from kilnet import layers
            >>> len(layers.RandomColorJitter(brightness_factor=0.2, hue_factor=0.1).variables)
            3
        """
        self.operation_generators = [random.SeedGenerator(self.seed) for op in operations
                                     if op.draws_randomly]

    def augment(self, images, keys):
        """The augmented images; keys holds one JAX key per image."""
        raise NotImplementedError

    # As Keras: an augmentation layer called on its own augments (training defaults to True),
    # so `layer(images)` shows what it does; inside a model the model decides.
    eager_training_default = True


def uniform_draws(keys, low, high):
    """One uniform draw in [low, high) per key.

    Example:
        >>> import jax
        >>> draws = uniform_draws(jax.random.split(jax.random.key(0), 3), 2.0, 3.0)
        >>> draws.shape, bool(((2.0 <= draws) & (draws < 3.0)).all())
        ((3,), True)
    """
    return jax.vmap(lambda k: jax.random.uniform(k, (), minval=low, maxval=high))(keys)


def split_keys(keys, count):
    """`count` independent key arrays from one key per image.

    Example:
        >>> import jax
        >>> first, second = split_keys(jax.random.split(jax.random.key(0), 3), 2)
        >>> first.shape, second.shape
        ((3,), (3,))
    """
    split = jax.vmap(lambda k: jax.random.split(k, count))(keys)
    return [split[:, i] for i in range(count)]


def factor_range(factor, argument, low, high, *, low_open=False):
    """Keras's factor rule: a number f means (-f, f) clipped to [low, high]; a pair is sorted.
    Every number must lie in [low, high] ((low, high] with low_open).

    Example:
        >>> factor_range(0.2, "factor", 0, 1), factor_range((0.3, -0.1), "factor", -1, 1)
        ((0, 0.2), (-0.1, 0.3))
    """
    def valid(v):
        return (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                and (low < v if low_open else low <= v) and v <= high)

    interval = f"{'(' if low_open else '['}{low}, {high}]"
    message = (f"{argument} must be a number or a pair of numbers in {interval}. "
               f"Received: {argument}={factor!r}")
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or not all(valid(v) for v in factor):
            raise ValueError(message)
        lower, upper = sorted(factor)   # the numbers as given, as Keras's config keeps them
        return lower, upper
    if not valid(factor):
        raise ValueError(message)
    f = abs(factor)
    return max(-f, low), f


def check_fill(fill_mode, interpolation, fill_value):
    """fill_value as a float, once fill_mode and interpolation are known names.

    Example:
        >>> check_fill("constant", "nearest", 2)
        2.0
    """
    if fill_mode not in _FILL_MODES:
        raise ValueError(f"fill_mode must be one of {list(_FILL_MODES)}. Received: "
                         f"fill_mode={fill_mode!r}")
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {list(_INTERPOLATIONS)}. Received: "
                         f"interpolation={interpolation!r}")
    if not isinstance(fill_value, numbers.Real) or isinstance(fill_value, bool):
        raise TypeError(f"fill_value must be a number. Received: fill_value={fill_value!r}")
    return float(fill_value)


# -- flips ----------------------------------------------------------------------------------------
class RandomFlip(RandomImageLayer):
    """Randomly flips images while training, as `keras.layers.RandomFlip`.

    Args:
        mode: "horizontal" (left-right), "vertical" (up-down) or "horizontal_and_vertical"
            (default). Each image is flipped with probability 1/2; as in Keras 3, with
            "horizontal_and_vertical" one draw flips both axes together (a half turn).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.arange(4.0).reshape(1, 1, 4, 1)
        >>> layer = kilnet.layers.RandomFlip("horizontal")
        >>> out = np.asarray(layer(images))[0, 0, :, 0].tolist()
        >>> out in ([0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0])
        True
        >>> np.asarray(layer(images, training=False))[0, 0, :, 0].tolist()
        [0.0, 1.0, 2.0, 3.0]
    """

    config_keys = ("seed", "mode", "data_format")   # Keras's order
    _MODES = ("horizontal", "vertical", "horizontal_and_vertical")

    def __init__(self, mode="horizontal_and_vertical", seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if mode not in self._MODES:
            raise ValueError(f"mode must be one of {list(self._MODES)}. Received: mode={mode!r}")
        self.mode = mode

    def augment(self, images, keys):
        flip = (uniform_draws(keys, 0.0, 1.0) <= 0.5)[:, None, None, None]
        if self.mode != "vertical":
            images = jnp.where(flip, images[:, :, ::-1, :], images)
        if self.mode != "horizontal":
            images = jnp.where(flip, images[:, ::-1, :, :], images)
        return images


# -- affine resampling: rotation, zoom, translation -----------------------------------------------
def affine_transform(images, matrices, interpolation="bilinear", fill_mode="reflect",
                     fill_value=0.0):
    """Resample each image through its map [a0, a1, a2, b0, b1, b2] (rows of `matrices`):
    output (row y, column x) reads input column a0*x + a1*y + a2, row b0*x + b1*y + b2
    (kilnet.ops.image.affine_transform, with the layers' default fill_mode)."""
    return image_ops.affine_transform(images, matrices, interpolation, fill_mode, fill_value)


def rotation_matrices(angles, height, width):
    """Maps rotating each image by `angles` (radians, counter-clockwise on screen as Keras)
    about its center."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    return jnp.stack([cos, -sin, cx - cx * cos + cy * sin,
                      sin, cos, cy - cx * sin - cy * cos], axis=1)


class _AffineLayer(RandomImageLayer):
    """An augmentation that resamples through one random affine map per image."""

    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.fill_value = check_fill(fill_mode, interpolation, fill_value)
        self.fill_mode, self.interpolation = fill_mode, interpolation

    def matrices(self, keys, height, width):
        raise NotImplementedError

    def augment(self, images, keys):
        m = self.matrices(keys, images.shape[1], images.shape[2])
        return affine_transform(images, m, self.interpolation, self.fill_mode, self.fill_value)


class RandomRotation(_AffineLayer):
    """Randomly rotates images while training, as `keras.layers.RandomRotation`.

    Args:
        factor: a fraction of a full turn: a number f rotates by an angle drawn uniformly in
            [-f * 360, f * 360] degrees; a pair (low, high) draws in [low * 360, high * 360].
            Each value in [-1, 1].
        fill_mode: how to fill outside the image: "reflect" (default), "wrap", "constant"
            (with fill_value) or "nearest".
        interpolation: "bilinear" (default) or "nearest".
        seed: accepted for Keras compatibility; the model's random key decides the draws.
        fill_value: the value outside the image with fill_mode="constant".

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.arange(9.0).reshape(1, 3, 3, 1)
        >>> half_turn = kilnet.layers.RandomRotation((0.5, 0.5))
        >>> np.asarray(half_turn(images))[0, :, :, 0].round(4).tolist()
        [[8.0, 7.0, 6.0], [5.0, 4.0, 3.0], [2.0, 1.0, 0.0]]
    """

    config_keys = ("factor", "fill_mode", "fill_value", "interpolation", "seed", "data_format")

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, data_format=None, **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self.factor = factor_range(factor, "factor", -1, 1)

    def matrices(self, keys, height, width):
        degrees = uniform_draws(keys, self.factor[0] * 360.0, self.factor[1] * 360.0)
        return rotation_matrices(degrees * (math.pi / 180.0), height, width)


class RandomZoom(_AffineLayer):
    """Randomly zooms images while training, as `keras.layers.RandomZoom`.

    Args:
        height_factor: a number f draws a vertical zoom in [1 - f, 1 + f]; a pair (low, high)
            in [1 + low, 1 + high]. Values in (-1, 1]. A zoom above 1 samples a larger area
            (the content shrinks, as in Keras), below 1 a smaller one (the content grows).
        width_factor: the same horizontally; None (default) uses the vertical zoom for both,
            keeping the aspect ratio.
        fill_mode, interpolation, seed, fill_value: as RandomRotation.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.ones((2, 4, 4, 1))
        >>> kilnet.layers.RandomZoom(0.2, fill_mode="nearest")(images).shape
        (2, 4, 4, 1)
    """

    config_keys = ("height_factor", "width_factor", "fill_mode", "interpolation", "seed",
                   "fill_value", "data_format")

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self._height_range = factor_range(height_factor, "height_factor", -1, 1,
                                       low_open=True)
        self._width_range = (None if width_factor is None else
                             factor_range(width_factor, "width_factor", -1, 1, low_open=True))
        self.height_factor, self.width_factor = height_factor, width_factor

    def matrices(self, keys, height, width):
        key_h, key_w = split_keys(keys, 2)
        zy = uniform_draws(key_h, 1.0 + self._height_range[0], 1.0 + self._height_range[1])
        zx = zy if self._width_range is None else uniform_draws(
            key_w, 1.0 + self._width_range[0], 1.0 + self._width_range[1])
        zeros = jnp.zeros_like(zx)
        return jnp.stack([zx, zeros, (width - 1) / 2.0 * (1.0 - zx),
                          zeros, zy, (height - 1) / 2.0 * (1.0 - zy)], axis=1)


class RandomTranslation(_AffineLayer):
    """Randomly shifts images while training, as `keras.layers.RandomTranslation`.

    Args:
        height_factor: a fraction of the height: a number f shifts vertically by an amount
            drawn in [-f * height, f * height]; a pair (low, high) in [low * height,
            high * height]. Values in [-1, 1]; positive moves the content down.
        width_factor: the same horizontally (positive moves it right).
        fill_mode, interpolation, seed, fill_value: as RandomRotation.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.arange(4.0).reshape(1, 1, 4, 1)
        >>> right = kilnet.layers.RandomTranslation(0.0, (0.25, 0.25), fill_mode="constant")
        >>> np.asarray(right(images))[0, 0, :, 0].tolist()
        [0.0, 0.0, 1.0, 2.0]
    """

    config_keys = ("height_factor", "width_factor", "fill_mode", "interpolation", "seed",
                   "fill_value", "data_format")

    def __init__(self, height_factor, width_factor, fill_mode="reflect",
                 interpolation="bilinear", seed=None, fill_value=0.0, data_format=None,
                 **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self._height_range = factor_range(height_factor, "height_factor", -1, 1)
        self._width_range = factor_range(width_factor, "width_factor", -1, 1)
        self.height_factor, self.width_factor = height_factor, width_factor

    def matrices(self, keys, height, width):
        key_h, key_w = split_keys(keys, 2)
        dy = uniform_draws(key_h, *self._height_range) * height
        dx = uniform_draws(key_w, *self._width_range) * width
        ones, zeros = jnp.ones_like(dx), jnp.zeros_like(dx)
        return jnp.stack([ones, zeros, -dx, zeros, ones, -dy], axis=1)


class RandomShear(_AffineLayer):
    """Randomly shears images while training, as `keras.layers.RandomShear`.

    Output pixel (row y, column x) reads the input at column x + sx * y and row sy * x + y
    (a shear about the top-left corner, as Keras's), with sx drawn in `x_factor`, sy in
    `y_factor`, and one random sign per image applied to both (as Keras).

    Args:
        x_factor: a number f in [0, 1] draws sx in [-f, f]; a pair (low, high) draws in
            [low, high] (then signed), with values in [-1, 1] (Keras takes [0, 1], but its
            config saves a number f as (-f, f): kilnet loads that too, and saves the
            argument as given). Default 0.0 (no horizontal shear).
        y_factor: the same vertically.
        interpolation, fill_mode, fill_value, seed: as RandomRotation.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.ones((2, 4, 4, 1))
        >>> kilnet.layers.RandomShear(x_factor=0.3, fill_mode="constant")(images).shape
        (2, 4, 4, 1)
    """

    config_keys = ("x_factor", "y_factor", "fill_mode", "interpolation", "seed", "fill_value",
                   "data_format")

    def __init__(self, x_factor=0.0, y_factor=0.0, interpolation="bilinear",
                 fill_mode="reflect", fill_value=0.0, data_format=None, seed=None, **kwargs):
        super().__init__(fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                         fill_value=fill_value, data_format=data_format, **kwargs)
        self._x_range = _shear_range(x_factor, "x_factor")
        self._y_range = _shear_range(y_factor, "y_factor")
        # saved as given: Keras 3.15 saves a number f as (-f, f), which its own constructor
        # then refuses, so a file Keras writes that way does not load back into Keras
        self.x_factor, self.y_factor = x_factor, y_factor

    def matrices(self, keys, height, width):
        key_sign, key_x, key_y = split_keys(keys, 3)
        sign = jnp.where(uniform_draws(key_sign, 0.0, 1.0) > 0.5, -1.0, 1.0)
        sx = sign * uniform_draws(key_x, *self._x_range)
        sy = sign * uniform_draws(key_y, *self._y_range)
        ones, zeros = jnp.ones_like(sx), jnp.zeros_like(sx)
        return jnp.stack([ones, sx, zeros, sy, ones, zeros], axis=1)


def _shear_range(factor, argument):
    """Keras's shear rule: a number f in [0, 1] means (-f, f); a pair is sorted. Pairs may
    reach down to -1 (Keras takes [0, 1] only), so that the (-f, f) Keras's config saves for
    a number f loads back."""
    if isinstance(factor, numbers.Real) and not isinstance(factor, bool):
        lower, upper = factor_range(factor, argument, 0, 1)
        return -upper, upper
    return factor_range(factor, argument, -1, 1)


# -- pixel values: contrast and brightness --------------------------------------------------------
def value_range_of(value_range, as_list=False):
    """value_range as a sorted pair of numbers, a tuple or a list as it was given (Keras's
    config keeps it so), or a list where Keras's layer sorts it into one (`as_list`).

    Example:
        >>> value_range_of((255, 0)), value_range_of([0, 1]), value_range_of((0, 1), True)
        ((0, 255), [0, 1], [0, 1])
    """
    if (not isinstance(value_range, (tuple, list)) or len(value_range) != 2
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                       for v in value_range)):
        raise ValueError("value_range must be a pair of numbers (low, high). Received: "
                         f"value_range={value_range!r}")
    return sorted(value_range) if as_list or isinstance(value_range, list) else tuple(
        sorted(value_range))


class RandomContrast(RandomImageLayer):
    """Randomly changes the contrast of images while training, as `keras.layers.RandomContrast`.

    Each image becomes `(x - mean) * c + mean`, with `mean` its mean over height and width
    per channel and c drawn in [1 - low, 1 + high], then is clipped to `value_range`.

    Args:
        factor: (low, high) in [0, 1], or a number f. As Keras 3 does, a number f means
            (0, f): the contrast only increases, in [1, 1 + f]; pass (f, f) for [1 - f, 1 + f].
        value_range: the (low, high) pixel range the output is clipped to; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.array([[[[25.0], [75.0]]]])    # mean 50, spread 50
        >>> out = np.asarray(kilnet.layers.RandomContrast((0.5, 0.5))(images))[0, 0, :, 0]
        >>> contrast = (out[1] - out[0]) / 50.0
        >>> bool(0.5 <= contrast <= 1.5 and abs(out.mean() - 50.0) < 1e-4)
        True
    """

    config_keys = ("factor", "value_range", "seed", "data_format")

    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = factor_range(factor, "factor", 0, 1)
        self.value_range = value_range_of(value_range)

    def augment(self, images, keys):
        c = uniform_draws(keys, 1.0 - self.factor[0], 1.0 + self.factor[1])[:, None, None, None]
        mean = images.mean(axis=(1, 2), keepdims=True)
        return jnp.clip((images - mean) * c.astype(images.dtype) + mean, *self.value_range)


class RandomBrightness(RandomImageLayer):
    """Randomly brightens or darkens images while training, as
    `keras.layers.RandomBrightness`: adds one value per image, drawn in
    [low, high] * (value_range[1] - value_range[0]), then clips to `value_range`.

    Args:
        factor: (low, high) in [-1, 1], or a number f meaning (-f, f).
        value_range: the (low, high) pixel range; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.full((1, 2, 2, 1), 100.0)
        >>> brighter = kilnet.layers.RandomBrightness((0.1, 0.1))
        >>> np.asarray(brighter(images)).round(3).ravel().tolist()
        [125.5, 125.5, 125.5, 125.5]
    """

    config_keys = ("factor", "value_range", "seed", "data_format")

    def __init__(self, factor, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = factor_range(factor, "factor", -1, 1)
        self.value_range = value_range_of(value_range, as_list=True)   # as Keras sorts it

    def augment(self, images, keys):
        span = self.value_range[1] - self.value_range[0]
        delta = uniform_draws(keys, self.factor[0], self.factor[1]) * span
        return jnp.clip(images + delta[:, None, None, None].astype(images.dtype),
                        *self.value_range)


# -- cropping -------------------------------------------------------------------------------------
def _aspect_offsets(height, width, target_h, target_w):
    """Keras's deterministic crop start (top, left): where the largest centered window with
    the target aspect ratio begins, with Keras's integer rounding."""
    rows = max(min(height, int(float(width * target_h) / target_w)), 1)
    cols = max(min(width, int(float(height * target_w) / target_h)), 1)
    return int(float(height - rows) / 2), int(float(width - cols) / 2)


class RandomCrop(RandomImageLayer):
    """Randomly crops images to (height, width) while training, as `keras.layers.RandomCrop`.

    While training, when the images are larger than the target on both sides, one window of
    (height, width) at a random position is cut from every image of the batch (as Keras, the
    whole batch shares the position; it comes from the step's key).

    Otherwise, and at inference, the crop is Keras's deterministic one: a (height, width)
    window starting where the largest centered window with the target aspect ratio starts,
    cut short by the image's edges and then resized (bilinear) to (height, width) if it came
    out smaller. (For an image larger than the target, that window starts at the aspect
    window's corner, not at the image's center: use CenterCrop for a true center crop.)
    Keras 3.15 returns the images unchanged at inference instead (keras-team/keras#21868),
    which breaks the layer's declared output shape; kilnet applies Keras's deterministic crop,
    as Keras does in training for images that are not larger than the target.

    Args:
        height, width: the output size.
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.arange(16.0).reshape(1, 4, 4, 1)
        >>> crop = kilnet.layers.RandomCrop(2, 2)
        >>> crop(images).shape
        (1, 2, 2, 1)
        >>> np.asarray(crop(images, training=False))[0, :, :, 0].tolist()
        [[0.0, 1.0], [4.0, 5.0]]
    """

    config_keys = ("height", "width", "seed", "data_format")

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.height, self.width = as_size(height, "height"), as_size(width, "width")

    def sample_output_shape(self, input_shape):
        check_image_shape(self, input_shape)
        if input_shape[0] is None or input_shape[1] is None:
            raise ValueError("RandomCrop needs images of known height and width. Received: "
                             f"input_shape={tuple(input_shape)}")
        return (self.height, self.width, input_shape[2])

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        x = as_float(x)
        h, w = x.shape[1:3]
        if training and h > self.height and w > self.width:
            return self._random_window(x, self.random_key(rng)), state
        return self._deterministic(x), state

    def _random_window(self, images, rng):
        h, w = images.shape[1:3]
        key_h, key_w = jax.random.split(rng)
        # One position for the batch, uniform over the h - height + 1 possible rows (and
        # columns) as Keras draws it; the clip guards float rounding at the upper end.
        top = jnp.clip(jax.random.uniform(key_h, (), maxval=h - self.height + 1.0)
                       .astype(jnp.int32), 0, h - self.height)
        left = jnp.clip(jax.random.uniform(key_w, (), maxval=w - self.width + 1.0)
                        .astype(jnp.int32), 0, w - self.width)
        zero = jnp.zeros((), jnp.int32)
        size = (images.shape[0], self.height, self.width, images.shape[3])
        return jax.lax.dynamic_slice(images, (zero, top, left, zero), size)

    def _deterministic(self, images):
        n, h, w, c = images.shape
        top, left = _aspect_offsets(h, w, self.height, self.width)
        window = images[:, top:top + self.height, left:left + self.width, :]
        if window.shape[1:3] == (self.height, self.width):
            return window
        return jax.image.resize(window, (n, self.height, self.width, c), method="bilinear",
                                antialias=False)
