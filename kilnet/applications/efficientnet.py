"""EfficientNetB0 to B7 (Tan and Le, 2019): MBConv blocks with squeeze-and-excite, scaled in
width, depth and image size, as keras.applications.efficientnet, with Keras's layer names so
that its ImageNet weights load.

The input scaling is inside the model (Rescaling to [0, 1] and a Normalization layer whose
statistics come with the weights), so `preprocess_input` returns its input unchanged, as
Keras's.

Example:
    >>> from kilnet.applications import efficientnet
    >>> model = efficientnet.EfficientNetB0(input_shape=(32, 32, 3), weights=None,
    ...                                     include_top=False, pooling="avg")
    >>> model.name, model.output.shape
    ('efficientnetb0', (None, 1280))
"""

from __future__ import annotations

import copy
import math

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/keras-applications/"
# Keras's md5 of each (with classifier, without) weights file.
WEIGHTS_HASHES = {
    "b0": ("902e53a9f72be733fc0bcb005b3ebbac", "50bc09e76180e00e4465e1a485ddc09d"),
    "b1": ("1d254153d4ab51201f1646940f018540", "74c4e6b3e1f6a1eea24c589628592432"),
    "b2": ("b15cce36ff4dcbd00b6dd88e7857a6ad", "111f8e2ac8aa800a7a99e3239f7bfb39"),
    "b3": ("ffd1fdc53d0ce67064dc6a9c7960ede0", "af6d107764bb5b1abb91932881670226"),
    "b4": ("18c95ad55216b8f92d7e70b3a046e2fc", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "b5": ("ace28f2a6363774853a83a0b21b9421a", "38879255a25d3c92d5e44e04ae6cec6f"),
    "b6": ("165f6e37dce68623721b423839de8be5", "9ecce42647a20130c1f39a5d4cb75743"),
    "b7": ("8c03f828fec3ef71311cd463b6759d99", "cbcfe4450ddf6f3ad90b1b398090fe4a"),
}


def _stage(kernel_size, repeats, filters_in, filters_out, expand_ratio, strides):
    return {"kernel_size": kernel_size, "repeats": repeats, "filters_in": filters_in,
            "filters_out": filters_out, "expand_ratio": expand_ratio, "id_skip": True,
            "strides": strides, "se_ratio": 0.25}


# The seven stages of B0 (the other sizes scale their filters and repeats), Keras's keys.
DEFAULT_BLOCKS_ARGS = [_stage(3, 1, 32, 16, 1, 1), _stage(3, 2, 16, 24, 6, 2),
                       _stage(5, 2, 24, 40, 6, 2), _stage(3, 3, 40, 80, 6, 2),
                       _stage(5, 3, 80, 112, 6, 1), _stage(5, 4, 112, 192, 6, 2),
                       _stage(3, 1, 192, 320, 6, 1)]
CONV_KERNEL_INITIALIZER = {"class_name": "VarianceScaling",
                           "config": {"scale": 2.0, "mode": "fan_out",
                                      "distribution": "truncated_normal"}}
DENSE_KERNEL_INITIALIZER = {"class_name": "VarianceScaling",
                            "config": {"scale": 1.0 / 3.0, "mode": "fan_out",
                                       "distribution": "uniform"}}
IMAGENET_STDDEV_RGB = [0.229, 0.224, 0.225]
# (width coefficient, depth coefficient, default image size, dropout rate) of B0..B7.
VARIANTS = {"b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2),
            "b2": (1.1, 1.2, 260, 0.3), "b3": (1.2, 1.4, 300, 0.3),
            "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
            "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5)}


def EfficientNet(width_coefficient, depth_coefficient, default_size, dropout_rate=0.2,
                 drop_connect_rate=0.2, depth_divisor=8, activation="swish",
                 blocks_args="default", name="efficientnet", include_top=True,
                 weights="imagenet", input_tensor=None, input_shape=None, pooling=None,
                 classes=1000, classifier_activation="softmax", weights_name=None):
    """An EfficientNet of any scaling, as Keras's `efficientnet.EfficientNet`; the public
    builders below call it with their coefficients and `weights_name` ("b0".."b7"), which
    chooses the ImageNet file.

    Example:
        >>> from kilnet.applications.efficientnet import EfficientNet
        >>> EfficientNet(0.5, 0.5, 64, weights=None, input_shape=(32, 32, 3),
        ...              include_top=False).output.shape
        (None, 1, 1, 640)
    """
    if blocks_args == "default":
        blocks_args = DEFAULT_BLOCKS_ARGS
    _builder.check_arguments(weights, include_top, classes, pooling)
    if weights == "imagenet" and weights_name not in WEIGHTS_HASHES:
        raise ValueError("weights='imagenet' needs the variant whose file to load: "
                         f"weights_name in {sorted(WEIGHTS_HASHES)} (or use EfficientNetB0.."
                         f"B7). Received: weights_name={weights_name!r}")
    img_input = _builder.sized_image_input(input_tensor, input_shape, default_size, 32,
                                           include_top, weights)

    def round_filters(filters):
        return _round_filters(filters, width_coefficient, depth_divisor)

    def round_repeats(repeats):
        return int(math.ceil(depth_coefficient * repeats))

    x = _input_scaling(img_input, weights)
    x = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(x, 3), name="stem_conv_pad")(x)
    x = layers.Conv2D(round_filters(32), 3, strides=2, padding="valid", use_bias=False,
                      kernel_initializer=CONV_KERNEL_INITIALIZER, name="stem_conv")(x)
    x = layers.BatchNormalization(axis=-1, name="stem_bn")(x)
    x = layers.Activation(activation, name="stem_activation")(x)

    blocks_args = copy.deepcopy(blocks_args)
    for args in blocks_args:
        if args["repeats"] <= 0:
            raise ValueError("Each stage of blocks_args must repeat its block at least once. "
                             f"Received: repeats={args['repeats']}")
    total_blocks = float(sum(round_repeats(args["repeats"]) for args in blocks_args))
    b = 0
    for i, args in enumerate(blocks_args):
        args["filters_in"] = round_filters(args["filters_in"])
        args["filters_out"] = round_filters(args["filters_out"])
        for j in range(round_repeats(args.pop("repeats"))):
            if j > 0:   # the stage's first block changes stride and width; the rest keep them
                args["strides"] = 1
                args["filters_in"] = args["filters_out"]
            # drop_connect grows linearly with depth, up to drop_connect_rate
            x = block(x, activation, drop_connect_rate * b / total_blocks,
                      name=f"block{i + 1}{chr(j + 97)}_", **args)
            b += 1

    x = layers.Conv2D(round_filters(1280), 1, padding="same", use_bias=False,
                      kernel_initializer=CONV_KERNEL_INITIALIZER, name="top_conv")(x)
    x = layers.BatchNormalization(axis=-1, name="top_bn")(x)
    x = layers.Activation(activation, name="top_activation")(x)
    x = _builder.top(x, include_top, pooling, classes, classifier_activation, weights,
                     "avg_pool", "max_pool", dropout_rate=dropout_rate,
                     kernel_initializer=DENSE_KERNEL_INITIALIZER)

    def imagenet_path():
        # Keras names the file after the model's `name` (the default name finds it).
        return _builder.keras_weights(BASE_WEIGHTS_PATH, name, WEIGHTS_HASHES[weights_name],
                                      include_top)

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def _round_filters(filters, width_coefficient, divisor):
    """`filters` scaled by the width coefficient, to a multiple of `divisor`, never more than
    10% below."""
    filters *= width_coefficient
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * filters:
        rounded += divisor
    return int(rounded)


def _input_scaling(x, weights):
    """Pixels in [0, 255] to [0, 1], then standardised by the Normalization layer's statistics
    (a mean and variance per channel, saved in the weights file). Keras's ImageNet files hold
    the deviation where the variance belongs, so with them Keras divides once more by
    sqrt(deviation); kilnet does the same."""
    x = layers.Rescaling(1.0 / 255.0)(x)
    x = layers.Normalization(axis=-1)(x)
    if weights == "imagenet":
        x = layers.Rescaling([1.0 / math.sqrt(stddev) for stddev in IMAGENET_STDDEV_RGB])(x)
    return x


def block(inputs, activation="swish", drop_rate=0.0, name="", filters_in=32, filters_out=16,
          kernel_size=3, strides=1, expand_ratio=1, se_ratio=0.0, id_skip=True):
    """An MBConv block: expand (1x1, when expand_ratio > 1), depthwise `kernel_size`,
    squeeze-and-excite, project (1x1, linear), and a residual (after drop-connect: whole
    samples dropped in training) when the shapes allow.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.efficientnet import block
        >>> block(kilnet.Input(shape=(8, 8, 16)), filters_in=16, filters_out=24,
        ...       expand_ratio=6, strides=2, se_ratio=0.25, name="b_").shape
        (None, 4, 4, 24)
    """
    filters = filters_in * expand_ratio
    x = inputs
    if expand_ratio != 1:
        x = layers.Conv2D(filters, 1, padding="same", use_bias=False,
                          kernel_initializer=CONV_KERNEL_INITIALIZER,
                          name=f"{name}expand_conv")(x)
        x = layers.BatchNormalization(axis=-1, name=f"{name}expand_bn")(x)
        x = layers.Activation(activation, name=f"{name}expand_activation")(x)
    if strides == 2:
        x = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(x, kernel_size),
                                 name=f"{name}dwconv_pad")(x)
    x = layers.DepthwiseConv2D(kernel_size, strides=strides,
                               padding="valid" if strides == 2 else "same", use_bias=False,
                               depthwise_initializer=CONV_KERNEL_INITIALIZER,
                               name=f"{name}dwconv")(x)
    x = layers.BatchNormalization(axis=-1, name=f"{name}bn")(x)
    x = layers.Activation(activation, name=f"{name}activation")(x)
    if 0 < se_ratio <= 1:
        x = squeeze_excite(x, filters, max(1, int(filters_in * se_ratio)), activation, name)
    x = layers.Conv2D(filters_out, 1, padding="same", use_bias=False,
                      kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}project_conv")(x)
    x = layers.BatchNormalization(axis=-1, name=f"{name}project_bn")(x)
    if id_skip and strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
        x = layers.add([x, inputs], name=f"{name}add")
    return x


def squeeze_excite(x, filters, squeezed, activation, name):
    """The channels' means through a `squeezed`-wide 1x1 convolution and back to `filters`
    (sigmoid), scaling the channels of `x` (Keras's se_* layers, named after `name`).

    Example:
        >>> import kilnet
        >>> from kilnet.applications.efficientnet import squeeze_excite
        >>> squeeze_excite(kilnet.Input(shape=(4, 4, 16)), 16, 4, "swish", "b_").shape
        (None, 4, 4, 16)
    """
    se = layers.GlobalAveragePooling2D(name=f"{name}se_squeeze")(x)
    se = layers.Reshape((1, 1, filters), name=f"{name}se_reshape")(se)
    se = layers.Conv2D(squeezed, 1, padding="same", activation=activation,
                       kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}se_reduce")(se)
    se = layers.Conv2D(filters, 1, padding="same", activation="sigmoid",
                       kernel_initializer=CONV_KERNEL_INITIALIZER, name=f"{name}se_expand")(se)
    return layers.multiply([x, se], name=f"{name}se_excite")


def _variant_builder(weights_name):
    width, depth, size, dropout_rate = VARIANTS[weights_name]
    return _builder.variant_builder(
        f"EfficientNet{weights_name.upper()}", f"efficientnet{weights_name}",
        f"Width x{width}, depth x{depth}, trained at {size}x{size}. Its inputs are RGB pixels "
        'in [0, 255]: the model scales them itself. With weights="imagenet", `name` also '
        "names the weights file, as in Keras: keep the default.",
        EfficientNet, width, depth, size, dropout_rate, image_size=size,
        weights_name=weights_name)


EfficientNetB0 = _variant_builder("b0")
EfficientNetB1 = _variant_builder("b1")
EfficientNetB2 = _variant_builder("b2")
EfficientNetB3 = _variant_builder("b3")
EfficientNetB4 = _variant_builder("b4")
EfficientNetB5 = _variant_builder("b5")
EfficientNetB6 = _variant_builder("b6")
EfficientNetB7 = _variant_builder("b7")


preprocess_input = _builder.preprocessing(None, __name__)
decode_predictions = imagenet_utils.decode_predictions
