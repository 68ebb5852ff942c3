"""Augmentation layers that warp images (RandomPerspective, RandomElasticTransform) and AugMix,
which mixes chains of augmentations; as Keras 3's, channels-last.

They follow the rules of kilnet/layers/_augmentation.py: active only while training (identity
at inference), one random draw per image from a key folded with its row index (no image
depends on its batch), `seed` saved for Keras's config while the model's key decides the
draws; a batch or one unbatched image. The warps are kilnet.ops.image's perspective_transform,
gaussian_blur and map_coordinates, so given the same draws they compute what Keras computes
(the `warp` and `distort` methods take the draws, for that comparison).

Where kilnet draws per image and Keras per batch: RandomElasticTransform's distortion strength
(Keras draws one for the batch) and its noise field (kilnet: one per image from its key; Keras
one for the batch, from one key, so a batch of one image with the same key gives Keras's
field); AugMix's chains, mixing weights and operations (Keras draws them once per batch, its
operations with Python's `random`, which no seed reaches).
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from kilnet.layers._augmentation import (RandomBrightness, RandomContrast, RandomRotation,
                                         RandomShear, RandomTranslation, factor_range,
                                         split_keys, uniform_draws, value_range_of)
from kilnet.layers._base import set_untracked
from kilnet.layers._color_augmentation import (AutoContrast, Equalization, ImageAugmentation,
                                               RandomColorDegeneration, RandomPosterization,
                                               RandomSharpness, Solarization)
from kilnet.ops import image as image_ops


def applied_draws(keys, factor):
    """Keras's rule for whether each image is transformed: a probability drawn in `factor`,
    then a threshold in [0, 1) that must fall below it.

    Example:
        >>> import jax
        >>> keys = jax.random.split(jax.random.key(0), 4)
        >>> applied_draws(keys, (1.0, 1.0)).tolist(), applied_draws(keys, (0.0, 0.0)).tolist()
        ([True, True, True, True], [False, False, False, False])
    """
    key_probability, key_threshold = split_keys(keys, 2)
    return (uniform_draws(key_threshold, 0.0, 1.0)
            < uniform_draws(key_probability, *factor))


def corner_points(height, width):
    """The four corners (x, y) of an image, in Keras's order: top left, top right, bottom
    left, bottom right.

    Example:
        >>> corner_points(3, 5).tolist()
        [[0.0, 0.0], [4.0, 0.0], [0.0, 2.0], [4.0, 2.0]]
    """
    return jnp.array([[0.0, 0.0], [width - 1, 0.0], [0.0, height - 1],
                      [width - 1, height - 1]], jnp.float32)


class RandomPerspective(ImageAugmentation):
    """Randomly distorts the perspective of images while training, as
    `keras.layers.RandomPerspective`: each corner (x, y) moves to (x, y) * (1 + s), with s drawn
    per coordinate in [-scale / 2, scale / 2], and the image is warped to match (as Keras, the
    top left corner, at (0, 0), stays).

    Args:
        factor: the probability that an image is transformed: a number f means a probability
            drawn in [0, f] per image, a pair (low, high) one drawn in it; in [0, 1]; default
            1.0.
        scale: how far the corners move, in [0, 1]; default 1.0.
        interpolation: "bilinear" (default) or "nearest".
        fill_value: the value of pixels read from outside the image; default 0.0.
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.arange(32.0).reshape(2, 4, 4, 1)
        >>> layer = kilnet.layers.RandomPerspective(scale=0.5)
        >>> layer(images).shape
        (2, 4, 4, 1)
        >>> bool((np.asarray(layer(images, training=False)) == images).all())
        True
    """

    config_keys = ("factor", "scale", "interpolation", "fill_value", "seed", "data_format")

    def __init__(self, factor=1.0, scale=1.0, interpolation="bilinear", fill_value=0.0,
                 seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = factor_range(factor, "factor", 0, 1)
        self.scale = _unit_number(scale, "scale")
        self.interpolation = _interpolation(interpolation)
        self.fill_value = _number(fill_value, "fill_value")

    def augment(self, images, keys):
        key_applied, key_shift = split_keys(keys, 2)
        half = 0.5 * self.scale
        shifts = jax.vmap(lambda k: jax.random.uniform(k, (4, 2), minval=-half,
                                                       maxval=half))(key_shift)
        return self.warp(images, shifts, applied_draws(key_applied, self.factor))

    def warp(self, images, shifts, applied):
        """The images (batch, h, w, c) with each one's corners moved by its relative `shifts`
        (batch, 4, 2), where `applied` (batch,) is True; the others unchanged."""
        start = jnp.broadcast_to(corner_points(images.shape[1], images.shape[2]), shifts.shape)
        warped = image_ops.perspective_transform(images, start, start + start * shifts,
                                                 self.interpolation, self.fill_value)
        return jnp.where(applied[:, None, None, None], warped, images)


class RandomElasticTransform(ImageAugmentation):
    """Random elastic distortions while training, as `keras.layers.RandomElasticTransform`:
    each pixel reads the image at its position moved by a smooth random field (normal noise
    blurred by a Gaussian of std sigma, times alpha, one field for both axes as Keras on JAX),
    with alpha = 0.1 max(h, w) d and sigma = 0.05 min(h, w) d for a strength d drawn in
    `scale`; the result is clipped to `value_range`.

    kilnet draws d per image (Keras once per batch); the blur's kernel is sized for the
    largest d (Keras's, int(6 sigma) | 1, for its d), so where scale is a range the Gaussian
    keeps the tails Keras's smaller kernel cuts at 3 sigma (under 0.3% of its weight).

    Args:
        factor: the probability that an image is transformed (as RandomPerspective's); default
            1.0.
        scale: the range of d, a number s meaning [0, s], in [0, 1]; default 1.0.
        interpolation: "bilinear" (default) or "nearest".
        fill_mode: "reflect" (default), "constant", "nearest", "wrap" or "mirror".
        fill_value: the value outside the image for fill_mode="constant"; default 0.0.
        value_range: the (low, high) pixel range the output is clipped to; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3))
        >>> out = np.asarray(kilnet.layers.RandomElasticTransform()(images))
        >>> out.shape, bool(0 <= out.min() and out.max() <= 255)
        ((2, 8, 8, 3), True)
    """

    config_keys = ("factor", "scale", "interpolation", "fill_mode", "fill_value",
                   "value_range", "seed", "data_format")

    def __init__(self, factor=1.0, scale=1.0, interpolation="bilinear", fill_mode="reflect",
                 fill_value=0.0, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = factor_range(factor, "factor", 0, 1)
        self.scale = factor_range(scale, "scale", 0, 1)
        self.interpolation = _interpolation(interpolation)
        if fill_mode not in image_ops.FILL_MODES:
            raise ValueError(f"fill_mode must be one of {list(image_ops.FILL_MODES)}. "
                             f"Received: fill_mode={fill_mode!r}")
        self.fill_mode = fill_mode
        self.fill_value = _number(fill_value, "fill_value")
        self.value_range = value_range_of(value_range)

    def augment(self, images, keys):
        if self.scale[1] == 0 or self.factor[1] == 0:
            return images   # as Keras: no transformation at all, not even the clip
        key_applied, key_strength, key_noise = split_keys(keys, 3)
        strength = uniform_draws(key_strength, *self.scale)
        return self.distort(images, key_noise, strength, applied_draws(key_applied,
                                                                       self.factor))

    def distort(self, images, keys, strength, applied):
        """The images (batch, h, w, c) displaced by the fields of `keys` (one per image) with
        strengths `strength` (batch,) where `applied` (batch,) is True, then all clipped to
        value_range."""
        height, width = images.shape[1:3]
        alpha = max(height, width) * 0.1 * strength
        sigma = min(height, width) * 0.05 * strength
        displace = functools.partial(_displace, size=_kernel_size(min(height, width),
                                                                  self.scale[1]),
                                     order=image_ops.SPLINE_ORDERS[self.interpolation],
                                     fill_mode=self.fill_mode, fill_value=self.fill_value)
        moved = jax.vmap(displace)(images, keys, alpha, sigma)
        images = jnp.where(applied[:, None, None, None], moved, images)
        return jnp.clip(images, *self.value_range)


def _kernel_size(side, strength):
    """Keras's blur kernel size, int(6 sigma) | 1, for sigma = 0.05 side strength computed in
    float32 as Keras computes it."""
    sigma = np.float32(side) * (np.float32(0.05) * np.float32(strength))
    return int(np.float32(6) * sigma) | 1


def _displace(image, key, alpha, sigma, size, order, fill_mode, fill_value):
    """One image (h, w, c) read at its pixel positions moved, along both axes, by alpha times
    normal noise (std sigma) blurred by a Gaussian of std sigma."""
    height, width = image.shape[:2]
    noise = jax.random.normal(key, (1, height, width, 1), image.dtype) * sigma
    # a strength of 0 moves nothing (alpha 0); the floor keeps its Gaussian finite
    blur_sigma = jnp.maximum(sigma, 1e-3)
    field = image_ops.gaussian_blur(noise, (size, size), (blur_sigma, blur_sigma))
    shift = alpha * field[0, :, :, 0]
    rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
    positions = jnp.stack([rows + shift, cols + shift])

    def read(channel):
        return image_ops.map_coordinates(channel, positions, order, fill_mode, fill_value)

    return jax.vmap(read, in_axes=2, out_axes=2)(image).astype(image.dtype)


class AugMix(ImageAugmentation):
    """AugMix (Hendrycks et al., 2020) while training, as `keras.layers.AugMix`: each image
    goes through `num_chains` chains of up to `chain_depth` operations (each step one of the
    operations, or none, chosen at random), the chains are averaged with Dirichlet(alpha)
    weights, and the result is mixed with the image by a Beta(alpha, alpha) weight m:
    `m * image + (1 - m) * chains`, clipped to value_range.

    The operations are Keras's: RandomShear, RandomTranslation, RandomRotation,
    RandomPosterization, Solarization, AutoContrast, Equalization, and with all_ops also
    RandomBrightness, RandomColorDegeneration, RandomContrast and RandomSharpness, built with
    `factor` as Keras builds them. kilnet draws the chains, weights and operations per image;
    Keras once per batch.

    Args:
        value_range: the (low, high) pixel range; default (0, 255).
        num_chains: how many chains are mixed; default 3.
        chain_depth: the most operations in a chain; default 3.
        factor: the operations' strength: a number f means (0, f), a pair (low, high); in
            [0, 1]; default 0.3.
        alpha: the Dirichlet and Beta distributions' parameter; default 1.0.
        all_ops: include the four intensity operations; default True.
        interpolation: "bilinear" (default) or "nearest", for shear, translation and
            rotation.
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.random.default_rng(0).uniform(0, 255, (2, 6, 6, 3))
        >>> layer = kilnet.layers.AugMix(num_chains=2, chain_depth=1)
        >>> out = np.asarray(layer(images))
        >>> out.shape, bool(0 <= out.min() and out.max() <= 255)
        ((2, 6, 6, 3), True)
    """

    config_keys = ("value_range", "num_chains", "chain_depth", "factor", "alpha", "all_ops",
                   "interpolation", "seed", "data_format")

    def __init__(self, value_range=(0, 255), num_chains=3, chain_depth=3, factor=0.3,
                 alpha=1.0, all_ops=True, interpolation="bilinear", seed=None,
                 data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.value_range = value_range_of(value_range)
        self.num_chains = _count(num_chains, "num_chains", smallest=1)
        self.chain_depth = _count(chain_depth, "chain_depth", smallest=0)
        self.factor = factor_range(factor, "factor", 0, 1)
        if (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
                or not alpha > 0):
            raise ValueError("alpha must be a positive number (the Dirichlet and Beta "
                             f"parameter, default 1.0). Received: alpha={alpha!r}")
        self.alpha = float(alpha)
        if not isinstance(all_ops, bool):
            raise TypeError(f"all_ops must be True or False. Received: all_ops={all_ops!r}")
        self.all_ops = all_ops
        self.interpolation = _interpolation(interpolation)
        # the operations compute; they hold no weights, so the layer does not track them
        set_untracked(self, "_operations", self._build_operations())
        self.keep_generators_for(self._operations)

    def _build_operations(self):
        f, vr, interpolation = self.factor, self.value_range, self.interpolation
        operations = (RandomShear(f, f, interpolation=interpolation),
                      RandomTranslation(f, f, interpolation=interpolation),
                      RandomRotation(f, interpolation=interpolation),
                      RandomPosterization(max(1, int(8 * f[1])), value_range=vr),
                      Solarization(f, f, value_range=vr),
                      AutoContrast(value_range=vr),
                      Equalization(value_range=vr))
        if self.all_ops:
            operations += (RandomBrightness(f, value_range=vr),
                           RandomColorDegeneration(f, value_range=vr),
                           RandomContrast(f, value_range=vr),
                           RandomSharpness(f, value_range=vr))
        return operations

    def augment(self, images, keys):
        key_weights, key_mix, key_chains = split_keys(keys, 3)
        concentration = jnp.full((self.num_chains,), self.alpha)
        chain_weights = jax.vmap(lambda k: jax.random.dirichlet(k, concentration))(key_weights)
        mix = jax.vmap(lambda k: jax.random.beta(k, self.alpha, self.alpha))(key_mix)
        chains = jnp.zeros_like(images)
        for index, chain_keys in enumerate(split_keys(key_chains, self.num_chains)):
            chain = images
            for step_keys in split_keys(chain_keys, self.chain_depth):
                chain = self._random_step(chain, step_keys)
            chains = chains + chain * chain_weights[:, index, None, None, None]
        mix = mix[:, None, None, None].astype(images.dtype)
        return jnp.clip(mix * images + (1 - mix) * chains, *self.value_range)

    def _random_step(self, images, keys):
        """Each image through one operation chosen at random, or through none (Keras's
        choice among the operations and None)."""
        count = len(self._operations)
        key_choice, key_draws = split_keys(keys, 2)
        choice = jax.vmap(lambda k: jax.random.randint(k, (), 0, count + 1))(key_choice)
        outcomes = [operation.augment(images, op_keys)
                    for operation, op_keys in zip(self._operations,
                                                  split_keys(key_draws, count))]
        return jnp.choose(choice[:, None, None, None], outcomes + [images], mode="clip")


# -- argument checks ------------------------------------------------------------------------------
def _interpolation(interpolation):
    if interpolation not in image_ops.SPLINE_ORDERS:
        raise ValueError(f"interpolation must be one of {list(image_ops.SPLINE_ORDERS)}. "
                         f"Received: interpolation={interpolation!r}")
    return interpolation


def _number(value, argument):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a number. Received: {argument}={value!r}")
    return float(value)


def _unit_number(value, argument):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{argument} must be a number in [0, 1]. Received: "
                         f"{argument}={value!r}")
    return float(value)


def _count(value, argument, smallest):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < smallest:
        raise ValueError(f"{argument} must be an integer of at least {smallest}. Received: "
                         f"{argument}={value!r}")
    return int(value)
