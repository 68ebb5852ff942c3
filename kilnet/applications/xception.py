"""Xception (Chollet, 2017): depthwise separable convolutions with residual connections, as
keras.applications.xception, with Keras's layer names and layer order so that its ImageNet
weights load (Keras leaves the shortcut convolutions unnamed; the weights load by order).

Example:
    >>> from kilnet.applications import xception
    >>> model = xception.Xception(input_shape=(71, 71, 3), weights=None, include_top=False)
    >>> model.name, model.output.shape
    ('xception', (None, 3, 3, 2048))
"""

from __future__ import annotations

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils

BASE_WEIGHTS_PATH = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                     "xception/")
# Keras's names for the two files' URLs.
WEIGHTS_PATH = f"{BASE_WEIGHTS_PATH}xception{_builder.TF_KERNELS}.h5"
WEIGHTS_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}xception{_builder.TF_KERNELS}_notop.h5"
# Keras's md5 of the files (with classifier, without).
WEIGHTS_HASHES = ("0a58e3b7378bc2990ea3b43d5981f1f6", "b0042744bf5b25fce3cb969f33bebb97")


@_builder.documented(size=299, min_size=71)
def Xception(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
             pooling=None, classes=1000, classifier_activation="softmax", name="xception"):
    """Xception, as keras.applications.Xception (same arguments, defaults, layer names and
    weights). Its inputs are RGB in [-1, 1]: see `preprocess_input`.

    <arguments>

    Example:
        >>> from kilnet.applications import Xception
        >>> Xception(weights=None, input_shape=(71, 71, 3), classes=2).output.shape
        (None, 2)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    img_input = _builder.sized_image_input(input_tensor, input_shape, 299, 71, include_top,
                                           weights)
    x = layers.Conv2D(32, (3, 3), strides=(2, 2), use_bias=False, name="block1_conv1")(img_input)
    x = layers.BatchNormalization(axis=-1, name="block1_conv1_bn")(x)
    x = layers.Activation("relu", name="block1_conv1_act")(x)
    x = layers.Conv2D(64, (3, 3), use_bias=False, name="block1_conv2")(x)
    x = layers.BatchNormalization(axis=-1, name="block1_conv2_bn")(x)
    x = layers.Activation("relu", name="block1_conv2_act")(x)
    # Entry flow: the first block's separable convolutions follow a ReLU already.
    x = _downsampling_block(x, 2, (128, 128), first_relu=False)
    x = _downsampling_block(x, 3, (256, 256))
    x = _downsampling_block(x, 4, (728, 728))
    for block in range(5, 13):   # middle flow
        x = _middle_block(x, block)
    x = _downsampling_block(x, 13, (728, 1024))   # exit flow
    x = _separable(x, 1536, "block14_sepconv1")
    x = layers.Activation("relu", name="block14_sepconv1_act")(x)
    x = _separable(x, 2048, "block14_sepconv2")
    x = layers.Activation("relu", name="block14_sepconv2_act")(x)
    if include_top:   # Keras names the pooling only under its classifier
        x = _builder.classifier(x, classes, classifier_activation, weights, "avg_pool")
    else:
        x = _builder.pooled(x, pooling)

    def imagenet_path():
        return _builder.keras_weights(BASE_WEIGHTS_PATH, "xception" + _builder.TF_KERNELS,
                                      WEIGHTS_HASHES, include_top)

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def _separable(x, filters, name):
    """A 3x3 separable convolution and its batch normalization ("<name>_bn")."""
    x = layers.SeparableConv2D(filters, (3, 3), padding="same", use_bias=False, name=name)(x)
    return layers.BatchNormalization(axis=-1, name=f"{name}_bn")(x)


def _downsampling_block(x, block, filters, first_relu=True):
    """Two separable convolutions and a stride-2 max pooling, added to a strided 1x1
    convolution of the input; the shortcut's layers come first, unnamed, as in Keras."""
    residual = layers.Conv2D(filters[1], (1, 1), strides=(2, 2), padding="same",
                             use_bias=False)(x)
    residual = layers.BatchNormalization(axis=-1)(residual)
    prefix = f"block{block}"
    if first_relu:
        x = layers.Activation("relu", name=f"{prefix}_sepconv1_act")(x)
    x = _separable(x, filters[0], f"{prefix}_sepconv1")
    x = layers.Activation("relu", name=f"{prefix}_sepconv2_act")(x)
    x = _separable(x, filters[1], f"{prefix}_sepconv2")
    x = layers.MaxPooling2D((3, 3), strides=(2, 2), padding="same", name=f"{prefix}_pool")(x)
    return layers.add([x, residual])


def _middle_block(x, block):
    """Three ReLU-separable convolutions of 728 channels, added to the input."""
    residual = x
    prefix = f"block{block}"
    for conv in (1, 2, 3):
        x = layers.Activation("relu", name=f"{prefix}_sepconv{conv}_act")(x)
        x = _separable(x, 728, f"{prefix}_sepconv{conv}")
    return layers.add([x, residual])


preprocess_input = _builder.preprocessing("tf", __name__)
decode_predictions = imagenet_utils.decode_predictions
