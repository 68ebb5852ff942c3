"""ResNet50V2, ResNet101V2 and ResNet152V2 (He et al., 2016, "Identity Mappings in Deep
Residual Networks"): pre-activation bottleneck blocks, as keras.applications.resnet_v2, with
Keras's layer names so that its ImageNet weights load.

Example:
    >>> from kilnet.applications import resnet_v2
    >>> model = resnet_v2.ResNet50V2(input_shape=(32, 32, 3), weights=None, include_top=False)
    >>> model.name, model.output.shape
    ('resnet50v2', (None, 1, 1, 2048))
"""

from __future__ import annotations

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils
from kilnet.applications.resnet import STAGE_FILTERS, build_resnet

# Keras's md5 of each (with classifier, without) weights file.
WEIGHTS_HASHES = {
    "resnet50v2": ("3ef43a0b657b3be2300d5770ece849e0", "fac2f116257151a9d068a22e544a4917"),
    "resnet101v2": ("6343647c601c52e1368623803854d971", "c0ed64b8031c3730f411d2eb4eea35b5"),
    "resnet152v2": ("a49b44d1979771252814e80f8ec446f9", "ed17cf2e0169df9d443503ef94b23b33"),
}
# Blocks per stage (conv2..conv5) of each depth.
STAGES = {"resnet50v2": (3, 4, 6, 3), "resnet101v2": (3, 4, 23, 3),
          "resnet152v2": (3, 8, 36, 3)}
_EPSILON = 1.001e-5


def ResNetV2(weights_name, include_top=True, weights="imagenet", input_tensor=None,
             input_shape=None, pooling=None, classes=1000, classifier_activation="softmax",
             name="resnet"):
    """A ResNet v2 of the depth `weights_name` names ("resnet50v2", "resnet101v2" or
    "resnet152v2"); the public builders below call it.

    Example:
        >>> from kilnet.applications.resnet_v2 import ResNetV2
        >>> ResNetV2("resnet50v2", weights=None, input_shape=(32, 32, 3), include_top=False,
        ...          pooling="max").output.shape
        (None, 2048)
    """
    def stacks(x):
        stages = STAGES[weights_name]
        for stage, (filters, blocks) in enumerate(zip(STAGE_FILTERS, stages)):
            # The stride-2 block ends each stage but the last (Keras's v2 layout).
            x = stack_residual_blocks_v2(x, filters, blocks,
                                         stride1=1 if stage == len(stages) - 1 else 2,
                                         name=f"conv{stage + 2}")
        return x

    return build_resnet(stacks, True, weights_name, WEIGHTS_HASHES, include_top, weights,
                        input_tensor, input_shape, pooling, classes, classifier_activation,
                        name)


def residual_block_v2(x, filters, kernel_size=3, stride=1, conv_shortcut=False, name=None):
    """A pre-activation bottleneck block: batch norm and ReLU first, then 1x1, `kernel_size`
    (`stride`), 1x1 to 4*filters, plus a shortcut: a 1x1 convolution of the pre-activation
    when `conv_shortcut`, else the input (subsampled by a 1x1 max pooling when strided).

    Example:
        >>> import kilnet
        >>> from kilnet.applications.resnet_v2 import residual_block_v2
        >>> residual_block_v2(kilnet.Input(shape=(8, 8, 16)), 4, stride=2, name="b").shape
        (None, 4, 4, 16)
    """
    preact = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name=f"{name}_preact_bn")(x)
    preact = layers.Activation("relu", name=f"{name}_preact_relu")(preact)
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(preact)
    else:
        # Keras leaves this pooling unnamed: it takes the default name, as here.
        shortcut = layers.MaxPooling2D(1, strides=stride)(x) if stride > 1 else x
    x = layers.Conv2D(filters, 1, strides=1, use_bias=False, name=f"{name}_1_conv")(preact)
    x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name=f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name=f"{name}_2_pad")(x)
    x = layers.Conv2D(filters, kernel_size, strides=stride, use_bias=False,
                      name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name=f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    return layers.Add(name=f"{name}_out")([shortcut, x])


def stack_residual_blocks_v2(x, filters, blocks, stride1=2, name=None):
    """`blocks` pre-activation blocks named `<name>_block1..n`: the first with the
    convolution shortcut, the last with stride `stride1`.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.resnet_v2 import stack_residual_blocks_v2
        >>> stack_residual_blocks_v2(kilnet.Input(shape=(8, 8, 16)), 4, 2, name="s").shape
        (None, 4, 4, 16)
    """
    x = residual_block_v2(x, filters, conv_shortcut=True, name=f"{name}_block1")
    for i in range(2, blocks):
        x = residual_block_v2(x, filters, name=f"{name}_block{i}")
    return residual_block_v2(x, filters, stride=stride1, name=f"{name}_block{blocks}")


def _depth_builder(weights_name):
    return _builder.variant_builder(
        f"ResNet{weights_name[len('resnet'):-len('v2')]}V2", weights_name,
        "Its inputs are RGB in [-1, 1]: see `preprocess_input`.", ResNetV2, weights_name)


ResNet50V2 = _depth_builder("resnet50v2")
ResNet101V2 = _depth_builder("resnet101v2")
ResNet152V2 = _depth_builder("resnet152v2")


preprocess_input = _builder.preprocessing("tf", __name__)
decode_predictions = imagenet_utils.decode_predictions
