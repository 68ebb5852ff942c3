"""Augmentation layers that mix the images of a batch (and their labels), MixUp and CutMix,
and RandomErasing, which fills a box as CutMix pastes one; and the layers that combine
augmentations, RandAugment and Pipeline; as Keras 3's.

MixUp and CutMix, as Keras's, take images, or a dict {"images": ..., "labels": ...} and then
return a dict with both mixed by the same draw (the way a data pipeline calls them, e.g. on each
batch before fit). Inside a model they see only the images. Each image is mixed with the
image at its place in a random permutation of the batch; the permutation is drawn for the
whole batch (it cannot be per image), the mixing weights per image from keys folded with
the row index. At inference, and for one unbatched image, the data pass through unchanged.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from kilnet.layers import _nested
from kilnet.layers._augmentation import (RandomBrightness, RandomContrast, RandomRotation,
                                         RandomShear, RandomTranslation, factor_range,
                                         split_keys, uniform_draws, value_range_of)
from kilnet.layers._base import Layer, set_untracked
from kilnet.layers._color_augmentation import (AutoContrast, Equalization, ImageAugmentation,
                                               RandomColorDegeneration, RandomPosterization,
                                               RandomSharpness, Solarization, images_of)
from kilnet.layers._preprocessing import as_float

_DATA_KEYS = ("images", "labels")


def _check_data(data):
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(_DATA_KEYS))
        if "images" not in data or unknown:
            raise ValueError('A dict of data must hold "images" and may hold "labels" '
                             "(bounding boxes and segmentation masks are not supported). "
                             f"Received keys: {sorted(data)}")


class _BatchMixing(ImageAugmentation):
    """Shared by MixUp and CutMix: the dict convention, the training switch and the
    permutation; subclasses say how images and labels mix."""

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        _check_data(x)
        images = as_float(images_of(x))
        labels = x.get("labels") if isinstance(x, dict) else None
        if training and images.ndim == 4:
            key_order, key_rows = jax.random.split(self.random_key(rng))
            order = jax.random.permutation(key_order, images.shape[0])
            keys = jax.vmap(lambda i: jax.random.fold_in(key_rows, i))(
                jnp.arange(images.shape[0]))
            images, labels = self.mix(images, labels, order, keys)
        if isinstance(x, dict):
            return ({"images": images} if labels is None
                    else {"images": images, "labels": labels}), state
        return images, state

    def mix(self, images, labels, order, keys):
        """(images, labels) mixed with images[order] (labels may be None)."""
        raise NotImplementedError


def _mix_labels(labels, weight, order):
    if labels is None:
        return None
    labels = as_float(jnp.asarray(labels))
    weight = weight.reshape((-1,) + (1,) * (labels.ndim - 1)).astype(labels.dtype)
    return weight * labels + (1.0 - weight) * labels[order]


class MixUp(_BatchMixing):
    """MixUp while training, as `keras.layers.MixUp`: each image (and label) becomes
    w * x + (1 - w) * x[j], j its partner in a random permutation of the batch, w drawn
    from Beta(alpha, alpha) per image.

    Args:
        alpha: the Beta distribution's parameter (> 0); default 0.2 (weights mostly near 0
            or 1).
        data_format: "channels_last" (or None) only.
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> data = {"images": np.stack([np.zeros((2, 2, 1)), np.ones((2, 2, 1))]),
        ...         "labels": np.array([[1.0, 0.0], [0.0, 1.0]])}
        >>> out = kilnet.layers.MixUp(alpha=0.5)(data)
        >>> mixed = np.asarray(out["images"])[:, 0, 0, 0]
        >>> np.allclose(np.asarray(out["labels"])[:, 1], mixed, atol=1e-6)
        True
    """

    config_keys = ("alpha", "seed", "data_format")

    def __init__(self, alpha=0.2, data_format=None, seed=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool) or not alpha > 0:
            raise ValueError("alpha must be a positive number (the Beta distribution's "
                             f"parameter, e.g. 0.2). Received: alpha={alpha!r}")
        self.alpha = alpha

    def mix(self, images, labels, order, keys):
        weight = jax.vmap(lambda k: jax.random.beta(k, self.alpha, self.alpha))(keys)
        w = weight[:, None, None, None].astype(images.dtype)
        return w * images + (1.0 - w) * images[order], _mix_labels(labels, weight, order)


class CutMix(_BatchMixing):
    """CutMix while training, as `keras.layers.CutMix`: a box of each image is replaced
    by the same box of its partner in a random permutation of the batch, and the labels
    mix in proportion to the areas.

    Per image, as Keras: lam is drawn from Beta(a, a) (a drawn in `factor` once per batch,
    plus 1e-6); the box has sides sqrt(1 - lam) * (height, width), at a uniform position
    inside the image, and covers the pixels whose (row, column) lies in it; the label
    weight of the image itself is 1 - box area / image area.

    Args:
        factor: a number f draws a in [0, f]; a pair (low, high) in [low, high]; values in
            [0, 1]; default 1.0.
        seed: accepted for Keras compatibility; the model's random key decides the draws.
        data_format: "channels_last" (or None) only.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> data = {"images": np.stack([np.zeros((4, 4, 1)), np.ones((4, 4, 1))]),
        ...         "labels": np.array([[1.0, 0.0], [0.0, 1.0]])}
        >>> out = kilnet.layers.CutMix()(data)
        >>> sorted(set(np.asarray(out["images"]).ravel().tolist()) - {0.0, 1.0})
        []
    """

    config_keys = ("factor", "seed", "data_format")

    def __init__(self, factor=1.0, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = factor_range(factor, "factor", 0, 1)

    def mix(self, images, labels, order, keys):
        n, height, width, _ = images.shape
        key_alpha, key_lam, key_x, key_y = split_keys(keys, 4)
        # Keras draws the Beta parameter once per batch: the first image's key does
        alpha = uniform_draws(key_alpha[:1], *self.factor)[0] + 1e-6
        lam = jax.vmap(lambda k: jax.random.beta(k, alpha, alpha))(key_lam)
        ratio = jnp.sqrt(1.0 - lam)
        x0, x1 = _box_side(key_x, width, ratio)
        y0, y1 = _box_side(key_y, height, ratio)
        inside = _box_mask(height, width, x0, x1, y0, y1)
        weight = 1.0 - (x1 - x0) * (y1 - y0) / (width * height)
        return jnp.where(inside, images[order], images), _mix_labels(labels, weight, order)


def _box_side(keys, length, ratio):
    """(start, end) of a box side of ratio * length at a uniform position along it."""
    side = ratio * length
    start = uniform_draws(keys, 0.0, 1.0) * (length - side)
    return start, start + side


def _box_mask(height, width, x0, x1, y0, y1):
    """(batch, height, width, 1): whether a pixel's (row, column) lies in its image's box
    [y0, y1) x [x0, x1)."""
    rows = jnp.arange(height, dtype=x0.dtype)[None, :, None, None]
    cols = jnp.arange(width, dtype=x0.dtype)[None, None, :, None]
    return ((cols >= x0[:, None, None, None]) & (cols < x1[:, None, None, None])
            & (rows >= y0[:, None, None, None]) & (rows < y1[:, None, None, None]))


class RandomErasing(ImageAugmentation):
    """Erases a random box of images while training, as `keras.layers.RandomErasing`: each
    image, with a probability drawn in `factor`, gets a box filled with `fill_value`.

    The box's width and height are sqrt(s) times the image's, with s drawn in `scale` for
    each side, at a uniform position inside the image (as Keras).

    Args:
        factor: a number f draws the probability in [0, f]; a pair in [low, high]; values in
            [0, 1]; default 1.0.
        scale: a number s draws the area fractions in [0, s]; a pair in [low, high]; values
            in [0, 1]; default (0.02, 0.33).
        fill_value: None (default) fills with Gaussian noise times value_range[1] (as Keras),
            a number with that value, a list of 3 numbers with one value per channel; all
            clipped to value_range.
        value_range: the (low, high) pixel range; default (0, 255).
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.full((1, 8, 8, 1), 100.0)
        >>> erase = kilnet.layers.RandomErasing(factor=(1.0, 1.0), scale=(0.25, 0.25),
        ...                                     fill_value=0.0)
        >>> int((np.asarray(erase(images)) == 0.0).sum())
        16
    """

    config_keys = ("factor", "scale", "fill_value", "value_range", "seed", "data_format")

    def __init__(self, factor=1.0, scale=(0.02, 0.33), fill_value=None, value_range=(0, 255),
                 seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.factor = factor_range(factor, "factor", 0, 1)
        self.scale = factor_range(scale, "scale", 0, 1)
        self.fill_value = _check_fill_value(fill_value)
        self.value_range = value_range_of(value_range)

    def augment(self, images, keys):
        _, height, width, _ = images.shape
        key_p, key_u, key_w, key_h, key_x, key_y, key_fill = split_keys(keys, 7)
        chosen = uniform_draws(key_u, 0.0, 1.0) < uniform_draws(key_p, *self.factor)
        x0, x1 = _box_side(key_x, width, jnp.sqrt(uniform_draws(key_w, *self.scale)))
        y0, y1 = _box_side(key_y, height, jnp.sqrt(uniform_draws(key_h, *self.scale)))
        inside = _box_mask(height, width, x0, x1, y0, y1) & chosen[:, None, None, None]
        return jnp.where(inside, self._fill(images, key_fill), images)

    def _fill(self, images, keys):
        if self.fill_value is None:
            noise = jax.vmap(lambda k: jax.random.normal(k, images.shape[1:], images.dtype))(keys)
            fill = noise * self.value_range[1]
        else:
            fill = jnp.broadcast_to(jnp.asarray(self.fill_value, images.dtype), images.shape)
        return jnp.clip(fill, *self.value_range)


def _check_fill_value(fill_value):
    def number(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    if fill_value is None or number(fill_value):
        return fill_value
    if isinstance(fill_value, (tuple, list)) and len(fill_value) == 3 and all(
            number(v) for v in fill_value):
        return list(fill_value)
    raise ValueError("fill_value must be None (noise), a number, or a list of 3 numbers (one "
                     f"per channel). Received: fill_value={fill_value!r}")


class RandAugment(ImageAugmentation):
    """RandAugment while training, as `keras.layers.RandAugment`: `num_ops` times, each
    image goes through one operation chosen at random among Keras's eleven: RandomShear,
    RandomTranslation, RandomRotation, RandomBrightness, RandomColorDegeneration,
    RandomContrast, RandomSharpness, RandomPosterization, Solarization, AutoContrast and
    Equalization, each built with `factor` as Keras builds it.

    kilnet chooses the operations and their draws per image, so that no image depends on
    its batch; Keras 3.15 chooses the operations once per batch (every image of a batch gets
    the same ones).

    Args:
        value_range: the (low, high) pixel range; default (0, 255).
        num_ops: how many operations each image goes through; default 2.
        factor: the operations' strength: a number f means (0, f), a pair (low, high);
            values in [0, 1]; default 0.5.
        interpolation: "bilinear" (default) or "nearest", for shear, translation, rotation.
        seed: accepted for Keras compatibility; the model's random key decides the draws.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3))
        >>> out = kilnet.layers.RandAugment()(images)
        >>> out.shape, bool(np.asarray(out).min() >= 0 and np.asarray(out).max() <= 255)
        ((2, 8, 8, 3), True)
    """

    config_keys = ("value_range", "num_ops", "factor", "interpolation", "seed", "data_format")

    def __init__(self, value_range=(0, 255), num_ops=2, factor=0.5, interpolation="bilinear",
                 seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        if not isinstance(num_ops, numbers.Integral) or isinstance(num_ops, bool) or num_ops < 0:
            raise ValueError("num_ops must be a non-negative integer (default 2). Received: "
                             f"num_ops={num_ops!r}")
        self.value_range = value_range_of(value_range)
        self.num_ops, self.interpolation = int(num_ops), interpolation
        self.factor = factor_range(factor, "factor", 0, 1)
        # the operations compute; they hold no weights, so the layer does not track them
        set_untracked(self, "_operations", self._build_operations())
        self.keep_generators_for(self._operations)

    def _build_operations(self):
        f, vr, interpolation = self.factor, self.value_range, self.interpolation
        return (RandomShear(f, f, interpolation=interpolation),
                RandomTranslation(f, f, interpolation=interpolation),
                RandomRotation(f, interpolation=interpolation),
                RandomBrightness(f, value_range=vr),
                RandomColorDegeneration(f, value_range=vr),
                RandomContrast(f, value_range=vr),
                RandomSharpness(f, value_range=vr),
                RandomPosterization(max(1, int(8 * f[1])), value_range=vr),
                Solarization(f, f, value_range=vr),
                AutoContrast(value_range=vr),
                Equalization(value_range=vr))

    def augment(self, images, keys):
        count = len(self._operations)
        for op_keys in split_keys(keys, self.num_ops):
            key_choice, key_draws = split_keys(op_keys, 2)
            choice = jax.vmap(lambda k: jax.random.randint(k, (), 0, count))(key_choice)
            outcomes = [operation.augment(images, keys)
                        for operation, keys in zip(self._operations,
                                                   split_keys(key_draws, count))]
            images = jnp.choose(choice[:, None, None, None], outcomes, mode="clip")
        return images


class Pipeline(Layer):
    """Applies a sequence of layers in order, as `keras.layers.Pipeline`: a lighter
    Sequential for preprocessing and augmentation (it is not a Model: no fit, no summary).

    Each layer gets the call's training flag and its own random key. A model file holds
    the layers' configs nested in the pipeline's ("layers"), as Keras writes them.

    Args:
        layers: a list of kilnet layers.
        name: the layer's name.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> pipeline = kilnet.layers.Pipeline([kilnet.layers.AutoContrast(),
        ...                                    kilnet.layers.RandomInvert((1.0, 1.0))])
        >>> np.asarray(pipeline(np.array([[[[50.0], [100.0]]]]))).ravel().tolist()
        [255.0, 0.0]
    """

    eager_training_default = True   # Keras's Pipeline.call defaults to training=True

    def __init__(self, layers, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        if not isinstance(layers, (list, tuple)) or not all(
                isinstance(layer, Layer) for layer in layers):
            raise ValueError("Pipeline takes a list of kilnet layers. Received: "
                             f"layers={layers!r:.100}")
        self._pipeline_layers = list(layers)

    @property
    def layers(self):
        """The steps, in order (Keras's Pipeline.layers)."""
        return list(self._pipeline_layers)

    @property
    def sublayers(self):
        return self.layers

    def get_config(self):
        # Keras's Pipeline config holds its layers and name only (its constructor refuses
        # trainable and dtype); kilnet adds a policy other than float32
        config = {"layers": [_nested.keras_entry(layer) for layer in self._pipeline_layers],
                  "name": self.name}
        if self._dtype_policy.name != "float32":
            config["dtype"] = super().get_config()["dtype"]
        return config

    @classmethod
    def from_config(cls, config):
        layers = config.get("layers")
        if not isinstance(layers, (list, tuple)):
            raise ValueError('A Pipeline config needs "layers", a list of layer configs. '
                             f"Received: layers={layers!r:.100}")
        return cls(**dict(config, layers=[_nested.rebuilt(entry) for entry in layers]))

    def call_input_shape(self, args, kwargs):
        return tuple(images_of(args[0]).shape[1:])

    def sample_output_shape(self, input_shape):
        for layer in self._pipeline_layers:
            input_shape = layer.sample_output_shape(input_shape)
        return input_shape

    def init(self, rng, input_shape):
        shape = input_shape
        for layer in self._pipeline_layers:
            layer.build_weights(rng, shape)
            shape = layer.sample_output_shape(shape)
        return self.params_tree(), self.state_tree(), shape

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        state = dict(state)
        keys = (jax.random.split(rng, len(self._pipeline_layers)) if rng is not None
                else [None] * len(self._pipeline_layers))
        # two steps may share a name (Keras's are kept apart by object)
        tree_keys = {id(layer): key for key, layer in self.keyed_sublayers()}
        for layer, key in zip(self._pipeline_layers, keys):
            at = tree_keys[id(layer)]
            # a layer without arrays may have no entry (augmentation layers have none)
            x, state[at] = layer.apply(params.get(at, {}), state.get(at, {}), x,
                                       training=training, rng=key)
        return x, state
