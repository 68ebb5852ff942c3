"""Color and intensity augmentation layers (channels-last), as Keras 3's image layers.

They share the rules of kilnet/layers/_augmentation.py: active only while training (identity
at inference; AutoContrast, which is not random, is the exception and always applies), one
random draw per image from a key folded with its row index (so no image depends on the batch
size or on the padding rows of a last partial batch), and `seed` saved for Keras's config
while the model's key decides the draws. As Keras's, they take a batch (batch, height, width,
channels) or one image (height, width, channels).

Images are in `value_range` (default (0, 255)); the layers that work on pixel levels map it
to [0, 255] first (or to [0, 1] for hue), as Keras does, and back.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from kilnet.layers._augmentation import (RandomBrightness, RandomContrast, RandomImageLayer,
                                         factor_range, split_keys, uniform_draws,
                                         value_range_of)
from kilnet.layers._base import set_untracked
from kilnet.layers._preprocessing import as_float, check_image_shape

# ITU-R 601 luma weights, as tf.image.rgb_to_grayscale and Keras use them.
_LUMA = (0.2989, 0.5870, 0.1140)
_EPSILON = 1e-7     # Keras's backend epsilon, in RandomSaturation's factor


class ImageAugmentation(RandomImageLayer):
    """A RandomImageLayer that also takes one unbatched image, as Keras's image layers do:
    the image is augmented as a batch of one.

    Example:
        >>> import numpy as np
        >>> class Negate(ImageAugmentation):
        ...     def augment(self, images, keys):
        ...         return -images
        >>> Negate()(np.ones((2, 2, 1))).shape
        (2, 2, 1)
    """

    def call_input_shape(self, args, kwargs):
        shape = tuple(images_of(args[0]).shape)
        return shape if len(shape) == 3 else shape[1:]

    def apply(self, params, state, x, *, training=False, rng=None, **kwargs):
        if x.ndim == 3:
            out, state = super().apply(params, state, x[None], training=training, rng=rng,
                                       **kwargs)
            return out[0], state
        return super().apply(params, state, x, training=training, rng=rng, **kwargs)


def images_of(data):
    """The images of a layer's input: the array itself, or the "images" of a Keras-style
    dict of data.

    Example:
        >>> import numpy as np
        >>> images_of({"images": np.zeros((1, 2, 2, 3)), "labels": np.zeros((1, 2))}).shape
        (1, 2, 2, 3)
    """
    return data["images"] if isinstance(data, dict) else data


def check_channels(layer, input_shape, allowed):
    """Refuses images whose channel count is not in `allowed` (e.g. hue needs RGB).

    Example:
        >>> check_channels(RandomHue(0.1), (4, 4, 1), (3,))
        Traceback (most recent call last):
        ...
        ValueError: RandomHue needs images with 3 channels (RGB). Received: input_shape=(4, 4, 1)
    """
    check_image_shape(layer, input_shape)
    if input_shape[-1] is not None and input_shape[-1] not in allowed:
        wanted = " or ".join(str(c) for c in allowed)
        raise ValueError(f"{type(layer).__name__} needs images with {wanted} channels"
                         f"{' (RGB)' if allowed == (3,) else ''}. Received: "
                         f"input_shape={tuple(input_shape)}")
    return input_shape


# -- value ranges and color spaces ----------------------------------------------------------------
def rescale(images, source, target):
    """Maps pixel values linearly from the `source` range onto the `target` range.

    Example:
        >>> import numpy as np
        >>> np.asarray(rescale(np.array([0.0, 0.5, 1.0]), (0, 1), (0, 255))).tolist()
        [0.0, 127.5, 255.0]
    """
    if tuple(source) == tuple(target):
        return images
    unit = (images - source[0]) / (source[1] - source[0])
    return unit * (target[1] - target[0]) + target[0]


def grayscale(images):
    """Luma of RGB images, kept with one channel (grayscale images pass through).

    Example:
        >>> import numpy as np
        >>> [round(float(v), 2) for v in np.asarray(grayscale(np.full((1, 3), 100.0))).ravel()]
        [99.99]
    """
    if images.shape[-1] == 1:
        return images
    luma = jnp.asarray(_LUMA, jnp.result_type(images))
    return jnp.tensordot(images, luma, axes=(-1, 0))[..., None]


def rgb_to_hsv(images):
    """Hue, saturation and value in the last axis of RGB images (hue in [0, 1)).

    Example:
        >>> import numpy as np
        >>> [round(float(v), 4) for v in np.asarray(rgb_to_hsv(np.array([0.0, 0.5, 1.0])))]
        [0.5833, 1.0, 1.0]
    """
    r, g, b = images[..., 0], images[..., 1], images[..., 2]
    value = jnp.max(images, axis=-1)
    spread = value - jnp.min(images, axis=-1)
    saturation = jnp.where(value > 0, spread / jnp.where(value > 0, value, 1.0), 0.0)
    sixth = 1.0 / (6.0 * jnp.where(spread > 0, spread, 1.0))
    # the sector of the largest component, red first when two tie (as dm_pix and Keras)
    hue = jnp.where(value == r, (g - b) * sixth,
                    jnp.where(value == g, (b - r) * sixth + 1.0 / 3.0,
                              (r - g) * sixth + 2.0 / 3.0))
    hue = jnp.where(spread > 0, hue, 0.0)
    hue = jnp.where(hue < 0.0, hue + 1.0, hue)
    return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(images):
    """RGB images from hue, saturation and value in the last axis (the inverse of rgb_to_hsv).

    Example:
        >>> import numpy as np
        >>> np.asarray(hsv_to_rgb(np.array([[7 / 12, 1.0, 1.0]]))).round(4).tolist()
        [[0.0, 0.5, 1.0]]
    """
    hue, saturation, value = images[..., 0], images[..., 1], images[..., 2]
    sector = jnp.mod(hue, 1.0) * 6.0

    def channel(weight):
        return value * (1.0 - saturation + saturation * weight)

    red = jnp.clip(jnp.abs(sector - 3.0) - 1.0, 0.0, 1.0)
    green = jnp.clip(2.0 - jnp.abs(sector - 2.0), 0.0, 1.0)
    blue = jnp.clip(2.0 - jnp.abs(sector - 4.0), 0.0, 1.0)
    return jnp.stack([channel(red), channel(green), channel(blue)], axis=-1)


def _per_image(values):
    """Per-image values shaped to broadcast over (batch, height, width, channels)."""
    return values[:, None, None, None]


def _check_unit_number(value, argument):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not 0.0 <= value <= 1.0):
        raise ValueError(f"{argument} must be a number in [0, 1]. Received: "
                         f"{argument}={value!r}")
    return value


# -- layers that choose whether to act on each image --------------------------------------------
class RandomGrayscale(ImageAugmentation):
    """Turns images to grayscale with probability `factor` while training, as
    `keras.layers.RandomGrayscale`; the channels are kept (all equal to the luma
    0.2989 R + 0.5870 G + 0.1140 B).

    Args:
        factor: the probability in [0, 1] that an image turns gray; default 0.5.
        data_format: "channels_last" (or None) only.
        seed: accepted as Keras's; the model's random key decides the draws. (Keras's config
            does not save it, nor does kilnet's.)

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.array([[[[255.0, 0.0, 0.0]]]])
        >>> gray = kilnet.layers.RandomGrayscale(factor=1.0)(images)
        >>> [round(float(v), 2) for v in np.asarray(gray).ravel()]
        [76.22, 76.22, 76.22]
    """

    config_keys = ("factor", "data_format")

    def __init__(self, factor=0.5, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _check_unit_number(factor, "factor")

    def sample_output_shape(self, input_shape):
        return check_channels(self, input_shape, (1, 3))

    def augment(self, images, keys):
        chosen = _per_image(uniform_draws(keys, 0.0, 1.0) < self.factor)
        return jnp.where(chosen, grayscale(images), images)


class RandomInvert(ImageAugmentation):
    """Inverts images (x -> value_range[1] - x, as Keras) while training, each with a
    probability drawn in `factor`, as `keras.layers.RandomInvert`.

    Args:
        factor: a number f draws the probability in [0, f]; a pair (low, high) in [low, high].
            Values in [0, 1]; default 1.0.
        value_range: the (low, high) pixel range; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.array([[[[0.0], [55.0]]]])
        >>> np.asarray(kilnet.layers.RandomInvert(factor=(1.0, 1.0))(images)).ravel().tolist()
        [255.0, 200.0]
    """

    config_keys = ("factor", "value_range", "seed", "data_format")

    def __init__(self, factor=1.0, value_range=(0, 255), seed=None, data_format=None,
                 **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = factor_range(factor, "factor", 0, 1)
        self.value_range = value_range_of(value_range)

    def augment(self, images, keys):
        key_p, key_u = split_keys(keys, 2)
        probability = uniform_draws(key_p, *self.factor)
        chosen = _per_image(uniform_draws(key_u, 0.0, 1.0) < probability)
        return jnp.where(chosen, self.value_range[1] - images, images)


class RandomGaussianBlur(ImageAugmentation):
    """Blurs images with a Gaussian kernel while training, each with a probability drawn in
    `factor`, as `keras.layers.RandomGaussianBlur`; then clips to `value_range`.

    The kernel is zero-padded at the borders ("same" convolution, as Keras). kilnet draws
    the standard deviations per image; Keras 3.15 draws one pair for the whole batch.

    Args:
        factor: a number f draws the blur probability in [0, f]; a pair in [low, high];
            values in [0, 1]; default 1.0 (every image).
        kernel_size: an odd number, or a pair of odd numbers (width, height) as Keras orders
            them; default 3.
        sigma: a number s draws each standard deviation (horizontal, vertical) in [0, s]; a
            pair in [low, high]; values in [0, 1]; default 1.0. (1e-6 is added, as Keras.)
        value_range: the (low, high) pixel range; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.zeros((1, 3, 3, 1)); images[0, 1, 1, 0] = 100.0
        >>> blur = kilnet.layers.RandomGaussianBlur(sigma=(1.0, 1.0))
        >>> round(float(np.asarray(blur(images)).sum()), 3)
        100.0
    """

    config_keys = ("factor", "kernel_size", "sigma", "value_range", "seed", "data_format")

    def __init__(self, factor=1.0, kernel_size=3, sigma=1.0, value_range=(0, 255),
                 data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = factor_range(factor, "factor", 0, 1)
        self.kernel_size = _odd_pair(kernel_size)
        self.sigma = factor_range(sigma, "sigma", 0, 1)
        self.value_range = value_range_of(value_range)

    def augment(self, images, keys):
        key_p, key_u, key_x, key_y = split_keys(keys, 4)
        chosen = _per_image(uniform_draws(key_u, 0.0, 1.0) < uniform_draws(key_p, *self.factor))
        sigma_x = uniform_draws(key_x, *self.sigma) + 1e-6
        sigma_y = uniform_draws(key_y, *self.sigma) + 1e-6
        blurred = jax.vmap(self._blur_one)(images, sigma_x, sigma_y)
        return jnp.clip(jnp.where(chosen, blurred, images), *self.value_range)

    def _blur_one(self, image, sigma_x, sigma_y):
        width, height = self.kernel_size
        kernel = jnp.outer(_gaussian(height, sigma_y, image.dtype),
                           _gaussian(width, sigma_x, image.dtype))
        return depthwise_same(image[None], kernel)[0]


def _gaussian(size, sigma, dtype):
    offsets = jnp.arange(size, dtype=dtype) - (size - 1) / 2.0
    weights = jnp.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def _odd_pair(kernel_size):
    def odd(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 and v % 2
    pair = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * 2
    if len(pair) != 2 or not all(odd(v) for v in pair):
        raise ValueError("kernel_size must be an odd positive integer or a pair of them, e.g. "
                         f"3 or (3, 5). Received: kernel_size={kernel_size!r}")
    return tuple(int(v) for v in pair)


def depthwise_same(images, kernel):
    """Each channel of (batch, height, width, channels) images convolved with one 2-D
    kernel, zero-padded to keep the size ("same").

    Example:
        >>> import numpy as np
        >>> out = depthwise_same(np.ones((1, 3, 3, 2)), np.ones((3, 3)))
        >>> np.asarray(out)[0, :, :, 0].tolist()
        [[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]]
    """
    images = jnp.asarray(images)
    channels = images.shape[-1]
    weights = jnp.tile(jnp.asarray(kernel, images.dtype)[:, :, None, None], (1, 1, 1, channels))
    return jax.lax.conv_general_dilated(images, weights, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=channels)


# -- layers that adjust every image ---------------------------------------------------------------
class _FactorLayer(ImageAugmentation):
    """The shared form of Keras's color layers that take `factor` and `value_range`
    (RandomHue, RandomSaturation, RandomColorDegeneration, RandomSharpness): the factor is
    checked against [factor_low, 1], RGB inputs unless `rgb_only` is False."""

    config_keys = ("factor", "value_range", "seed", "data_format")
    factor_low = 0
    rgb_only = True
    sorts_value_range = True   # into a list, as Keras's layer keeps it (not RandomHue)

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = factor_range(factor, "factor", self.factor_low, 1)
        self.value_range = value_range_of(value_range, as_list=self.sorts_value_range)

    def sample_output_shape(self, input_shape):
        if not self.rgb_only:
            return super().sample_output_shape(input_shape)
        return check_channels(self, input_shape, (3,))


class RandomHue(_FactorLayer):
    """Shifts the hue of RGB images while training, as `keras.layers.RandomHue`.

    Each image's hue (in [0, 1)) moves by +-d/2 (the sign at random), with d drawn in
    `factor`; the images are mapped from `value_range` to [0, 1] and back.

    Args:
        factor: a number f draws d in [0, f]; a pair (low, high) in [low, high]; values in
            [0, 1]. With 1.0 the hue turns by half a circle whatever the sign.
        value_range: the (low, high) pixel range; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> red = np.array([[[[255.0, 0.0, 0.0]]]])
        >>> np.asarray(kilnet.layers.RandomHue((1.0, 1.0))(red)).round(3).tolist()
        [[[[0.0, 255.0, 255.0]]]]
    """

    sorts_value_range = False

    def augment(self, images, keys):
        key_sign, key_size = split_keys(keys, 2)
        sign = jnp.where(uniform_draws(key_sign, 0.0, 1.0) > 0.5, -1.0, 1.0)
        shift = (sign * uniform_draws(key_size, *self.factor) * 0.5).astype(images.dtype)
        hsv = rgb_to_hsv(rescale(images, self.value_range, (0, 1)))
        hue = hsv[..., 0] + shift[:, None, None]
        hue = jnp.where(hue > 1.0, hue - 1.0, jnp.where(hue < 0.0, hue + 1.0, hue))
        rgb = jnp.clip(hsv_to_rgb(hsv.at[..., 0].set(hue)), 0.0, 1.0)
        return rescale(rgb, (0, 1), self.value_range)


class RandomSaturation(_FactorLayer):
    """Scales the saturation of RGB images while training, as `keras.layers.RandomSaturation`.

    Each image's saturation is multiplied by f / (1 - f), f drawn in `factor`: 0.5 keeps
    it, 0 turns the image gray, values near 1 saturate it fully. The saturation is then
    clipped to [0, 1]. (Keras 3.15 clips it to `value_range`, so with (0, 255) a saturation
    above 1 gives pixel values below 0; kilnet keeps colors valid.)

    Args:
        factor: a number f draws in [-f, f] (as Keras; the negative part grays the image); a
            pair (low, high) in [low, high]. Values in [-1, 1].
        value_range: the (low, high) pixel range; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.array([[[[200.0, 100.0, 50.0]]]])
        >>> gray = kilnet.layers.RandomSaturation((0.0, 0.0))
        >>> np.asarray(gray(images)).round(3).tolist()
        [[[[200.0, 200.0, 200.0]]]]
    """

    factor_low = -1

    def augment(self, images, keys):
        f = uniform_draws(keys, *self.factor)
        scale = (f / (1.0 - f + _EPSILON)).astype(images.dtype)
        hsv = rgb_to_hsv(images)
        saturation = jnp.clip(hsv[..., 1] * scale[:, None, None], 0.0, 1.0)
        return hsv_to_rgb(hsv.at[..., 1].set(saturation))


class RandomColorDegeneration(_FactorLayer):
    """Blends RGB images toward their grayscale while training, as
    `keras.layers.RandomColorDegeneration`: x + f * (gray - x) with f drawn in `factor`,
    then clipped to `value_range`.

    Args:
        factor: a number f draws in [-f, f] (as Keras); a pair (low, high) in [low, high].
            Values in [-1, 1]; 1 is fully gray, negative values strengthen the colors.
        value_range: the (low, high) pixel range; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.array([[[[200.0, 100.0, 50.0]]]])
        >>> half = kilnet.layers.RandomColorDegeneration((0.5, 0.5))
        >>> [round(float(v), 2) for v in np.asarray(half(images)).ravel()]
        [162.09, 112.09, 87.09]
    """

    factor_low = -1

    def augment(self, images, keys):
        f = _per_image(uniform_draws(keys, *self.factor)).astype(images.dtype)
        return jnp.clip(images + f * (grayscale(images) - images), *self.value_range)


class RandomSharpness(_FactorLayer):
    """Sharpens or softens images while training, as `keras.layers.RandomSharpness`.

    With f drawn in `factor`, an image becomes x + (1 - 2f) * (smooth - x), where `smooth`
    is x convolved (zero-padded, as Keras) with the 3x3 kernel [[1, 1, 1], [1, 5, 1],
    [1, 1, 1]] / 13; f = 0.5 keeps it, below softens, above sharpens. Then clipped to
    `value_range`.

    Args:
        factor: a number f draws in [0, f]; a pair (low, high) in [low, high]; values in
            [0, 1].
        value_range: the (low, high) pixel range; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.full((1, 3, 3, 1), 13.0)
        >>> keep = kilnet.layers.RandomSharpness((0.5, 0.5))
        >>> np.asarray(keep(images)).ravel().tolist() == images.ravel().tolist()
        True
    """

    _SMOOTHING = ((1.0, 1.0, 1.0), (1.0, 5.0, 1.0), (1.0, 1.0, 1.0))
    rgb_only = False   # any number of channels


    def augment(self, images, keys):
        sharpness = _per_image(uniform_draws(keys, *self.factor) * 2.0).astype(images.dtype)
        smooth = depthwise_same(images, jnp.asarray(self._SMOOTHING) / 13.0)
        return jnp.clip(images + (1.0 - sharpness) * (smooth - images), *self.value_range)


class RandomPosterization(ImageAugmentation):
    """Keeps only the top bits of each 8-bit pixel level while training, as
    `keras.layers.RandomPosterization`: the images are mapped from `value_range` to
    [0, 255], truncated to integers, cut to their top b bits, and mapped back.

    Args:
        factor: the number of bits b to keep: an integer in [1, 8], or a pair (low, high).
            As Keras, a number f means (1, f), and when low < high, b is drawn among the
            integers low..high - 1 (the upper end excluded); low == high keeps exactly low.
        value_range: the (low, high) pixel range; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.array([[[[0.0], [100.0], [255.0]]]])
        >>> two_bits = kilnet.layers.RandomPosterization((2, 2))
        >>> np.asarray(two_bits(images)).ravel().tolist()
        [0.0, 64.0, 192.0]
    """

    config_keys = ("factor", "value_range", "seed", "data_format")

    def __init__(self, factor, value_range=(0, 255), data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = _bits_range(factor)
        self.value_range = value_range_of(value_range, as_list=True)   # as Keras sorts it

    def augment(self, images, keys):
        low, high = self.factor
        if low == high:
            bits = jnp.full((len(keys),), low, jnp.int32)
        else:
            bits = jax.vmap(lambda k: jax.random.randint(k, (), low, high))(keys)
        drop = _per_image((8 - bits).astype(jnp.uint8))
        levels = jnp.clip(rescale(images, self.value_range, (0, 255)), 0, 255).astype(jnp.uint8)
        kept = jnp.left_shift(jnp.right_shift(levels, drop), drop)
        return rescale(kept.astype(images.dtype), (0, 255), self.value_range)


def _bits_range(factor):
    def valid(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and 1 <= v <= 8

    pair = tuple(factor) if isinstance(factor, (tuple, list)) else (1, factor)
    if len(pair) != 2 or not all(valid(v) for v in pair):
        raise ValueError("factor must be a number of bits to keep, an integer in [1, 8], or a "
                         f"pair of them. Received: factor={factor!r}")
    low, high = sorted(int(v) for v in pair)
    return low, high


class Solarization(ImageAugmentation):
    """Solarizes images while training, as `keras.layers.Solarization`: in [0, 255] levels,
    each pixel becomes r = clip(x + a, 0, 255), then 255 - r where r >= t (r stays below t).

    a is drawn in `addition_factor` * 255 and t in `threshold_factor` * 255, per image. With
    the defaults (0, 0) every pixel is inverted. (Keras 3.15 scales only the upper end of each
    range by 255, drawing t in [low, high * 255]; kilnet scales both ends, as Keras documents,
    so that (x, x) fixes t = 255 x.)

    Args:
        addition_factor: a number f means (0, f); a pair (low, high); values in [0, 1].
        threshold_factor: the same for the threshold.
        value_range: the (low, high) pixel range; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.array([[[[10.0], [200.0]]]])
        >>> above_half = kilnet.layers.Solarization(threshold_factor=(0.5, 0.5))
        >>> np.asarray(above_half(images)).ravel().tolist()
        [10.0, 55.0]
    """

    config_keys = ("value_range", "addition_factor", "threshold_factor", "seed", "data_format")

    def __init__(self, addition_factor=0.0, threshold_factor=0.0, value_range=(0, 255),
                 seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.addition_factor = _zero_based_range(addition_factor, "addition_factor")
        self.threshold_factor = _zero_based_range(threshold_factor, "threshold_factor")
        self.value_range = value_range_of(value_range, as_list=True)   # as Keras sorts it

    def augment(self, images, keys):
        key_a, key_t = split_keys(keys, 2)
        addition = uniform_draws(key_a, *(255.0 * f for f in self.addition_factor))
        threshold = uniform_draws(key_t, *(255.0 * f for f in self.threshold_factor))
        levels = rescale(images, self.value_range, (0, 255))
        levels = jnp.clip(levels + _per_image(addition).astype(images.dtype), 0.0, 255.0)
        levels = jnp.where(levels < _per_image(threshold), levels, 255.0 - levels)
        return rescale(levels, (0, 255), self.value_range)


def _zero_based_range(factor, argument):
    """Solarization's rule: a number f means (0, f), a pair is sorted; all in [0, 1]."""
    if isinstance(factor, numbers.Real) and not isinstance(factor, bool):
        factor = (0, factor)   # Keras's (0, f)
    return factor_range(factor, argument, 0, 1)


class RandomColorJitter(ImageAugmentation):
    """Random brightness, contrast, saturation and hue, in that order, while training, as
    `keras.layers.RandomColorJitter`: each factor given builds the layer of that name
    (RandomBrightness, RandomContrast, RandomSaturation, RandomHue) with `value_range`.

    Args:
        value_range: the (low, high) pixel range; default (0, 255).
        brightness_factor, contrast_factor, saturation_factor, hue_factor: the `factor` of
            each step, or None (default) to leave it out.
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.full((1, 2, 2, 3), 100.0)
        >>> brighter = kilnet.layers.RandomColorJitter(brightness_factor=(0.1, 0.1))
        >>> np.asarray(brighter(images)).round(3).ravel()[:3].tolist()
        [125.5, 125.5, 125.5]
    """

    config_keys = ("value_range", "brightness_factor", "contrast_factor", "saturation_factor",
                   "hue_factor", "seed", "data_format")

    def __init__(self, value_range=(0, 255), brightness_factor=None, contrast_factor=None,
                 saturation_factor=None, hue_factor=None, seed=None, data_format=None,
                 **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.value_range = value_range_of(value_range)
        self.brightness_factor, self.contrast_factor = brightness_factor, contrast_factor
        self.saturation_factor, self.hue_factor = saturation_factor, hue_factor
        kinds = ((RandomBrightness, brightness_factor), (RandomContrast, contrast_factor),
                 (RandomSaturation, saturation_factor), (RandomHue, hue_factor))
        # the steps compute; they hold no weights, so the layer does not track them
        set_untracked(self, "_steps", tuple(kind(factor, value_range=value_range)
                                            for kind, factor in kinds if factor is not None))
        self.keep_generators_for(self._steps)

    def sample_output_shape(self, input_shape):
        for step in self._steps:
            step.sample_output_shape(input_shape)
        return input_shape

    def augment(self, images, keys):
        for step, step_keys in zip(self._steps, split_keys(keys, 4)):
            images = step.augment(images, step_keys)
        return images


# -- layers that compute from each image's own levels ---------------------------------------------
class AutoContrast(ImageAugmentation):
    """Stretches each channel of each image to fill `value_range`, as
    `keras.layers.AutoContrast`: in [0, 255] levels, (x - min) * 255 / (max - min), per
    image and channel. Not random: it applies in training and at inference alike, as Keras's.
    A constant channel is left as it is.

    Args:
        value_range: the (low, high) pixel range; default (0, 255).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.array([[[[50.0], [100.0], [150.0]]]])
        >>> np.asarray(kilnet.layers.AutoContrast()(images, training=False)).ravel().tolist()
        [0.0, 127.5, 255.0]
    """

    draws_randomly = False

    config_keys = ("value_range", "data_format")

    def __init__(self, value_range=(0, 255), data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.value_range = value_range_of(value_range, as_list=True)   # as Keras sorts it

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        x = as_float(x)
        if x.ndim == 3:
            return self.augment(x[None])[0], state
        return self.augment(x), state

    def augment(self, images, keys=None):
        levels = rescale(images, self.value_range, (0, 255))
        low = levels.min(axis=(1, 2), keepdims=True)
        high = levels.max(axis=(1, 2), keepdims=True)
        scale = 255.0 / jnp.where(high > low, high - low, 1.0)
        stretched = jnp.clip(levels * scale - low * scale, 0.0, 255.0)
        return jnp.where(high > low, rescale(stretched, (0, 255), self.value_range), images)


class Equalization(ImageAugmentation):
    """Equalizes the histogram of each channel of each image while training, as
    `keras.layers.Equalization`: in [0, 255] levels, pixels are binned into `bins` bins
    and mapped through the histogram's normalized cumulative counts (rounded to levels).
    A channel with a single occupied bin is left as it is. Not random; identity at
    inference, as Keras's.

    kilnet takes each image's own histogram. Keras 3.15 counts one histogram per channel
    over the whole batch, so an image's output there depends on the other images of its
    batch (and on a last batch's padding rows); for a batch of one image the two agree.

    Args:
        value_range: the (low, high) pixel range; default (0, 255).
        bins: the number of histogram bins; default 256.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.array([[[[10.0], [20.0], [20.0], [30.0]]]])
        >>> np.asarray(kilnet.layers.Equalization()(images)).ravel().tolist()
        [0.0, 170.0, 170.0, 255.0]
    """

    draws_randomly = False

    config_keys = ("bins", "value_range", "data_format")

    def __init__(self, value_range=(0, 255), bins=256, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        if not isinstance(bins, numbers.Integral) or isinstance(bins, bool) or bins < 2:
            raise ValueError("bins must be an integer of at least 2 (default 256). Received: "
                             f"bins={bins!r}")
        self.bins = int(bins)
        self.value_range = value_range_of(value_range, as_list=True)   # as Keras sorts it

    def augment(self, images, keys):
        levels = rescale(images, self.value_range, (0, 255))
        per_channel = jax.vmap(self._equalize, in_axes=-1, out_axes=-1)   # over channels
        equalized = jax.vmap(per_channel)(levels)                          # over images
        return rescale(equalized, (0, 255), self.value_range)

    def _equalize(self, channel):
        bins = self.bins
        # the bin and the lookup index round differently, as Keras computes them
        index = jnp.clip((channel * (bins - 1) / 255.0).astype(jnp.int32), 0, bins - 1)
        counts = jnp.zeros(bins, jnp.int32).at[index.ravel()].add(1)
        cumulative = jnp.cumsum(counts)
        first = cumulative[jnp.argmax(cumulative > 0)]
        total = cumulative[-1] - first
        table = (cumulative - first) * 255 / jnp.where(total == 0, 1, total)
        table = jnp.clip(jnp.round(table), 0, 255).astype(channel.dtype)
        lookup = jnp.clip(channel / 255.0 * (bins - 1), 0, bins - 1).astype(jnp.int32)
        return jnp.where(jnp.count_nonzero(counts) <= 1, channel, table[lookup])
