"""MobileNetV3Small and MobileNetV3Large (Howard et al., 2019): inverted residual blocks with
squeeze-and-excite units and hard-swish, as keras.applications.mobilenet_v3, with Keras's
layer names so that its ImageNet weights load.

The input scaling is inside the model (a Rescaling layer to [-1, 1], unless
include_preprocessing=False), so `preprocess_input` returns its input unchanged, as Keras's.

Example:
    >>> from kilnet.applications import mobilenet_v3
    >>> model = mobilenet_v3.MobileNetV3Small(input_shape=(32, 32, 3), alpha=0.75,
    ...                                       weights=None, include_top=False, pooling="avg")
    >>> model.name, model.output.shape
    ('MobileNetV3Small', (None, 432))
"""

from __future__ import annotations


from kilnet import layers
from kilnet.applications import _builder, imagenet_utils
from kilnet.applications.mobilenet_v2 import make_divisible

BASE_WEIGHT_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v3/"
# Keras's md5 of each (with classifier, without) weights file, by "<type>_224_<alpha>_float".
WEIGHTS_HASHES = {
    "large_224_0.75_float": ("765b44a33ad4005b3ac83185abf1d0eb",
                             "40af19a13ebea4e2ee0c676887f69a2e"),
    "large_224_1.0_float": ("59e551e166be033d707958cf9e29a6a7",
                            "07fb09a5933dd0c8eaafa16978110389"),
    "large_minimalistic_224_1.0_float": ("675e7b876c45c57e9e63e6d90a36599c",
                                         "ec5221f64a2f6d1ef965a614bdae7973"),
    "small_224_0.75_float": ("cb65d4e5be93758266aa0a7f2c6708b7",
                             "ebdb5cc8e0b497cd13a7c275d475c819"),
    "small_224_1.0_float": ("8768d4c2e7dee89b9d02b2d03d65d862",
                            "d3e8ec802a04aa4fc771ee12a9a9b836"),
    "small_minimalistic_224_1.0_float": ("99cd97fb2fcdad2bf028eb838de69e37",
                                         "cde8136e733e811080d9fcd8a252f7e4"),
}
# The blocks, block_id 0..n-1: (expansion, filters, kernel, stride, squeeze-excite, activation).
# kernel "k", squeeze-excite True and activation "act" are the variant's: 5, SE and hard-swish,
# or 3, no SE and ReLU for the minimalistic models; "relu" is ReLU in both.
SMALL_BLOCKS = ((1, 16, 3, 2, True, "relu"),
                (72 / 16, 24, 3, 2, False, "relu"),
                (88 / 24, 24, 3, 1, False, "relu"),
                (4, 40, "k", 2, True, "act"),
                (6, 40, "k", 1, True, "act"),
                (6, 40, "k", 1, True, "act"),
                (3, 48, "k", 1, True, "act"),
                (3, 48, "k", 1, True, "act"),
                (6, 96, "k", 2, True, "act"),
                (6, 96, "k", 1, True, "act"),
                (6, 96, "k", 1, True, "act"))
LARGE_BLOCKS = ((1, 16, 3, 1, False, "relu"),
                (4, 24, 3, 2, False, "relu"),
                (3, 24, 3, 1, False, "relu"),
                (3, 40, "k", 2, True, "relu"),
                (3, 40, "k", 1, True, "relu"),
                (3, 40, "k", 1, True, "relu"),
                (6, 80, 3, 2, False, "act"),
                (2.5, 80, 3, 1, False, "act"),
                (2.3, 80, 3, 1, False, "act"),
                (2.3, 80, 3, 1, False, "act"),
                (6, 112, 3, 1, True, "act"),
                (6, 112, 3, 1, True, "act"),
                (6, 160, "k", 2, True, "act"),
                (6, 160, "k", 1, True, "act"),
                (6, 160, "k", 1, True, "act"))
_SE_RATIO = 0.25
# The width of the classifier's hidden 1x1 convolution ("conv_2") per model type.
_LAST_POINT_CHANNELS = {"small": 1024, "large": 1280}


def MobileNetV3(blocks, model_type, input_shape=None, alpha=1.0, minimalistic=False,
                include_top=True, weights="imagenet", input_tensor=None, classes=1000,
                pooling=None, dropout_rate=0.2, classifier_activation="softmax",
                include_preprocessing=True, name=None):
    """A MobileNetV3 of the `blocks` table and `model_type` ("small" or "large"); the public
    builders below call it.

    Example:
        >>> from kilnet.applications.mobilenet_v3 import MobileNetV3, LARGE_BLOCKS
        >>> MobileNetV3(LARGE_BLOCKS, "large", input_shape=(32, 32, 3), weights=None,
        ...             include_top=False, minimalistic=True).output.shape
        (None, 1, 1, 960)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    input_shape = _input_shape(input_shape, input_tensor, include_top, weights)
    if weights == "imagenet":
        _check_imagenet_variant(alpha, minimalistic, input_shape)
    img_input = _builder.image_input(input_tensor, input_shape)
    if minimalistic:
        kernel, activation, se_ratio = 3, relu, None
    else:
        kernel, activation, se_ratio = 5, hard_swish, _SE_RATIO
    x = img_input
    if include_preprocessing:
        x = layers.Rescaling(scale=1.0 / 127.5, offset=-1.0)(x)
    x = layers.Conv2D(16, kernel_size=3, strides=(2, 2), padding="same", use_bias=False,
                      name="conv")(x)
    x = _batch_norm("conv_bn")(x)
    x = activation(x)
    for block_id, (expansion, filters, size, stride, has_se, act) in enumerate(blocks):
        x = inverted_res_block(x, expansion, make_divisible(filters * alpha, 8),
                               kernel if size == "k" else size, stride,
                               se_ratio if has_se else None,
                               activation if act == "act" else relu, block_id)
    x = layers.Conv2D(make_divisible(x.shape[-1] * 6, 8), kernel_size=1, padding="same",
                      use_bias=False, name="conv_1")(x)
    x = _batch_norm("conv_1_bn")(x)
    x = activation(x)
    if include_top:
        last_point_channels = _LAST_POINT_CHANNELS[model_type]
        if alpha > 1.0:   # Keras widens the classifier's hidden layer only for alpha > 1
            last_point_channels = make_divisible(last_point_channels * alpha, 8)
        x = _classifier(x, last_point_channels, activation, dropout_rate, classes,
                        classifier_activation, weights)
    else:
        x = _builder.pooled(x, pooling, "avg_pool", "max_pool")

    def imagenet_path():
        variant = "_minimalistic" if minimalistic else ""
        # float(): Keras writes str(alpha), so alpha=1 (an int) finds no file there.
        model_name = f"{model_type}{variant}_224_{float(alpha)}_float"
        return _builder.keras_weights(BASE_WEIGHT_PATH, f"weights_mobilenet_v3_{model_name}",
                                      WEIGHTS_HASHES[model_name], include_top, "_no_top_v2")

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def _input_shape(input_shape, input_tensor, include_top, weights):
    """The image shape as Keras's MobileNetV3 takes it: `input_shape`, else the tensor's,
    checked against each other; at least 32x32, 3 channels with ImageNet weights."""
    tensor_shape = None if input_tensor is None else tuple(getattr(input_tensor, "shape",
                                                                   ())[1:])
    if input_shape is not None:
        input_shape = tuple(input_shape)
        if tensor_shape and len(tensor_shape) == 3 and tensor_shape != input_shape:
            raise ValueError("input_shape must equal the shape of input_tensor (without its "
                             "batch axis); pass only one of them. Received: "
                             f"input_shape={input_shape}, input_tensor.shape="
                             f"{tuple(input_tensor.shape)}")
    elif tensor_shape:
        input_shape = tensor_shape
    elif include_top:
        # Keras leaves the size open, (None, None, 3); kilnet's layers need it when the
        # model is made, and 224x224 is the size of the ImageNet weights.
        input_shape = (224, 224, 3)
    else:
        input_shape = (None, None, 3)
    if len(input_shape) != 3:
        raise ValueError("input_shape must be (height, width, channels). "
                         f"Received: input_shape={input_shape}")
    if any(side is not None and side < 32 for side in input_shape[:2]):
        raise ValueError(f"Input size must be at least 32x32. Received: input_shape="
                         f"{input_shape}")
    if weights == "imagenet" and input_shape[-1] != 3:
        raise ValueError("The ImageNet weights take 3-channel (RGB) images. "
                         f"Received: input_shape={input_shape}")
    return input_shape


def _check_imagenet_variant(alpha, minimalistic, input_shape):
    """Keras publishes weights for alpha 0.75 and 1.0 (1.0 only when minimalistic), trained
    at 224x224: other sizes load those weights with a warning, as in Keras."""
    allowed = (1.0,) if minimalistic else (0.75, 1.0)
    if alpha not in allowed:
        raise ValueError(f"MobileNetV3's ImageNet weights exist for alpha in {allowed} "
                         f"(minimalistic={minimalistic}); pass one of them, or weights=None. "
                         f"Received: alpha={alpha}")
    rows, cols = input_shape[:2]
    if rows != cols or rows != 224:
        imagenet_utils.warn_at_users_call("input_shape is undefined, not square, or its size "
                                          "is not 224: the weights for 224x224 inputs are "
                                          "loaded.")


def _classifier(x, last_point_channels, activation, dropout_rate, classes,
                classifier_activation, weights):
    """Keras's MobileNetV3 top: pooling kept 4-D, a 1x1 convolution, dropout, 1x1 logits."""
    x = layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = layers.Conv2D(last_point_channels, kernel_size=1, padding="same", use_bias=True,
                      name="conv_2")(x)
    x = activation(x)
    if dropout_rate > 0:
        x = layers.Dropout(dropout_rate)(x)
    x = layers.Conv2D(classes, kernel_size=1, padding="same", name="logits")(x)
    x = layers.Flatten()(x)
    imagenet_utils.validate_activation(classifier_activation, weights)
    return layers.Activation(activation=classifier_activation, name="predictions")(x)


def _batch_norm(name):
    return layers.BatchNormalization(axis=-1, epsilon=1e-3, momentum=0.999, name=name)


def relu(x):
    """ReLU as its own (default-named) layer, as Keras's MobileNetV3 builds it.

    Example:
        >>> import numpy as np
        >>> from kilnet.applications.mobilenet_v3 import relu
        >>> np.asarray(relu(np.array([-1.0, 2.0]))).tolist()
        [0.0, 2.0]
    """
    return layers.ReLU()(x)


def hard_sigmoid(x):
    """relu6(x + 3) / 6, built as Keras builds it: a ReLU(6) layer between two ops.

    Example:
        >>> import numpy as np
        >>> from kilnet.applications.mobilenet_v3 import hard_sigmoid
        >>> np.asarray(hard_sigmoid(np.array([-4.0, 0.0, 4.0]))).tolist()
        [0.0, 0.5, 1.0]
    """
    return layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def hard_swish(x):
    """x * hard_sigmoid(x), as an Activation("hard_swish") layer.

    Example:
        >>> import numpy as np
        >>> from kilnet.applications.mobilenet_v3 import hard_swish
        >>> np.asarray(hard_swish(np.array([-4.0, 3.0]))).tolist()
        [-0.0, 3.0]
    """
    return layers.Activation("hard_swish")(x)


def se_block(inputs, filters, se_ratio, prefix):
    """Squeeze-and-excite: the channels' means, squeezed to `filters * se_ratio` (ReLU),
    expanded back to `filters` (hard sigmoid), scaling the input's channels.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.mobilenet_v3 import se_block
        >>> se_block(kilnet.Input(shape=(4, 4, 16)), 16, 0.25, "b_").shape
        (None, 4, 4, 16)
    """
    x = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}squeeze_excite_avg_pool")(
        inputs)
    x = layers.Conv2D(make_divisible(filters * se_ratio, 8), kernel_size=1, padding="same",
                      name=f"{prefix}squeeze_excite_conv")(x)
    x = layers.ReLU(name=f"{prefix}squeeze_excite_relu")(x)
    x = layers.Conv2D(filters, kernel_size=1, padding="same",
                      name=f"{prefix}squeeze_excite_conv_1")(x)
    x = hard_sigmoid(x)
    return layers.Multiply(name=f"{prefix}squeeze_excite_mul")([inputs, x])


def inverted_res_block(x, expansion, filters, kernel_size, stride, se_ratio, activation,
                       block_id):
    """Expand (1x1, except block 0), depthwise `kernel_size`, squeeze-excite when `se_ratio`,
    project (1x1, linear); a residual when the shapes allow.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.mobilenet_v3 import inverted_res_block, relu
        >>> inverted_res_block(kilnet.Input(shape=(8, 8, 16)), 4, 24, 3, 2, 0.25, relu,
        ...                    1).shape
        (None, 4, 4, 24)
    """
    shortcut = x
    in_channels = x.shape[-1]
    expanded = make_divisible(in_channels * expansion, 8)
    prefix = f"expanded_conv_{block_id}_" if block_id else "expanded_conv_"
    if block_id:
        x = layers.Conv2D(expanded, kernel_size=1, padding="same", use_bias=False,
                          name=f"{prefix}expand")(x)
        x = _batch_norm(f"{prefix}expand_bn")(x)
        x = activation(x)
    if stride == 2:
        x = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(x, kernel_size),
                                 name=f"{prefix}depthwise_pad")(x)
    x = layers.DepthwiseConv2D(kernel_size, strides=stride,
                               padding="same" if stride == 1 else "valid", use_bias=False,
                               name=f"{prefix}depthwise")(x)
    x = _batch_norm(f"{prefix}depthwise_bn")(x)
    x = activation(x)
    if se_ratio:
        x = se_block(x, expanded, se_ratio, prefix)
    x = layers.Conv2D(filters, kernel_size=1, padding="same", use_bias=False,
                      name=f"{prefix}project")(x)
    x = _batch_norm(f"{prefix}project_bn")(x)
    if stride == 1 and in_channels == filters:
        x = layers.Add(name=f"{prefix}add")([shortcut, x])
    return x


def _variant_builder(model_type, blocks):
    def builder(input_shape=None, alpha=1.0, minimalistic=False, include_top=True,
                weights="imagenet", input_tensor=None, classes=1000, pooling=None,
                dropout_rate=0.2, classifier_activation="softmax", include_preprocessing=True,
                name=f"MobileNetV3{model_type.title()}"):
        return MobileNetV3(blocks, model_type, input_shape=input_shape, alpha=alpha,
                           minimalistic=minimalistic, include_top=include_top, weights=weights,
                           input_tensor=input_tensor, classes=classes, pooling=pooling,
                           dropout_rate=dropout_rate,
                           classifier_activation=classifier_activation,
                           include_preprocessing=include_preprocessing, name=name)

    title = f"MobileNetV3{model_type.title()}"
    builder.__name__ = builder.__qualname__ = title
    builder.__doc__ = f"""{title}, as keras.applications.{title} (same arguments, defaults,
    layer names and weights). Its inputs are RGB pixels in [0, 255] (the model scales them
    itself), or in [-1, 1] with include_preprocessing=False.

    <arguments>

    Example:
        >>> from kilnet.applications import {title}
        >>> model = {title}(input_shape=(32, 32, 3), weights=None, classes=3)
        >>> model.name, model.output.shape
        ('{title}', (None, 3))
    """
    return _builder.documented(builder, **_ARGUMENT_DOCS)


# The builders' own arguments, and those they take otherwise than the other applications.
_ARGUMENT_DOCS = dict(
    input_shape="(height, width, 3), at least 32x32; the ImageNet weights were trained at "
                "(224, 224, 3) (other sizes load them with a warning). None: input_tensor's "
                "shape, else (224, 224, 3) with the classifier (Keras leaves the size open; "
                "kilnet needs it), else an error asking for it.",
    alpha="the width multiplier (ImageNet weights exist for 0.75 and 1.0, and 1.0 only when "
          "minimalistic).",
    minimalistic="the variant without squeeze-excite, hard-swish and 5x5 convolutions.",
    dropout_rate="the dropout before the classifier's logits.",
    include_preprocessing="whether the model starts with its Rescaling to [-1, 1].")


MobileNetV3Small = _variant_builder("small", SMALL_BLOCKS)
MobileNetV3Large = _variant_builder("large", LARGE_BLOCKS)


preprocess_input = _builder.preprocessing(None, __name__)
decode_predictions = imagenet_utils.decode_predictions
