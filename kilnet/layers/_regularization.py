"""Regularization layers beyond Dropout: SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout,
AlphaDropout, ActivityRegularization.

Why: they fight overfitting in ways Dropout cannot. Spatial dropout drops whole feature maps
(neighbouring steps or pixels are correlated, so dropping single values barely regularizes a
convolution); the Gaussian layers perturb instead of zeroing; ActivityRegularization penalizes
large activations through the loss. The random ones act only in training, drawing from the
JAX key `apply` receives (in a compiled step the model's seed decides), else from their
SeedGenerator (as Keras's: `seed` starts its state; see Layer.random_key), and are the identity
at inference.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from kilnet import random, regularizers
from kilnet.layers._base import Layer
from kilnet.layers._dropout_masks import inverted_dropout, keep_mask, mask_shape


def _own_generator(layer, amount, seed) -> None:
    """As Keras's: the `seed` kept for the config, and a SeedGenerator only when the layer
    perturbs anything (rate or stddev above 0)."""
    layer.seed = seed
    if amount > 0:
        layer.seed_generator = random.SeedGenerator(seed)


def _rate(value, argument="rate") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{argument} must be a number in [0, 1). Received: {argument}={value!r}")
    return float(value)


class _SpatialDropout(Layer):
    _supports_masking = True
    config_keys = ("rate", "seed")
    rank = 0  # the input's rank with the batch axis

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _rate(rate)
        _own_generator(self, self.rate, seed)

    def get_config(self):
        # Keras's spatial dropouts write their settings, then the name and a dtype name (their
        # constructors take no `trainable`); kilnet writes its policy's name there
        config = {"rate": self.rate, "seed": self.seed, "name": self.name,
                  "dtype": self.dtype_policy.name}
        if "data_format" in self.config_keys:
            config["data_format"] = self.data_format
        return config

    def sample_output_shape(self, input_shape):
        if len(input_shape) + 1 != self.rank:
            raise ValueError(f"{type(self).__name__} expects inputs of rank {self.rank} (batch "
                             "axis included), channels last. Received: an input of shape "
                             f"{(None,) + tuple(input_shape)}")
        return input_shape

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        self.sample_output_shape(tuple(x.shape[1:]))
        if not training or self.rate == 0.0:
            return x, state
        # one draw per (sample, channel), shared over the steps / pixels
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
        return inverted_dropout(x, self.random_key(rng), self.rate, shape).astype(x.dtype), state


class SpatialDropout1D(_SpatialDropout):
    """Dropout of whole channels of a sequence (batch, steps, channels), in training only.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> y = np.asarray(layers.SpatialDropout1D(0.5)(np.ones((1, 4, 3)), training=True))
        >>> bool(np.all((y == y[:, :1]) & ((y == 0) | (y == 2))))
        True
    """

    rank = 3


class SpatialDropout2D(_SpatialDropout):
    """Dropout of whole channels of an image (batch, height, width, channels), in training
    only (channels last).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> x = np.ones((1, 2, 2, 3))
        >>> np.array_equal(layers.SpatialDropout2D(0.5)(x), x)  # inference: the identity
        True
    """

    config_keys = ("rate", "seed", "data_format")
    rank = 4

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        if data_format not in (None, "channels_last"):
            raise ValueError("SpatialDropout2D supports data_format='channels_last' only. "
                             f"Received: data_format={data_format!r}")
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = "channels_last"


class SpatialDropout3D(_SpatialDropout):
    """Dropout of whole channels of a volume (batch, depth, height, width, channels), in
    training only (channels last).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> y = np.asarray(layers.SpatialDropout3D(0.5)(np.ones((4, 2, 2, 2, 8)),
        ...                                             training=True))
        >>> bool(all(len(np.unique(y[i, ..., c])) == 1 for i in range(4) for c in range(8)))
        True
    """

    config_keys = ("rate", "seed", "data_format")
    rank = 5

    def __init__(self, rate, data_format=None, seed=None, **kwargs):
        if data_format not in (None, "channels_last"):
            raise ValueError("SpatialDropout3D supports data_format='channels_last' only. "
                             f"Received: data_format={data_format!r}")
        super().__init__(rate, seed=seed, **kwargs)
        self.data_format = "channels_last"


class GaussianNoise(Layer):
    """Adds N(0, stddev) noise in training; the identity at inference.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> y = np.asarray(layers.GaussianNoise(0.1)(np.zeros((1000, 10)), training=True))
        >>> bool(0.09 < y.std() < 0.11)
        True
    """

    _supports_masking = True
    config_keys = ("stddev", "seed")

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(stddev, bool) or not isinstance(stddev, (int, float)) \
                or not 0 <= stddev <= 1:
            raise ValueError("stddev must be a number in [0, 1] (as Keras). "
                             f"Received: stddev={stddev!r}")
        self.stddev = float(stddev)
        _own_generator(self, self.stddev, seed)

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        if not training or self.stddev == 0.0:
            return x, state
        noise = jax.random.normal(self.random_key(rng), x.shape, x.dtype) * self.stddev
        return x + noise, state


class GaussianDropout(Layer):
    """Multiplies by N(1, sqrt(rate / (1 - rate))) noise in training; the identity at
    inference.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> y = np.asarray(layers.GaussianDropout(0.5)(np.ones((1000, 10)), training=True))
        >>> bool(0.95 < y.std() < 1.05 and 0.95 < y.mean() < 1.05)
        True
    """

    _supports_masking = True
    config_keys = ("rate", "seed")

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _rate(rate)
        _own_generator(self, self.rate, seed)

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        if not training or self.rate == 0.0:
            return x, state
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        noise = 1.0 + jax.random.normal(self.random_key(rng), x.shape, x.dtype) * stddev
        return x * noise, state


class AlphaDropout(Layer):
    """Dropout that keeps the mean and variance of its inputs (Klambauer et al., 2017), for
    self-normalizing networks (SELU activations, LeCun-normal weights), as Keras's: in
    training, dropped values become SELU's negative saturation, then an affine map restores
    the statistics; the identity at inference.

    Args:
        rate: the fraction of values dropped, in [0, 1).
        noise_shape: the shape of the drop mask, None for the input's; a None entry takes the
            input's length (e.g. (None, 1, features) drops the same features at every step).
        seed: the start of its SeedGenerator's state (a compiled step's key decides there).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> x = np.random.default_rng(0).normal(size=(4000, 50)).astype(np.float32)
        >>> y = np.asarray(layers.AlphaDropout(0.2)(x, training=True))
        >>> bool(abs(y.mean()) < 0.02 and abs(y.std() - 1.0) < 0.02)
        True
    """

    _supports_masking = True
    config_keys = ("rate", "seed", "noise_shape")
    # SELU's constants: alpha' = -scale * alpha is where a dropped value goes.
    _ALPHA_P = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946

    def __init__(self, rate, noise_shape=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _rate(rate)
        # kept as given for the config, as Keras's
        self.noise_shape = (noise_shape if noise_shape is None or isinstance(noise_shape, tuple)
                            else list(noise_shape))
        self.seed = seed
        _own_generator(self, self.rate, seed)

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        if not training or self.rate == 0.0:
            return x, state
        keep = keep_mask(self.random_key(rng), 1.0 - self.rate,
                         mask_shape(self.noise_shape, x.shape))
        alpha_p, rate = self._ALPHA_P, self.rate
        a = ((1.0 - rate) * (1.0 + rate * alpha_p ** 2)) ** -0.5
        b = -a * alpha_p * rate
        return (a * jnp.where(keep, x, alpha_p) + b).astype(x.dtype), state


class ActivityRegularization(Layer):
    """Returns its input and adds `(l1 * sum|x| + l2 * sum x**2) / batch size` to the loss
    (Keras divides activity penalties by the batch size).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layer = layers.ActivityRegularization(l2=0.5)
        >>> _ = layer(np.ones((2, 3)))
        >>> [float(v) for v in layer.losses]
        [1.5]
    """

    _supports_masking = True
    config_keys = ("l1", "l2")

    def __init__(self, l1=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.activity_regularizer = regularizers.L1L2(l1=l1, l2=l2)
        self.l1, self.l2 = self.activity_regularizer.l1, self.activity_regularizer.l2

    def get_config(self):
        # l1 and l2 describe the penalty: Keras leaves the regularizer they make out
        config = super().get_config()
        del config["activity_regularizer"]
        return config

    def apply(self, params, state, x, *, sample_mask=None, **_):
        regularizers.add_activity_penalty(self.activity_regularizer, x, sample_mask)
        return x, state
