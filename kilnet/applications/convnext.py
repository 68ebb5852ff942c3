"""ConvNeXt (Liu et al., 2022): a convolutional network designed like a vision transformer
(large depthwise kernels, layer normalization, inverted bottlenecks of Dense layers, layer
scale), as keras.applications.convnext, with Keras's layers, names and nesting (the stem and
the downsampling blocks are Sequential models inside the model), so that its ImageNet
weights and its `.keras` files load. The input normalization is part of the model
(`include_preprocessing`), so `preprocess_input` returns its input unchanged.

Example:
    >>> from kilnet.applications import convnext
    >>> model = convnext.ConvNeXtTiny(input_shape=(32, 32, 3), weights=None,
    ...                               include_top=False, pooling="avg")
    >>> model.name, model.output.shape
    ('convnext_tiny', (None, 768))
"""

from __future__ import annotations

import numpy as np

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils
from kilnet.layers import LayerScale, StochasticDepth
from kilnet.models import Sequential

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/convnext/"
# Keras's sha256 of each variant's files (with classifier, without).
WEIGHTS_HASHES = {
    "convnext_tiny": ("8ae6e78ce2933352b1ef4008e6dd2f17bc40771563877d156bc6426c7cf503ff",
                      "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    "convnext_small": ("ce1277d8f1ee5a0ef0e171469089c18f5233860ceaf9b168049cb9263fd7483c",
                       "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab"),
    "convnext_base": ("52cbb006d3dadd03f6e095a8ca1aca47aecdd75acb4bc74bce1f5c695d0086e6",
                      "40a20c5548a5e9202f69735ecc06c990e6b7c9d2de39f0361e27baeb24cb7c45"),
    "convnext_large": ("070c5ed9ed289581e477741d3b34beffa920db8cf590899d6d2c67fba2a198a6",
                       "96f02b6f0753d4f543261bc9d09bed650f24dd6bc02ddde3066135b63d23a1cd"),
    "convnext_xlarge": ("c1f5ccab661354fc3a79a10fa99af82f0fbf10ec65cb894a3ae0815f17a889ee",
                        "de3f8a54174130e0cecdc71583354753d557fcf1f4487331558e2a16ba0cfe05"),
}
MODEL_CONFIGS = {
    "tiny": {"depths": [3, 3, 9, 3], "projection_dims": [96, 192, 384, 768],
             "default_size": 224},
    "small": {"depths": [3, 3, 27, 3], "projection_dims": [96, 192, 384, 768],
              "default_size": 224},
    "base": {"depths": [3, 3, 27, 3], "projection_dims": [128, 256, 512, 1024],
             "default_size": 224},
    "large": {"depths": [3, 3, 27, 3], "projection_dims": [192, 384, 768, 1536],
              "default_size": 224},
    "xlarge": {"depths": [3, 3, 27, 3], "projection_dims": [256, 512, 1024, 2048],
               "default_size": 224},
}
# ImageNet's RGB mean and variance in [0, 255], which the weights were trained with.
_IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
_IMAGENET_VARIANCE = [(0.229 * 255) ** 2, (0.224 * 255) ** 2, (0.225 * 255) ** 2]


def ConvNeXt(depths, projection_dims, drop_path_rate=0.0, layer_scale_init_value=1e-6,
             default_size=224, name="convnext", include_preprocessing=True, include_top=True,
             weights=None, input_tensor=None, input_shape=None, pooling=None, classes=1000,
             classifier_activation="softmax", weights_name=None):
    """A ConvNeXt of the given stages, as keras.applications' generic builder (same
    arguments, defaults and layer names); ConvNeXtTiny ... ConvNeXtXLarge call it.

    Args:
        depths: the blocks of each of the 4 stages.
        projection_dims: the channels of each stage.
        drop_path_rate: the largest stochastic-depth rate (growing linearly from 0 over the
            blocks); 0: no StochasticDepth layers.
        layer_scale_init_value: LayerScale's initial value; None: no LayerScale layers.
        default_size: the image size the weights were trained at.
        name: the model's name (the prefix of its layers' names and its weights file).
        include_preprocessing: whether the model normalizes its [0, 255] RGB inputs itself.
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation: as every application (see ConvNeXtTiny).
        weights_name: the key of WEIGHTS_HASHES for weights="imagenet".

    Returns:
        A kilnet functional Model.

    Example:
        >>> from kilnet.applications.convnext import ConvNeXt
        >>> model = ConvNeXt([1, 1, 1, 1], [8, 8, 16, 16], input_shape=(32, 32, 3),
        ...                  classes=3)
        >>> model.output.shape
        (None, 3)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    if weights == "imagenet":
        _check_variant(depths, projection_dims, name, weights_name)
    img_input = _builder.sized_image_input(input_tensor, input_shape, default_size, 32,
                                           include_top, weights)
    x = img_input
    if include_preprocessing and x.shape[-1] == 3:
        x = layers.Normalization(mean=_IMAGENET_MEAN, variance=_IMAGENET_VARIANCE,
                                 name=f"{name}_prestem_normalization")(x)
    # The stochastic-depth rate of each block, rising linearly over the whole network.
    rates = [float(r) for r in np.linspace(0.0, drop_path_rate, sum(depths))]
    for stage, (depth, dims) in enumerate(zip(depths, projection_dims)):
        x = (_stem(dims, name) if stage == 0 else _downsampling(dims, stage - 1, name))(x)
        for j in range(depth):
            x = convnext_block(x, dims, rates[sum(depths[:stage]) + j], layer_scale_init_value,
                               name=f"{name}_stage_{stage}_block_{j}")
    if include_top:
        imagenet_utils.validate_activation(classifier_activation, weights)
        x = layers.GlobalAveragePooling2D(name=f"{name}_head_gap")(x)
        x = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_head_layernorm")(x)
        x = layers.Dense(classes, activation=classifier_activation,
                         name=f"{name}_head_dense")(x)
    else:
        # Keras normalizes the features without the head too, pooled or not.
        x = layers.LayerNormalization(epsilon=1e-6)(_builder.pooled(x, pooling))

    def imagenet_path():
        return _builder.keras_weights(BASE_WEIGHTS_PATH, name, WEIGHTS_HASHES[weights_name],
                                      include_top)

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def _check_variant(depths, projection_dims, name, weights_name):
    """ImageNet weights exist only for Keras's variants, under their names."""
    if weights_name not in WEIGHTS_HASHES:
        raise ValueError(f"weights_name must be one of {sorted(WEIGHTS_HASHES)} with "
                         "weights='imagenet' (the variants with ImageNet weights). "
                         f"Received: weights_name={weights_name!r}")
    expected = MODEL_CONFIGS[weights_name.split("convnext_")[-1]]
    if list(depths) != expected["depths"] or list(projection_dims) != \
            expected["projection_dims"]:
        raise ValueError(f"{weights_name}'s ImageNet weights need depths="
                         f"{expected['depths']} and projection_dims="
                         f"{expected['projection_dims']}; pass those, or weights=None. "
                         f"Received: depths={list(depths)}, "
                         f"projection_dims={list(projection_dims)}")
    if weights_name not in name:
        raise ValueError(f"With weights='imagenet' the model's name must contain "
                         f"{weights_name!r} (it names the weights file and the layers); "
                         f"keep the default name. Received: name={name!r}")


def _stem(dims, name):
    """4x4 patches with stride 4, normalized: a Sequential model, as Keras nests it."""
    return Sequential([layers.Conv2D(dims, kernel_size=4, strides=4, name=f"{name}_stem_conv"),
                       layers.LayerNormalization(epsilon=1e-6,
                                                 name=f"{name}_stem_layernorm")],
                      name=f"{name}_stem")


def _downsampling(dims, index, name):
    """Normalization then a 2x2 stride-2 convolution: a Sequential model, as Keras nests it."""
    return Sequential([layers.LayerNormalization(
                           epsilon=1e-6, name=f"{name}_downsampling_layernorm_{index}"),
                       layers.Conv2D(dims, kernel_size=2, strides=2,
                                     name=f"{name}_downsampling_conv_{index}")],
                      name=f"{name}_downsampling_block_{index}")


def convnext_block(inputs, projection_dim, drop_path_rate=0.0, layer_scale_init_value=1e-6,
                   name="convnext_block"):
    """Keras's ConvNeXtBlock on `inputs`: a 7x7 depthwise convolution (a grouped Conv2D),
    layer normalization, a Dense GELU bottleneck 4x wide, layer scale and stochastic depth
    on the branch, added to `inputs`.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.convnext import convnext_block
        >>> convnext_block(kilnet.Input(shape=(8, 8, 16)), 16, name="b").shape
        (None, 8, 8, 16)
    """
    x = layers.Conv2D(projection_dim, kernel_size=7, padding="same", groups=projection_dim,
                      name=f"{name}_depthwise_conv")(inputs)
    x = layers.LayerNormalization(epsilon=1e-6, name=f"{name}_layernorm")(x)
    x = layers.Dense(4 * projection_dim, name=f"{name}_pointwise_conv_1")(x)
    x = layers.Activation("gelu", name=f"{name}_gelu")(x)
    x = layers.Dense(projection_dim, name=f"{name}_pointwise_conv_2")(x)
    if layer_scale_init_value is not None:
        x = LayerScale(layer_scale_init_value, projection_dim, name=f"{name}_layer_scale")(x)
    if drop_path_rate:
        x = StochasticDepth(drop_path_rate, name=f"{name}_stochastic_depth")(x)
    else:
        x = layers.Activation("linear", name=f"{name}_identity")(x)
    # Keras adds with `+` (an op node, not a layer: absent from model.layers, as there).
    return inputs + x


def _variant(size):
    """The builder of one Keras variant (ConvNeXtTiny ... ConvNeXtXLarge)."""
    config = MODEL_CONFIGS[size]
    title = "XLarge" if size == "xlarge" else size.capitalize()

    def builder(include_top=True, include_preprocessing=True, weights="imagenet",
                input_tensor=None, input_shape=None, pooling=None, classes=1000,
                classifier_activation="softmax", name=f"convnext_{size}"):
        return ConvNeXt(config["depths"], config["projection_dims"], drop_path_rate=0.0,
                        layer_scale_init_value=1e-6, default_size=config["default_size"],
                        name=name, include_preprocessing=include_preprocessing,
                        include_top=include_top, weights=weights, input_tensor=input_tensor,
                        input_shape=input_shape, pooling=pooling, classes=classes,
                        classifier_activation=classifier_activation,
                        weights_name=f"convnext_{size}")

    builder.__name__ = builder.__qualname__ = f"ConvNeXt{title}"
    builder.__doc__ = f"""ConvNeXt{title}, as keras.applications (same arguments, defaults,
    layer names and weights). Its inputs are RGB in [0, 255]: the model normalizes them
    itself (include_preprocessing=False: it expects ImageNet-normalized inputs).

    <arguments>

    Example:
        >>> from kilnet.applications import convnext
        >>> convnext.ConvNeXt{title}(weights=None, input_shape=(32, 32, 3),
        ...                        include_top=False).name
        'convnext_{size}'
    """
    return _builder.documented(
        builder, include_preprocessing="whether the model normalizes its inputs itself.",
        name=f'the model\'s name (with ImageNet weights it must contain "convnext_{size}").')


ConvNeXtTiny = _variant("tiny")
ConvNeXtSmall = _variant("small")
ConvNeXtBase = _variant("base")
ConvNeXtLarge = _variant("large")
ConvNeXtXLarge = _variant("xlarge")


preprocess_input = _builder.preprocessing(None, __name__)
decode_predictions = imagenet_utils.decode_predictions
