"""Adaptive pooling: average or max pooling to a fixed spatial output size, whatever the input's
size (Keras 3.15's AdaptiveAveragePooling1D/2D/3D and AdaptiveMaxPooling1D/2D/3D).

Why the layers are thin: the windows (window i of an axis of n positions spans
[floor(i * n / out), ceil((i + 1) * n / out)), PyTorch's and Keras's rule) and their pooling are
kilnet.ops.nn.adaptive_average_pool / adaptive_max_pool; a layer only checks and keeps its
`output_size` and `data_format`, and computes its output shape. As kilnet's other layers, they
take channels-last inputs.
"""

from __future__ import annotations

from kilnet.layers._base import Layer
from kilnet.layers._conv1d import check_channels_last
from kilnet.ops import nn

_SPATIAL_NAMES = {1: "(steps, channels)", 2: "(height, width, channels)",
                  3: "(depth, height, width, channels)"}


class AdaptivePooling(Layer):
    """The base of the adaptive pooling layers: `rank` spatial axes pooled to `output_size`.

    Args:
        output_size: an int (the same size on every spatial axis) or a tuple of `rank` ints.
        data_format: "channels_last" (or None, the same); kilnet's images are channels-last.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.AdaptiveAveragePooling1D(2)
        >>> layer.output_size, layer.data_format
        ((2,), 'channels_last')
        >>> layer(np.arange(5.0).reshape(1, 5, 1)).ravel().tolist()
        [1.0, 3.0]
    """

    rank = 1
    config_keys = ("output_size", "data_format")

    def __init__(self, output_size, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.output_size = spatial_output_size(output_size, self.rank)
        self.data_format = check_channels_last(data_format)

    def sample_output_shape(self, input_shape):
        if len(input_shape) != self.rank + 1:
            raise ValueError(f"{type(self).__name__} expects {_SPATIAL_NAMES[self.rank]} "
                             f"inputs. Received: an input of shape {tuple(input_shape)}")
        return tuple(self.output_size) + (input_shape[-1],)

    def pool(self, x):
        raise NotImplementedError

    def apply(self, params, state, x, **_):
        return self.pool(x), state


def spatial_output_size(value, rank: int) -> tuple[int, ...]:
    """Keras's `output_size` argument as a tuple of `rank` positive ints (an int is repeated).

    Example:
        >>> spatial_output_size(3, 2)
        (3, 3)
        >>> spatial_output_size([4, 2, 1], 3)
        (4, 2, 1)
    """
    sizes = (value,) * rank if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(sizes, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in sizes):
        raise TypeError(f"output_size must be an integer or a tuple of {rank} integers, one "
                        f"per spatial axis. Received: output_size={value!r}")
    if len(sizes) != rank or min(sizes, default=0) < 1:
        raise ValueError(f"output_size must be a positive integer or a tuple of {rank} positive "
                         f"integers, one per spatial axis. Received: output_size={value!r}")
    return tuple(sizes)


class _AdaptiveAverage(AdaptivePooling):
    def pool(self, x):
        return nn.adaptive_average_pool(x, self.output_size, self.data_format)


class _AdaptiveMax(AdaptivePooling):
    def pool(self, x):
        return nn.adaptive_max_pool(x, self.output_size, self.data_format)


class AdaptiveAveragePooling1D(_AdaptiveAverage):
    """The mean over windows of the steps that give `output_size` steps: (steps, channels) ->
    (output_size, channels), as Keras's AdaptiveAveragePooling1D.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.arange(6.0).reshape(1, 6, 1)
        >>> kilnet.layers.AdaptiveAveragePooling1D(3)(x).ravel().tolist()
        [0.5, 2.5, 4.5]
    """

    rank = 1


class AdaptiveAveragePooling2D(_AdaptiveAverage):
    """The mean over windows of the image that give an `output_size` image: (height, width,
    channels) -> (*output_size, channels), as Keras's AdaptiveAveragePooling2D.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> kilnet.layers.AdaptiveAveragePooling2D((2, 3))(np.ones((1, 7, 5, 4))).shape
        (1, 2, 3, 4)
    """

    rank = 2


class AdaptiveAveragePooling3D(_AdaptiveAverage):
    """The mean over windows of the volume that give an `output_size` volume: (depth, height,
    width, channels) -> (*output_size, channels), as Keras's AdaptiveAveragePooling3D.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> kilnet.layers.AdaptiveAveragePooling3D(2)(np.ones((1, 5, 4, 3, 2))).shape
        (1, 2, 2, 2, 2)
    """

    rank = 3


class AdaptiveMaxPooling1D(_AdaptiveMax):
    """The maximum over windows of the steps that give `output_size` steps, as Keras's
    AdaptiveMaxPooling1D.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.array([3.0, 1.0, 4.0, 1.0, 5.0]).reshape(1, 5, 1)
        >>> kilnet.layers.AdaptiveMaxPooling1D(2)(x).ravel().tolist()   # [0, 3) and [2, 5)
        [4.0, 5.0]
    """

    rank = 1


class AdaptiveMaxPooling2D(_AdaptiveMax):
    """The maximum over windows of the image that give an `output_size` image, as Keras's
    AdaptiveMaxPooling2D.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> x = np.arange(12.0).reshape(1, 3, 4, 1)
        >>> kilnet.layers.AdaptiveMaxPooling2D(1)(x).ravel().tolist()
        [11.0]
    """

    rank = 2


class AdaptiveMaxPooling3D(_AdaptiveMax):
    """The maximum over windows of the volume that give an `output_size` volume, as Keras's
    AdaptiveMaxPooling3D.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> kilnet.layers.AdaptiveMaxPooling3D((1, 2, 2))(np.ones((2, 3, 4, 5, 1))).shape
        (2, 1, 2, 2, 1)
    """

    rank = 3
