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

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils

BASE_WEIGHT_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
# The sizes and widths Keras publishes ImageNet weights for, and how its file names spell
# the widths.
WEIGHT_SIZES = (128, 160, 192, 224)
ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5", 0.50: "5_0", 0.25: "2_5"}
# (pointwise filters, stride) of the 13 depthwise separable blocks, block_id 1..13.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


@_builder.documented(
    input_shape="(height, width, 3), at least 32x32; only with include_top=False unless it is a "
                "published size (128, 160, 192 or 224 square).",
    alpha="the width multiplier (ImageNet weights exist for 0.25, 0.5, 0.75, 1.0).",
    depth_multiplier="the depthwise convolutions' channel multiplier (1 with weights).",
    dropout="the dropout rate before the classifier.",
    name='the model\'s name; None: "mobilenet_<alpha>_<rows>" as Keras.')
def MobileNet(input_shape=None, alpha=1.0, depth_multiplier=1, dropout=1e-3, include_top=True,
              weights="imagenet", input_tensor=None, pooling=None, classes=1000,
              classifier_activation="softmax", name=None):
    """MobileNet, as keras.applications.MobileNet (same arguments, defaults, layer names and
    weights). Its inputs are RGB in [-1, 1]: see `preprocess_input`.

    <arguments>

    Example:
        >>> from kilnet.applications import MobileNet
        >>> MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None, classes=3).output.shape
        (None, 3)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    default_size = _builder.published_size(input_shape, WEIGHT_SIZES) or 224
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
        rows = _builder.weights_size(input_shape, WEIGHT_SIZES)
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
        stem = f"mobilenet_{ALPHA_TEXT[alpha]}_{rows}_tf"
        return _builder.keras_weights(BASE_WEIGHT_PATH, stem,
                                      (None, None), include_top, "_no_top")   # no hash in Keras

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


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


preprocess_input = _builder.preprocessing('tf', __name__)
decode_predictions = imagenet_utils.decode_predictions
