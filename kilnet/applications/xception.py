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
from kilnet.applications._origin import keras_file

WEIGHTS_PATH = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                "xception/xception_weights_tf_dim_ordering_tf_kernels.h5")
WEIGHTS_PATH_NO_TOP = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                       "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5")
# Keras's md5 of the files (with classifier, without).
WEIGHTS_HASHES = ("0a58e3b7378bc2990ea3b43d5981f1f6", "b0042744bf5b25fce3cb969f33bebb97")


def Xception(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
             pooling=None, classes=1000, classifier_activation="softmax", name="xception"):
    """Xception, as keras.applications.Xception (same arguments, defaults, layer names and
    weights). Its inputs are RGB in [-1, 1]: see `preprocess_input`.

    Args:
        include_top: whether to end in the 1000-class (or `classes`) classifier.
        weights: "imagenet" (Keras's pretrained weights, downloaded on first use), None
            (random) or the path of a weights file.
        input_tensor: a symbolic tensor to use as the image input.
        input_shape: (height, width, 3), at least 71x71; (299, 299, 3) with the classifier
            and ImageNet weights.
        pooling: without the classifier, None (the last feature map), "avg" or "max".
        classes: the classifier's classes (1000 with ImageNet weights).
        classifier_activation: the classifier's activation ("softmax" or None with weights).
        name: the model's name.

    Returns:
        A kilnet functional Model.

    Example:
        >>> from kilnet.applications import Xception
        >>> Xception(weights=None, input_shape=(71, 71, 3), classes=2).output.shape
        (None, 2)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    input_shape = imagenet_utils.obtain_input_shape(input_shape, 299, min_size=71,
                                                    require_flatten=include_top,
                                                    weights=weights)
    img_input = _builder.image_input(input_tensor, input_shape)
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
    if include_top:
        x = _builder.top(x, include_top, pooling, classes, classifier_activation, weights,
                         avg_name="avg_pool")
    else:
        x = _builder.pooled(x, pooling)

    def imagenet_path():
        if include_top:
            return keras_file("xception_weights_tf_dim_ordering_tf_kernels.h5", WEIGHTS_PATH,
                              WEIGHTS_HASHES[0])
        return keras_file("xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          WEIGHTS_PATH_NO_TOP, WEIGHTS_HASHES[1])

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


def preprocess_input(x, data_format=None):
    """Images in [0, 255] scaled to [-1, 1], as Xception's weights expect ("tf" mode of
    imagenet_utils.preprocess_input).

    Example:
        >>> import numpy as np
        >>> from kilnet.applications import xception
        >>> xception.preprocess_input(np.array([127.5])).tolist()
        [0.0]
    """
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


def decode_predictions(preds, top=5):
    """The `top` ImageNet classes of each prediction (imagenet_utils.decode_predictions).

    Example:
        >>> from kilnet.applications import xception
        >>> xception.decode_predictions.__name__
        'decode_predictions'
    """
    return imagenet_utils.decode_predictions(preds, top=top)
