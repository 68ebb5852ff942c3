"""MobileNetV2 (Sandler et al., 2018): inverted residual blocks with linear bottlenecks, as
keras.applications.mobilenet_v2, with Keras's layer names so that its ImageNet weights load.

Example:
    >>> from kilnet.applications import mobilenet_v2
    >>> model = mobilenet_v2.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
    ...                                  include_top=False, pooling="avg")
    >>> model.name, model.output.shape
    ('mobilenetv2_0.35_32', (None, 1280))
"""

from __future__ import annotations

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils

BASE_WEIGHT_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
# The sizes and widths Keras publishes ImageNet weights for.
WEIGHT_SIZES = (96, 128, 160, 192, 224)
WEIGHT_ALPHAS = (0.35, 0.50, 0.75, 1.0, 1.3, 1.4)
# (expansion, filters, stride) of the 17 inverted residual blocks, block_id 0..16.
BLOCKS = ((1, 16, 1),
          (6, 24, 2), (6, 24, 1),
          (6, 32, 2), (6, 32, 1), (6, 32, 1),
          (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
          (6, 96, 1), (6, 96, 1), (6, 96, 1),
          (6, 160, 2), (6, 160, 1), (6, 160, 1),
          (6, 320, 1))


@_builder.documented(
    input_shape="(height, width, 3), at least 32x32; only with include_top=False unless it is "
                "(224, 224, 3). None: (224, 224, 3) with the classifier, else any size.",
    alpha="the width multiplier (ImageNet weights exist for 0.35, 0.5, 0.75, 1.0, 1.3, 1.4).",
    name='the model\'s name; None: "mobilenetv2_<alpha>_<rows>" as Keras.')
def MobileNetV2(input_shape=None, alpha=1.0, include_top=True, weights="imagenet",
                input_tensor=None, pooling=None, classes=1000,
                classifier_activation="softmax", name=None):
    """MobileNetV2, as keras.applications.MobileNetV2 (same arguments, defaults, layer names
    and weights). Its inputs are RGB in [-1, 1]: see `preprocess_input`.

    <arguments>

    Example:
        >>> from kilnet.applications import MobileNetV2
        >>> model = MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=4)
        >>> model.output.shape, model.layers[1].name
        ((None, 4), 'Conv1')
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    shape_source = input_shape if input_shape is not None else (
        input_tensor.shape[1:] if input_tensor is not None else None)
    default_size = _builder.published_size(shape_source, WEIGHT_SIZES) or 224
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size, min_size=32,
                                                    require_flatten=include_top,
                                                    weights=weights)
    rows = input_shape[0]
    if weights == "imagenet":
        if alpha not in WEIGHT_ALPHAS:
            raise ValueError("MobileNetV2's ImageNet weights exist for alpha in "
                             f"{WEIGHT_ALPHAS}; pass one of them, or weights=None. "
                             f"Received: alpha={alpha}")
        rows = _builder.weights_size(input_shape, WEIGHT_SIZES)
    img_input = _builder.image_input(input_tensor, input_shape)
    x = layers.Conv2D(make_divisible(32 * alpha, 8), kernel_size=3, strides=(2, 2),
                      padding="same", use_bias=False, name="Conv1")(img_input)
    x = _batch_norm("bn_Conv1")(x)
    x = layers.ReLU(6.0, name="Conv1_relu")(x)
    for block_id, (expansion, filters, stride) in enumerate(BLOCKS):
        x = _inverted_res_block(x, expansion, stride, alpha, filters, block_id)
    # Keras widens the last convolution only for alpha > 1 (the paper's choice).
    last_filters = make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
    x = layers.Conv2D(last_filters, kernel_size=1, use_bias=False, name="Conv_1")(x)
    x = _batch_norm("Conv_1_bn")(x)
    x = layers.ReLU(6.0, name="out_relu")(x)
    x = _builder.top(x, include_top, pooling, classes, classifier_activation, weights)
    if name is None:
        name = f"mobilenetv2_{alpha:0.2f}_{rows}"

    def imagenet_path():
        stem = f"mobilenet_v2{_builder.TF_KERNELS}_{float(alpha)}_{rows}"
        return _builder.keras_weights(BASE_WEIGHT_PATH, stem, (None, None), include_top,
                                      "_no_top")   # Keras gives no hash

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def _batch_norm(name):
    return layers.BatchNormalization(axis=-1, epsilon=1e-3, momentum=0.999, name=name)


def _inverted_res_block(inputs, expansion, stride, alpha, filters, block_id):
    """Expand (1x1), depthwise 3x3, project (1x1, linear); a residual when shapes allow."""
    in_channels = inputs.shape[-1]
    pointwise_filters = make_divisible(int(filters * alpha), 8)
    x = inputs
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    if block_id:
        x = layers.Conv2D(expansion * in_channels, kernel_size=1, padding="same",
                          use_bias=False, activation=None, name=f"{prefix}expand")(x)
        x = _batch_norm(f"{prefix}expand_BN")(x)
        x = layers.ReLU(6.0, name=f"{prefix}expand_relu")(x)
    if stride == 2:
        x = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(x, 3),
                                 name=f"{prefix}pad")(x)
    x = layers.DepthwiseConv2D(kernel_size=3, strides=stride, activation=None, use_bias=False,
                               padding="same" if stride == 1 else "valid",
                               name=f"{prefix}depthwise")(x)
    x = _batch_norm(f"{prefix}depthwise_BN")(x)
    x = layers.ReLU(6.0, name=f"{prefix}depthwise_relu")(x)
    x = layers.Conv2D(pointwise_filters, kernel_size=1, padding="same", use_bias=False,
                      activation=None, name=f"{prefix}project")(x)
    x = _batch_norm(f"{prefix}project_BN")(x)
    if in_channels == pointwise_filters and stride == 1:
        return layers.Add(name=f"{prefix}add")([inputs, x])
    return x


def make_divisible(value, divisor, min_value=None):
    """`value` rounded to a multiple of `divisor` (at least `min_value`), never more than 10%
    below it: the channel counts of MobileNetV2 and V3.

    Example:
        >>> from kilnet.applications.mobilenet_v2 import make_divisible
        >>> make_divisible(32 * 0.35, 8), make_divisible(1280 * 1.4, 8)
        (16, 1792)
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


preprocess_input = _builder.preprocessing('tf', __name__)
decode_predictions = imagenet_utils.decode_predictions
