"""InceptionResNetV2 (Szegedy et al., 2016): inception blocks whose outputs are scaled and
added back to their inputs (residual connections), as keras.applications.inception_resnet_v2,
with Keras's layers in Keras's order and Keras's default names for the unnamed ones, so that
its ImageNet weights load. The scaled sums are CustomScaleLayer layers, as in Keras.

Example:
    >>> from kilnet.applications import inception_resnet_v2
    >>> inception_resnet_v2.InceptionResNetV2.__name__
    'InceptionResNetV2'
"""

from __future__ import annotations

import functools

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils
from kilnet.applications.inception_v3 import KerasNames
from kilnet.layers import CustomScaleLayer

BASE_WEIGHT_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                   "inception_resnet_v2/")
# Keras's md5 of the files (with classifier, without).
WEIGHTS_HASHES = ("e693bd0210a403b3192acc6073ad2e96", "d19885ff4a710c122648d3b5c3b684e4")
# (block type, residual scale, repeats) of the three residual stages.
_STAGES = {"block35": (0.17, 10), "block17": (0.1, 20), "block8": (0.2, 10)}


@_builder.documented(size=299, min_size=75)
def InceptionResNetV2(include_top=True, weights="imagenet", input_tensor=None,
                      input_shape=None, pooling=None, classes=1000,
                      classifier_activation="softmax", name="inception_resnet_v2"):
    """InceptionResNetV2, as keras.applications.InceptionResNetV2 (same arguments, defaults,
    layers and weights). Its inputs are RGB in [-1, 1]: see `preprocess_input`.

    <arguments>

    Example:
        >>> from kilnet.applications import InceptionResNetV2
        >>> model = InceptionResNetV2(weights=None, input_shape=(75, 75, 3), classes=2)
        >>> model.output.shape, len(model.layers)
        ((None, 2), 782)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    img_input = _builder.sized_image_input(input_tensor, input_shape, 299, 75, include_top,
                                           weights)
    names = KerasNames()
    x = _stem(img_input, names)
    x = _mixed_5b(x, names)
    x = _stage(x, "block35", names)
    x = _mixed_6a(x, names)
    x = _stage(x, "block17", names)
    x = _mixed_7a(x, names)
    x = _stage(x, "block8", names)
    x = conv2d_bn(x, 1536, 1, name="conv_7b")
    if include_top:   # Keras names the pooling only under its classifier
        x = _builder.classifier(x, classes, classifier_activation, weights, "avg_pool")
    else:
        x = _builder.pooled(x, pooling)

    def imagenet_path():
        return _builder.keras_weights(BASE_WEIGHT_URL,
                                      "inception_resnet_v2" + _builder.TF_KERNELS,
                                      WEIGHTS_HASHES, include_top)

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def conv2d_bn(x, filters, kernel_size, strides=1, padding="same", activation="relu",
              use_bias=False, name=None, *, names=None):
    """A convolution, then (without a bias) batch normalization without scale, then
    `activation`: named `name`, "<name>_bn" and "<name>_ac" when a name is given, else by
    `names` (a KerasNames) when given, as Keras's conv2d_bn.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.inception_resnet_v2 import conv2d_bn
        >>> conv2d_bn(kilnet.Input(shape=(9, 9, 3)), 4, [1, 7], name="c").shape
        (None, 9, 9, 4)
    """
    def named(suffix, base):
        if name is not None:
            return name if suffix is None else f"{name}_{suffix}"
        return names(base) if names is not None else None

    x = layers.Conv2D(filters, kernel_size, strides=strides, padding=padding,
                      use_bias=use_bias, name=named(None, "conv2d"))(x)
    if not use_bias:
        x = layers.BatchNormalization(axis=-1, scale=False,
                                      name=named("bn", "batch_normalization"))(x)
    if activation is not None:
        x = layers.Activation(activation, name=named("ac", "activation"))(x)
    return x


def _stem(x, names):
    conv = functools.partial(conv2d_bn, names=names)
    x = conv(conv(conv(x, 32, 3, strides=2, padding="valid"), 32, 3, padding="valid"), 64, 3)
    x = layers.MaxPooling2D(3, strides=2, name=names("max_pooling2d"))(x)
    x = conv(conv(x, 80, 1, padding="valid"), 192, 3, padding="valid")
    return layers.MaxPooling2D(3, strides=2, name=names("max_pooling2d"))(x)


def _mixed_5b(x, names):
    """1x1, 5x5, double 3x3 and pooled branches."""
    conv = functools.partial(conv2d_bn, names=names)
    branch_0 = conv(x, 96, 1)
    branch_1 = conv(conv(x, 48, 1), 64, 5)
    branch_2 = conv(conv(conv(x, 64, 1), 96, 3), 96, 3)
    branch_pool = layers.AveragePooling2D(3, strides=1, padding="same",
                                          name=names("average_pooling2d"))(x)
    branch_pool = conv(branch_pool, 64, 1)
    return layers.Concatenate(axis=-1, name="mixed_5b")(
        [branch_0, branch_1, branch_2, branch_pool])


def _mixed_6a(x, names):
    """Reduction: stride-2 3x3, 1x1-3x3-stride-2 3x3, and max pooling."""
    conv = functools.partial(conv2d_bn, names=names)
    branch_0 = conv(x, 384, 3, strides=2, padding="valid")
    branch_1 = conv(conv(conv(x, 256, 1), 256, 3), 384, 3, strides=2, padding="valid")
    branch_pool = layers.MaxPooling2D(3, strides=2, padding="valid",
                                      name=names("max_pooling2d"))(x)
    return layers.Concatenate(axis=-1, name="mixed_6a")([branch_0, branch_1, branch_pool])


def _mixed_7a(x, names):
    """Reduction: three stride-2 3x3 branches and max pooling."""
    conv = functools.partial(conv2d_bn, names=names)
    branch_0 = conv(conv(x, 256, 1), 384, 3, strides=2, padding="valid")
    branch_1 = conv(conv(x, 256, 1), 288, 3, strides=2, padding="valid")
    branch_2 = conv(conv(conv(x, 256, 1), 288, 3), 320, 3, strides=2, padding="valid")
    branch_pool = layers.MaxPooling2D(3, strides=2, padding="valid",
                                      name=names("max_pooling2d"))(x)
    return layers.Concatenate(axis=-1, name="mixed_7a")(
        [branch_0, branch_1, branch_2, branch_pool])


def _stage(x, block_type, names):
    """The repeated residual blocks of one stage; the network's very last block
    (block8_10) has scale 1 and no activation, as Keras."""
    scale, repeats = _STAGES[block_type]
    for block_idx in range(1, repeats + 1):
        last = block_type == "block8" and block_idx == repeats
        x = inception_resnet_block(x, 1.0 if last else scale, block_type, block_idx,
                                   activation=None if last else "relu", names=names)
    return x


def inception_resnet_block(x, scale, block_type, block_idx, activation="relu", *,
                           names=None):
    """Keras's Inception-ResNet block: parallel branches (`block_type` "block35", "block17"
    or "block8"), concatenated, projected back by a 1x1 convolution with bias, and added to
    `x` as `x + scale * branch` (a CustomScaleLayer); then `activation`. Layers Keras leaves
    unnamed are named by `names` (a KerasNames) when given.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.inception_resnet_v2 import inception_resnet_block
        >>> inception_resnet_block(kilnet.Input(shape=(5, 5, 8)), 0.17, "block35", 1).shape
        (None, 5, 5, 8)
    """
    conv = functools.partial(conv2d_bn, names=names)
    if block_type == "block35":
        branches = [conv(x, 32, 1), conv(conv(x, 32, 1), 32, 3),
                    conv(conv(conv(x, 32, 1), 48, 3), 64, 3)]
    elif block_type == "block17":
        branches = [conv(x, 192, 1), conv(conv(conv(x, 128, 1), 160, [1, 7]), 192, [7, 1])]
    elif block_type == "block8":
        branches = [conv(x, 192, 1), conv(conv(conv(x, 192, 1), 224, [1, 3]), 256, [3, 1])]
    else:
        raise ValueError("block_type must be 'block35', 'block17' or 'block8' (the "
                         f"Inception-ResNet blocks). Received: block_type={block_type!r}")
    block_name = f"{block_type}_{block_idx}"
    mixed = layers.Concatenate(axis=-1, name=f"{block_name}_mixed")(branches)
    up = conv2d_bn(mixed, x.shape[-1], 1, activation=None, use_bias=True,
                   name=f"{block_name}_conv")
    x = CustomScaleLayer(scale, name=names("custom_scale_layer") if names else None)([x, up])
    if activation is not None:
        x = layers.Activation(activation, name=f"{block_name}_ac")(x)
    return x


preprocess_input = _builder.preprocessing("tf", __name__)
decode_predictions = imagenet_utils.decode_predictions
