"""The small layers Keras's pretrained applications define in their own modules rather than in
keras.layers: ConvNeXt's LayerScale and StochasticDepth, InceptionResNetV2's
CustomScaleLayer. kilnet has them with Keras's class names, configs and weight names, so the
applications load Keras's weights and Keras's `.keras` files of those models open (a file
names these classes with their Keras module, KERAS_MODULES).
"""

from __future__ import annotations

import numpy as np

from kilnet.layers._base import Layer, is_shape
from kilnet.layers._dropout_masks import inverted_dropout

# The Keras module each class lives in, as a `.keras` file names it.
KERAS_MODULES = {"LayerScale": "keras.src.applications.convnext",
                 "StochasticDepth": "keras.src.applications.convnext",
                 "CustomScaleLayer": "keras.src.applications.inception_resnet_v2"}


class LayerScale(Layer):
    """The input times a learned per-channel scale that starts at `init_values` (Touvron et
    al., 2021), as keras.src.applications.convnext.LayerScale.

    Args:
        init_values: the scale's initial value (ConvNeXt: 1e-6).
        projection_dim: the channels (the last axis), one scale each.

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layer = layers.LayerScale(0.5, 2)
        >>> np.asarray(layer(np.array([[2.0, 4.0]]))).tolist()
        [[1.0, 2.0]]
        >>> [w.name for w in layer.weights]
        ['variable']
    """

    # Keras's add_weight is called without a name, so the weight is "variable".
    param_names = ("variable",)
    config_keys = ("init_values", "projection_dim")

    def __init__(self, init_values, projection_dim, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(projection_dim, int) or isinstance(projection_dim, bool) \
                or projection_dim < 1:
            raise ValueError("projection_dim must be a positive int (the channels scaled). "
                             f"Received: projection_dim={projection_dim!r}")
        self.init_values = init_values
        self.projection_dim = projection_dim

    def sample_output_shape(self, input_shape):
        if input_shape[-1] not in (None, self.projection_dim, 1):
            raise ValueError(f"LayerScale {self.name!r} scales {self.projection_dim} channels;"
                             " its input's last axis must have that size (or pass "
                             "projection_dim=<channels>). Received: an input of shape "
                             f"{(None,) + tuple(input_shape)}")
        return input_shape

    def init(self, rng, input_shape):
        del rng
        shape = self.sample_output_shape(input_shape)
        gamma = np.full((self.projection_dim,), self.init_values, dtype=np.float32)
        return {"variable": gamma}, {}, shape

    def apply(self, params, state, x, **_):
        return x * params["variable"], state


class StochasticDepth(Layer):
    """Drops the whole input of a sample (a residual branch) with probability
    `drop_path_rate` in training, scaling the kept ones by 1 / (1 - drop_path_rate); the
    identity at inference. As keras.src.applications.convnext.StochasticDepth.

    Args:
        drop_path_rate: the probability of dropping a sample's branch, in [0, 1).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> x = np.ones((1000, 3), np.float32)
        >>> y = np.asarray(layers.StochasticDepth(0.25)(x, training=True))
        >>> sorted({round(float(v), 3) for v in y.ravel()})    # dropped, or kept and rescaled
        [0.0, 1.333]
        >>> bool(abs((y[:, 0] == 0).mean() - 0.25) < 0.05), bool((y == y[:, :1]).all())
        (True, True)
    """

    config_keys = ("drop_path_rate",)

    def __init__(self, drop_path_rate, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(drop_path_rate, (int, float)) or isinstance(drop_path_rate, bool) \
                or not 0 <= drop_path_rate < 1:
            raise ValueError("drop_path_rate must be a number in [0, 1) (the probability of "
                             f"dropping a branch). Received: drop_path_rate={drop_path_rate!r}")
        self.drop_path_rate = drop_path_rate

    def apply(self, params, state, x, *, training=False, rng=None, **_):
        if not training or self.drop_path_rate == 0:
            return x, state
        # no SeedGenerator, as Keras's (its draws take the global one)
        whole_samples = (x.shape[0],) + (1,) * (x.ndim - 1)
        return inverted_dropout(x, self.random_key(rng), self.drop_path_rate, whole_samples).astype(x.dtype), state


class CustomScaleLayer(Layer):
    """`inputs[0] + inputs[1] * scale`: InceptionResNetV2's scaled residual sum, as
    keras.src.applications.inception_resnet_v2.CustomScaleLayer.

    Args:
        scale: the factor of the second input (the residual branch).

    Example:
        >>> import numpy as np
        >>> from kilnet import layers
        >>> layer = layers.CustomScaleLayer(0.1)
        >>> np.asarray(layer([np.array([[1.0]]), np.array([[5.0]])])).tolist()
        [[1.5]]
    """

    config_keys = ("scale",)

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def sample_output_shape(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or is_shape(input_shape) \
                or len(input_shape) != 2:
            raise ValueError("CustomScaleLayer takes a list of two tensors, [shortcut, "
                             "residual], e.g. CustomScaleLayer(0.17)([x, branch]). Received: "
                             f"an input of shape {input_shape}")
        return tuple(input_shape[0])

    def apply(self, params, state, x, **_):
        shortcut, residual = x
        return shortcut + residual * self.scale, state
