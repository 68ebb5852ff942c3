"""EfficientNetV2 (Tan and Le, 2021): fused and depthwise inverted residual blocks, scaled
in width and depth, as keras.applications.efficientnet_v2, with Keras's layer names so that
its ImageNet weights load. The input scaling is part of the model (`include_preprocessing`),
so `preprocess_input` returns its input unchanged.

Example:
    >>> from kilnet.applications import efficientnet_v2
    >>> model = efficientnet_v2.EfficientNetV2B0(input_shape=(32, 32, 3), weights=None,
    ...                                          include_top=False, pooling="avg")
    >>> model.name, model.output.shape
    ('efficientnetv2-b0', (None, 1280))
"""

from __future__ import annotations

import copy
import math

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils
from kilnet.applications.efficientnet import (CONV_KERNEL_INITIALIZER,
                                              DENSE_KERNEL_INITIALIZER, squeeze_excite)

BASE_WEIGHTS_PATH = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                     "efficientnet_v2/")
# Keras's md5 of each variant's files (with classifier, without).
WEIGHTS_HASHES = {
    "b0": ("21ecbf6da12460d5c40bb2f29ceb2188", "893217f2bb855e2983157299931e43ff"),
    "b1": ("069f0534ff22adf035c89e2d9547a9dc", "0e80663031ca32d657f9caa404b6ec37"),
    "b2": ("424e49f28180edbde1e94797771950a7", "1dfe2e7a5d45b6632553a8961ea609eb"),
    "b3": ("1f1fc43bd98a6e4fd8fdfd551e02c7a0", "f6abf7b5849ac99a89b50dd3fd532856"),
    "-s": ("e1d88a8495beba45748fedd0cecbe016", "af0682fb74e8c54910f2d4393339c070"),
    "-m": ("a3bf6aa3276309f4fc6a34aa114c95cd", "1b8dc055df72dde80d614482840fe342"),
    "-l": ("27e6d408b53c7ebc868fefa357689935", "b0b66b5c863aef5b46e8608fe1711615"),
}
# weights_name -> the variant's name (which names its stages and its weights files).
_VARIANTS = {key: "efficientnetv2" + (key if key.startswith("-") else f"-{key}")
             for key in WEIGHTS_HASHES}
_STAGE_KEYS = ("num_repeat", "input_filters", "output_filters", "expand_ratio", "se_ratio",
               "strides", "conv_type")


def _stages(*rows):
    """Keras's block arguments (dicts) from rows of _STAGE_KEYS' values; every kernel is 3x3
    and conv_type 1 is the fused block, 0 the depthwise one."""
    return [{"kernel_size": 3, **dict(zip(_STAGE_KEYS, row))} for row in rows]


_B_STAGES = _stages((1, 32, 16, 1, 0, 1, 1), (2, 16, 32, 4, 0, 2, 1), (2, 32, 48, 4, 0, 2, 1),
                    (3, 48, 96, 4, 0.25, 2, 0), (5, 96, 112, 6, 0.25, 1, 0),
                    (8, 112, 192, 6, 0.25, 2, 0))
# The stages of each variant (B1-B3 scale B0's with their width and depth coefficients).
DEFAULT_BLOCKS_ARGS = {
    "efficientnetv2-s": _stages((2, 24, 24, 1, 0, 1, 1), (4, 24, 48, 4, 0, 2, 1),
                                (4, 48, 64, 4, 0, 2, 1), (6, 64, 128, 4, 0.25, 2, 0),
                                (9, 128, 160, 6, 0.25, 1, 0), (15, 160, 256, 6, 0.25, 2, 0)),
    "efficientnetv2-m": _stages((3, 24, 24, 1, 0, 1, 1), (5, 24, 48, 4, 0, 2, 1),
                                (5, 48, 80, 4, 0, 2, 1), (7, 80, 160, 4, 0.25, 2, 0),
                                (14, 160, 176, 6, 0.25, 1, 0), (18, 176, 304, 6, 0.25, 2, 0),
                                (5, 304, 512, 6, 0.25, 1, 0)),
    "efficientnetv2-l": _stages((4, 32, 32, 1, 0, 1, 1), (7, 32, 64, 4, 0, 2, 1),
                                (7, 64, 96, 4, 0, 2, 1), (10, 96, 192, 4, 0.25, 2, 0),
                                (19, 192, 224, 6, 0.25, 1, 0), (25, 224, 384, 6, 0.25, 2, 0),
                                (7, 384, 640, 6, 0.25, 1, 0)),
    **{f"efficientnetv2-b{i}": copy.deepcopy(_B_STAGES) for i in range(4)},
}
# ImageNet's RGB mean and variance in [0, 1], which the B variants' weights were trained with.
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_VARIANCE = (0.229 ** 2, 0.224 ** 2, 0.225 ** 2)


def EfficientNetV2(width_coefficient, depth_coefficient, default_size, dropout_rate=0.2,
                   drop_connect_rate=0.2, depth_divisor=8, min_depth=8, bn_momentum=0.9,
                   activation="swish", blocks_args="default", name="efficientnetv2",
                   include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                   pooling=None, classes=1000, classifier_activation="softmax",
                   include_preprocessing=True, weights_name=None):
    """An EfficientNetV2 of the given scaling, as keras.applications' generic builder (same
    arguments, defaults and layer names); EfficientNetV2B0 ... EfficientNetV2L call it.

    Args:
        width_coefficient, depth_coefficient: the scaling of channels and of repeats.
        default_size: the image size the weights were trained at.
        dropout_rate: the dropout before the classifier.
        drop_connect_rate: the largest drop rate of the residual branches (growing with the
            block's depth, as Keras: block b of n drops with rate drop_connect_rate * b / n).
        depth_divisor, min_depth: channel counts are multiples of depth_divisor, at least
            min_depth.
        bn_momentum: the batch normalizations' momentum.
        activation: the blocks' activation.
        blocks_args: "default" (the variant's stages, DEFAULT_BLOCKS_ARGS[name]) or a list
            of dicts with kernel_size, num_repeat, input_filters, output_filters,
            expand_ratio, se_ratio, strides and conv_type (1: fused).
        name: the model's name; without weights_name it also picks the variant (its
            stages, preprocessing and weights file), as in Keras.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation: as every application (see EfficientNetV2B0).
        include_preprocessing: whether the model scales its [0, 255] inputs itself.
        weights_name: the key of WEIGHTS_HASHES for weights="imagenet".

    Returns:
        A kilnet functional Model.

    Example:
        >>> from kilnet.applications.efficientnet_v2 import EfficientNetV2
        >>> model = EfficientNetV2(1.0, 1.0, 224, name="efficientnetv2-b0", weights=None,
        ...                        input_shape=(32, 32, 3), classes=3)
        >>> model.output.shape
        (None, 3)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    if weights == "imagenet" and weights_name not in WEIGHTS_HASHES:
        raise ValueError(f"weights_name must be one of {sorted(WEIGHTS_HASHES)} with "
                         "weights='imagenet' (the variants with ImageNet weights). "
                         f"Received: weights_name={weights_name!r}")
    # The variant (and its file) comes from weights_name when given, so that a variant
    # renamed with name= keeps its stages, preprocessing and weights; Keras reads it off
    # the name (and fails on another name).
    variant = _VARIANTS.get(weights_name, name)
    if blocks_args == "default":
        if variant not in DEFAULT_BLOCKS_ARGS:
            raise ValueError(f"blocks_args='default' needs a variant's name, one of "
                             f"{sorted(DEFAULT_BLOCKS_ARGS)}; pass blocks_args (a list of "
                             f"stage dicts) for another. Received: name={name!r}")
        blocks_args = DEFAULT_BLOCKS_ARGS[variant]
    img_input = _builder.sized_image_input(input_tensor, input_shape, default_size, 32,
                                           include_top, weights)
    x = img_input
    if include_preprocessing:
        x = _preprocessing(x, b_variant=variant.split("-")[-1].startswith("b"))

    def filters(count):
        return round_filters(count, width_coefficient, min_depth, depth_divisor)

    def batch_norm(layer_name):
        return layers.BatchNormalization(axis=-1, momentum=bn_momentum, name=layer_name)

    x = layers.Conv2D(filters(blocks_args[0]["input_filters"]), kernel_size=3, strides=2,
                      kernel_initializer=CONV_KERNEL_INITIALIZER, padding="same",
                      use_bias=False, name="stem_conv")(x)
    x = batch_norm("stem_bn")(x)
    x = layers.Activation(activation, name="stem_activation")(x)
    x = _stages_of(x, blocks_args, filters, depth_coefficient, drop_connect_rate,
                   dict(activation=activation, bn_momentum=bn_momentum))
    x = layers.Conv2D(filters(1280), kernel_size=1, strides=1,
                      kernel_initializer=CONV_KERNEL_INITIALIZER, padding="same",
                      use_bias=False, name="top_conv")(x)
    x = batch_norm("top_bn")(x)
    x = layers.Activation(activation, name="top_activation")(x)
    x = _builder.top(x, include_top, pooling, classes, classifier_activation, weights,
                     "avg_pool", "max_pool", dropout_rate=dropout_rate,
                     kernel_initializer=DENSE_KERNEL_INITIALIZER)

    def imagenet_path():
        return _builder.keras_weights(BASE_WEIGHTS_PATH, variant, WEIGHTS_HASHES[weights_name],
                                      include_top)

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def _preprocessing(x, b_variant):
    """[0, 255] to what the weights expect: ImageNet-normalized for B0-B3 (as EfficientNet
    V1, on RGB inputs), [-1, 1] for S, M and L."""
    if b_variant and x.shape[-1] == 3:
        x = layers.Rescaling(scale=1.0 / 255)(x)
        return layers.Normalization(mean=list(_IMAGENET_MEAN),
                                    variance=list(_IMAGENET_VARIANCE), axis=-1)(x)
    return layers.Rescaling(scale=1.0 / 128.0, offset=-1)(x)


def _stages_of(x, blocks_args, filters, depth_coefficient, drop_connect_rate, common):
    """The blocks of every stage, named block<stage><a, b, ...>_ as Keras."""
    blocks_args = copy.deepcopy(blocks_args)
    total = float(sum(args["num_repeat"] for args in blocks_args))
    done = 0
    for i, args in enumerate(blocks_args):
        if args["num_repeat"] <= 0:
            raise ValueError("Each stage of blocks_args needs num_repeat > 0 (at least one "
                             f"block). Received: num_repeat={args['num_repeat']}")
        args["input_filters"] = filters(args["input_filters"])
        args["output_filters"] = filters(args["output_filters"])
        block = fused_mb_conv_block if args.pop("conv_type") else mb_conv_block
        for j in range(round_repeats(args.pop("num_repeat"), depth_coefficient)):
            if j > 0:   # only a stage's first block changes the size and the channels
                args["strides"] = 1
                args["input_filters"] = args["output_filters"]
            # Keras passes this rate as "survival_probability" but uses it as Dropout's
            # rate (the fraction dropped); kept so that training behaves as Keras's.
            x = block(x, drop_rate=drop_connect_rate * done / total,
                      name=f"block{i + 1}{chr(j + 97)}_", **common, **args)
            done += 1
    return x


def round_filters(filters, width_coefficient, min_depth, depth_divisor):
    """`filters` scaled by `width_coefficient`, rounded to a multiple of `depth_divisor`
    (at least `min_depth`, or `depth_divisor` when it is None), as Keras rounds them.

    Example:
        >>> from kilnet.applications.efficientnet_v2 import round_filters
        >>> round_filters(32, 1.1, 8, 8), round_filters(1280, 1.2, 8, 8)
        (32, 1536)
    """
    scaled = filters * width_coefficient
    rounded = int(scaled + depth_divisor / 2) // depth_divisor * depth_divisor
    return int(max(min_depth or depth_divisor, rounded))


def round_repeats(repeats, depth_coefficient):
    """The blocks of a stage after depth scaling (rounded up).

    Example:
        >>> from kilnet.applications.efficientnet_v2 import round_repeats
        >>> round_repeats(8, 1.4)
        12
    """
    return int(math.ceil(depth_coefficient * repeats))


def _conv_bn(x, filters, kernel_size, strides, bn_momentum, names, activation=None,
             act_name=None):
    """A bias-free "same" convolution and its batch normalization, named `names` (the pair),
    then `activation` (named `act_name`) when given."""
    conv_name, bn_name = names
    x = layers.Conv2D(filters, kernel_size=kernel_size, strides=strides,
                      kernel_initializer=CONV_KERNEL_INITIALIZER, padding="same",
                      use_bias=False, name=conv_name)(x)
    x = layers.BatchNormalization(axis=-1, momentum=bn_momentum, name=bn_name)(x)
    if activation is not None:
        x = layers.Activation(activation, name=act_name)(x)
    return x


def _residual(x, inputs, strides, input_filters, output_filters, drop_rate, name):
    """The block's input added back when the shapes allow, after dropping whole samples of
    the branch in training."""
    if strides != 1 or input_filters != output_filters:
        return x
    if drop_rate:
        x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(x)
    return layers.add([x, inputs], name=f"{name}add")


def mb_conv_block(inputs, input_filters, output_filters, expand_ratio=1, kernel_size=3,
                  strides=1, se_ratio=0.0, bn_momentum=0.9, activation="swish",
                  drop_rate=0.0, name=""):
    """Keras's MBConvBlock on `inputs`: 1x1 expansion, depthwise convolution, squeeze and
    excitation, linear 1x1 projection, residual.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.efficientnet_v2 import mb_conv_block
        >>> mb_conv_block(kilnet.Input(shape=(8, 8, 16)), 16, 24, expand_ratio=4, strides=2,
        ...               se_ratio=0.25, name="b_").shape
        (None, 4, 4, 24)
    """
    filters = input_filters * expand_ratio
    x = inputs
    if expand_ratio != 1:
        x = _conv_bn(x, filters, 1, 1, bn_momentum, (f"{name}expand_conv", f"{name}expand_bn"),
                     activation, f"{name}expand_activation")
    x = layers.DepthwiseConv2D(kernel_size=kernel_size, strides=strides,
                               depthwise_initializer=CONV_KERNEL_INITIALIZER, padding="same",
                               use_bias=False, name=f"{name}dwconv2")(x)
    x = layers.BatchNormalization(axis=-1, momentum=bn_momentum, name=f"{name}bn")(x)
    x = layers.Activation(activation, name=f"{name}activation")(x)
    if 0 < se_ratio <= 1:
        x = squeeze_excite(x, filters, max(1, int(input_filters * se_ratio)), activation,
                           name)
    x = _conv_bn(x, output_filters, 1, 1, bn_momentum,
                 (f"{name}project_conv", f"{name}project_bn"))
    return _residual(x, inputs, strides, input_filters, output_filters, drop_rate, name)


def fused_mb_conv_block(inputs, input_filters, output_filters, expand_ratio=1, kernel_size=3,
                        strides=1, se_ratio=0.0, bn_momentum=0.9, activation="swish",
                        drop_rate=0.0, name=""):
    """Keras's FusedMBConvBlock on `inputs`: one full convolution for expansion and
    depthwise step, squeeze and excitation, 1x1 projection (the convolution itself, with its
    activation, when there is no expansion), residual.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.efficientnet_v2 import fused_mb_conv_block
        >>> fused_mb_conv_block(kilnet.Input(shape=(8, 8, 16)), 16, 16, name="b_").shape
        (None, 8, 8, 16)
    """
    filters = input_filters * expand_ratio
    x = inputs
    if expand_ratio != 1:
        x = _conv_bn(x, filters, kernel_size, strides, bn_momentum,
                     (f"{name}expand_conv", f"{name}expand_bn"), activation,
                     f"{name}expand_activation")
    if 0 < se_ratio <= 1:
        x = squeeze_excite(x, filters, max(1, int(input_filters * se_ratio)), activation,
                           name)
    fused = expand_ratio == 1
    x = _conv_bn(x, output_filters, kernel_size if fused else 1, strides if fused else 1,
                 bn_momentum, (f"{name}project_conv", f"{name}project_bn"),
                 activation if fused else None, f"{name}project_activation")
    return _residual(x, inputs, strides, input_filters, output_filters, drop_rate, name)


def _variant(suffix, width, depth, size, weights_name):
    """The builder of one Keras variant (EfficientNetV2B0 ... EfficientNetV2L)."""

    def builder(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                include_preprocessing=True, name=f"efficientnetv2-{suffix}"):
        return EfficientNetV2(width, depth, size, name=name, include_top=include_top,
                              weights=weights, input_tensor=input_tensor,
                              input_shape=input_shape, pooling=pooling, classes=classes,
                              classifier_activation=classifier_activation,
                              include_preprocessing=include_preprocessing,
                              weights_name=weights_name)

    builder.__name__ = builder.__qualname__ = f"EfficientNetV2{suffix.upper()}"
    builder.__doc__ = f"""EfficientNetV2{suffix.upper()}, as keras.applications (same arguments,
    defaults, layer names and weights; {size}x{size} images by default). Its inputs are RGB in
    [0, 255]: the model scales them itself (include_preprocessing=False: it expects what
    the preprocessing would give).

    <arguments>

    Example:
        >>> from kilnet.applications import efficientnet_v2
        >>> model = efficientnet_v2.EfficientNetV2{suffix.upper()}(
        ...     weights=None, input_shape=(32, 32, 3), include_top=False)
        >>> model.name
        'efficientnetv2-{suffix}'
    """
    return _builder.documented(builder, size=size, include_preprocessing="whether the model "
                               "scales its [0, 255] inputs itself.")


EfficientNetV2B0 = _variant("b0", 1.0, 1.0, 224, "b0")
EfficientNetV2B1 = _variant("b1", 1.0, 1.1, 240, "b1")
EfficientNetV2B2 = _variant("b2", 1.1, 1.2, 260, "b2")
EfficientNetV2B3 = _variant("b3", 1.2, 1.4, 300, "b3")
EfficientNetV2S = _variant("s", 1.0, 1.0, 384, "-s")
EfficientNetV2M = _variant("m", 1.0, 1.0, 480, "-m")
EfficientNetV2L = _variant("l", 1.0, 1.0, 480, "-l")


preprocess_input = _builder.preprocessing(None, __name__)
decode_predictions = imagenet_utils.decode_predictions
