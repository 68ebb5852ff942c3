"""InceptionV3 (Szegedy et al., 2015): inception blocks of parallel factorised convolutions,
as keras.applications.inception_v3, with Keras's layers in Keras's order so that its
ImageNet weights load (Keras names only the "mixed" concatenations; the weights load by
order).

Example:
    >>> from kilnet.applications import inception_v3
    >>> model = inception_v3.InceptionV3(input_shape=(75, 75, 3), weights=None,
    ...                                  include_top=False)
    >>> model.name, model.output.shape
    ('inception_v3', (None, 1, 1, 2048))
"""

from __future__ import annotations

import functools

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils

BASE_WEIGHTS_PATH = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                     "inception_v3/")
# Keras's names for the two files' URLs.
WEIGHTS_PATH = f"{BASE_WEIGHTS_PATH}inception_v3{_builder.TF_KERNELS}.h5"
WEIGHTS_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}inception_v3{_builder.TF_KERNELS}_notop.h5"
# Keras's md5 of the files (with classifier, without).
WEIGHTS_HASHES = ("9a0d58056eeedaa3f26cb7ebd46da564", "bcbd6486424b2319ff4ef7d526e38f63")


class KerasNames:
    """Keras's default names for unnamed layers in the order they are created (conv2d,
    conv2d_1, ...), as a fresh Keras session gives them; kilnet alone would number them in
    the graph's order, which differs here because branches are created before they join.

    Example:
        >>> from kilnet.applications.inception_v3 import KerasNames
        >>> names = KerasNames()
        >>> names("conv2d"), names("conv2d"), names("activation")
        ('conv2d', 'conv2d_1', 'activation')
    """

    def __init__(self):
        self.counts = {}

    def __call__(self, base):
        count = self.counts.get(base, 0)
        self.counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"


@_builder.documented(size=299, min_size=75)
def InceptionV3(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="inception_v3"):
    """InceptionV3, as keras.applications.InceptionV3 (same arguments, defaults, layers and
    weights). Its inputs are RGB in [-1, 1]: see `preprocess_input`.

    <arguments>

    Example:
        >>> from kilnet.applications import InceptionV3
        >>> InceptionV3(weights=None, input_shape=(75, 75, 3), classes=2).output.shape
        (None, 2)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    img_input = _builder.sized_image_input(input_tensor, input_shape, 299, 75, include_top,
                                           weights)
    names = KerasNames()
    x = conv2d_bn(img_input, 32, 3, 3, strides=(2, 2), padding="valid", names=names)
    x = conv2d_bn(x, 32, 3, 3, padding="valid", names=names)
    x = conv2d_bn(x, 64, 3, 3, names=names)
    x = _max_pool(x, names)
    x = conv2d_bn(x, 80, 1, 1, padding="valid", names=names)
    x = conv2d_bn(x, 192, 3, 3, padding="valid", names=names)
    x = _max_pool(x, names)
    for i, pool_filters in enumerate((32, 64, 64)):
        x = _block_35(x, pool_filters, f"mixed{i}", names)
    x = _reduction_a(x, names)
    for i, filters in enumerate((128, 160, 160, 192)):
        x = _block_17(x, filters, f"mixed{4 + i}", names)
    x = _reduction_b(x, names)
    for i in range(2):
        x = _block_8(x, i, names)
    if include_top:   # Keras names the pooling only under its classifier
        x = _builder.classifier(x, classes, classifier_activation, weights, "avg_pool")
    else:
        x = _builder.pooled(x, pooling)

    def imagenet_path():
        return _builder.keras_weights(BASE_WEIGHTS_PATH, "inception_v3" + _builder.TF_KERNELS,
                                      WEIGHTS_HASHES, include_top)

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def conv2d_bn(x, filters, num_row, num_col, padding="same", strides=(1, 1), name=None, *,
              names=None):
    """A bias-free convolution, batch normalization without scale, ReLU; named
    "<name>_conv", "<name>_bn" and `name` when a name is given, else by `names` (a
    KerasNames) when given.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.inception_v3 import conv2d_bn
        >>> conv2d_bn(kilnet.Input(shape=(9, 9, 3)), 4, 1, 7).shape
        (None, 9, 9, 4)
    """
    if name is not None:
        conv_name, bn_name, act_name = f"{name}_conv", f"{name}_bn", name
    elif names is not None:
        conv_name, bn_name, act_name = (names("conv2d"), names("batch_normalization"),
                                        names("activation"))
    else:
        conv_name = bn_name = act_name = None
    x = layers.Conv2D(filters, (num_row, num_col), strides=strides, padding=padding,
                      use_bias=False, name=conv_name)(x)
    x = layers.BatchNormalization(axis=-1, scale=False, name=bn_name)(x)
    return layers.Activation("relu", name=act_name)(x)


def _same_average_pool(x, names):
    return layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same",
                                   name=names("average_pooling2d"))(x)


def _max_pool(x, names):
    return layers.MaxPooling2D((3, 3), strides=(2, 2), name=names("max_pooling2d"))(x)


def _block_35(x, pool_filters, name, names):
    """mixed0-2: 1x1, 5x5, double 3x3 and pooled branches (in Keras's creation order)."""
    conv = functools.partial(conv2d_bn, names=names)
    branch1x1 = conv(x, 64, 1, 1)
    branch5x5 = conv(conv(x, 48, 1, 1), 64, 5, 5)
    branch3x3dbl = conv(conv(conv(x, 64, 1, 1), 96, 3, 3), 96, 3, 3)
    branch_pool = conv(_same_average_pool(x, names), pool_filters, 1, 1)
    return layers.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1,
                              name=name)


def _reduction_a(x, names):
    """mixed3: stride-2 3x3 and double 3x3 branches, and max pooling."""
    conv = functools.partial(conv2d_bn, names=names)
    branch3x3 = conv(x, 384, 3, 3, strides=(2, 2), padding="valid")
    branch3x3dbl = conv(conv(x, 64, 1, 1), 96, 3, 3)
    branch3x3dbl = conv(branch3x3dbl, 96, 3, 3, strides=(2, 2), padding="valid")
    branch_pool = _max_pool(x, names)
    return layers.concatenate([branch3x3, branch3x3dbl, branch_pool], axis=-1, name="mixed3")


def _block_17(x, filters, name, names):
    """mixed4-7: 1x1, factorised 7x7 and double 7x7 branches of `filters`, and pooled."""
    conv = functools.partial(conv2d_bn, names=names)
    branch1x1 = conv(x, 192, 1, 1)
    branch7x7 = conv(conv(conv(x, filters, 1, 1), filters, 1, 7), 192, 7, 1)
    branch7x7dbl = conv(x, filters, 1, 1)
    for rows, cols in ((7, 1), (1, 7), (7, 1)):
        branch7x7dbl = conv(branch7x7dbl, filters, rows, cols)
    branch7x7dbl = conv(branch7x7dbl, 192, 1, 7)
    branch_pool = conv(_same_average_pool(x, names), 192, 1, 1)
    return layers.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1,
                              name=name)


def _reduction_b(x, names):
    """mixed8: stride-2 3x3 and 7x7-then-3x3 branches, and max pooling."""
    conv = functools.partial(conv2d_bn, names=names)
    branch3x3 = conv(conv(x, 192, 1, 1), 320, 3, 3, strides=(2, 2), padding="valid")
    branch7x7x3 = conv(conv(conv(x, 192, 1, 1), 192, 1, 7), 192, 7, 1)
    branch7x7x3 = conv(branch7x7x3, 192, 3, 3, strides=(2, 2), padding="valid")
    branch_pool = _max_pool(x, names)
    return layers.concatenate([branch3x3, branch7x7x3, branch_pool], axis=-1, name="mixed8")


def _block_8(x, i, names):
    """mixed9-10: 1x1, split 3x3 and split double 3x3 branches, and pooled."""
    conv = functools.partial(conv2d_bn, names=names)
    branch1x1 = conv(x, 320, 1, 1)
    branch3x3 = conv(x, 384, 1, 1)
    branch3x3 = layers.concatenate([conv(branch3x3, 384, 1, 3), conv(branch3x3, 384, 3, 1)],
                                   axis=-1, name=f"mixed9_{i}")
    branch3x3dbl = conv(conv(x, 448, 1, 1), 384, 3, 3)
    branch3x3dbl = layers.concatenate([conv(branch3x3dbl, 384, 1, 3),
                                       conv(branch3x3dbl, 384, 3, 1)],
                                      axis=-1, name=names("concatenate"))
    branch_pool = conv(_same_average_pool(x, names), 192, 1, 1)
    return layers.concatenate([branch1x1, branch3x3, branch3x3dbl, branch_pool], axis=-1,
                              name=f"mixed{9 + i}")


preprocess_input = _builder.preprocessing("tf", __name__)
decode_predictions = imagenet_utils.decode_predictions
