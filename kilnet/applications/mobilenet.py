"""MobileNet (Howard et al., 2017): depthwise separable convolutions with a width (`alpha`)
and a depth multiplier, as keras.applications.mobilenet, with Keras's layer names so that
its ImageNet weights load.

Example:
    >>> from kilnet.applications import mobilenet
    >>> model = mobilenet.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None,
    ...                             include_top=False)
    >>> model.name, model.output.shape
    ('mobilenet_0.25_32', (None, 1, 1, 256))
"""

from __future__ import annotations

import warnings

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils
from kilnet.applications._origin import keras_file

BASE_WEIGHT_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
# The sizes and widths Keras publishes ImageNet weights for, and how its file names spell
# the widths.
WEIGHT_SIZES = (128, 160, 192, 224)
ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5", 0.50: "5_0", 0.25: "2_5"}
# (pointwise filters, stride) of the 13 depthwise separable blocks, block_id 1..13.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def MobileNet(input_shape=None, alpha=1.0, depth_multiplier=1, dropout=1e-3, include_top=True,
              weights="imagenet", input_tensor=None, pooling=None, classes=1000,
              classifier_activation="softmax", name=None):
    """MobileNet, as keras.applications.MobileNet (same arguments, defaults, layer names and
    weights). Its inputs are RGB in [-1, 1]: see `preprocess_input`.

    Args:
        input_shape: (height, width, 3), at least 32x32; only with include_top=False unless
            it is a published size (128, 160, 192 or 224 square).
        alpha: the width multiplier (ImageNet weights exist for 0.25, 0.5, 0.75, 1.0).
        depth_multiplier: the depthwise convolutions' channel multiplier (1 with weights).
        dropout: the dropout rate before the classifier.
        include_top: whether to end in the 1000-class (or `classes`) classifier.
        weights: "imagenet" (Keras's pretrained weights, downloaded on first use), None
            (random) or the path of a weights file.
        input_tensor: a symbolic tensor to use as the image input.
        pooling: without the classifier, None (the last feature map), "avg" or "max".
        classes: the classifier's classes (1000 with ImageNet weights).
        classifier_activation: the classifier's activation ("softmax" or None with weights).
        name: the model's name; None: "mobilenet_<alpha>_<rows>" as Keras.

    Returns:
        A kilnet functional Model.

    Example:
        >>> from kilnet.applications import MobileNet
        >>> MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=3).output.shape
        (None, 3)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    default_size = _weights_size(input_shape) or 224
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size, min_size=32,
                                                    require_flatten=include_top,
                                                    weights=weights)
    rows = input_shape[0]
    if weights == "imagenet":
        if depth_multiplier != 1:
            raise ValueError("MobileNet's ImageNet weights have depth_multiplier=1; pass it, or "
                             f"weights=None. Received: depth_multiplier={depth_multiplier}")
        if alpha not in ALPHA_TEXT:
            raise ValueError(f"MobileNet's ImageNet weights exist for alpha in "
                             f"{tuple(ALPHA_TEXT)}; pass one of them, or weights=None. "
                             f"Received: alpha={alpha}")
        if _weights_size(input_shape) is None:
            rows = 224
            warnings.warn("input_shape is undefined, not square, or its size is not one of "
                          f"{WEIGHT_SIZES}: the weights for 224x224 inputs are loaded.",
                          stacklevel=2)
    img_input = _builder.image_input(input_tensor, input_shape)
    x = layers.Conv2D(int(32 * alpha), (3, 3), padding="same", use_bias=False, strides=(2, 2),
                      name="conv1")(img_input)
    x = layers.BatchNormalization(axis=-1, name="conv1_bn")(x)
    x = layers.ReLU(6.0, name="conv1_relu")(x)
    for block_id, (filters, stride) in enumerate(BLOCKS, start=1):
        x = _depthwise_conv_block(x, filters, alpha, depth_multiplier, stride, block_id)
    if include_top:
        x = _classifier(x, dropout, classes, classifier_activation, weights)
    else:
        x = _builder.pooled(x, pooling)
    if name is None:
        name = f"mobilenet_{alpha:0.2f}_{rows}"

    def imagenet_path():
        suffix = "" if include_top else "_no_top"
        file_name = f"mobilenet_{ALPHA_TEXT[alpha]}_{rows}_tf{suffix}.h5"
        return keras_file(file_name, BASE_WEIGHT_PATH + file_name)   # Keras gives no hash

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def _weights_size(shape):
    """The square size of (height, width, ...) if Keras publishes weights for it, else None."""
    if shape is None or len(shape) < 2:
        return None
    rows, cols = shape[0], shape[1]
    return rows if rows == cols and rows in WEIGHT_SIZES else None


def _classifier(x, dropout, classes, classifier_activation, weights):
    """Global average pooling kept as a 1x1 map, dropout, a 1x1 convolution to the classes,
    the activation (Keras's layers and names)."""
    x = layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Conv2D(classes, (1, 1), padding="same", name="conv_preds")(x)
    x = layers.Reshape((classes,), name="reshape_2")(x)
    imagenet_utils.validate_activation(classifier_activation, weights)
    return layers.Activation(classifier_activation, name="predictions")(x)


def _depthwise_conv_block(inputs, filters, alpha, depth_multiplier, stride, block_id):
    """Depthwise 3x3 (stride 2 after a bottom-right zero pad), BN, ReLU6, then a pointwise
    1x1 to `filters * alpha` channels, BN, ReLU6."""
    x = inputs
    if stride == 2:
        x = layers.ZeroPadding2D(((0, 1), (0, 1)), name=f"conv_pad_{block_id}")(x)
    x = layers.DepthwiseConv2D((3, 3), padding="same" if stride == 1 else "valid",
                               depth_multiplier=depth_multiplier, strides=(stride, stride),
                               use_bias=False, name=f"conv_dw_{block_id}")(x)
    x = layers.BatchNormalization(axis=-1, name=f"conv_dw_{block_id}_bn")(x)
    x = layers.ReLU(6.0, name=f"conv_dw_{block_id}_relu")(x)
    x = layers.Conv2D(int(filters * alpha), (1, 1), padding="same", use_bias=False,
                      strides=(1, 1), name=f"conv_pw_{block_id}")(x)
    x = layers.BatchNormalization(axis=-1, name=f"conv_pw_{block_id}_bn")(x)
    return layers.ReLU(6.0, name=f"conv_pw_{block_id}_relu")(x)


def preprocess_input(x, data_format=None):
    """Images in [0, 255] scaled to [-1, 1], as MobileNet's weights expect ("tf" mode of
    imagenet_utils.preprocess_input).

    Example:
        >>> import numpy as np
        >>> from kilnet.applications import mobilenet
        >>> mobilenet.preprocess_input(np.array([255.0])).tolist()
        [1.0]
    """
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="tf")


def decode_predictions(preds, top=5):
    """The `top` ImageNet classes of each prediction (imagenet_utils.decode_predictions).

    Example:
        >>> from kilnet.applications import mobilenet
        >>> mobilenet.decode_predictions.__name__
        'decode_predictions'
    """
    return imagenet_utils.decode_predictions(preds, top=top)
