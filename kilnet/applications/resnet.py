"""ResNet50, ResNet101 and ResNet152 (He et al., 2015): bottleneck residual blocks, as
keras.applications.resnet, with Keras's layer names so that its ImageNet weights load.

Example:
    >>> from kilnet.applications import resnet
    >>> model = resnet.ResNet50(input_shape=(32, 32, 3), weights=None, include_top=False)
    >>> model.name, model.output.shape
    ('resnet50', (None, 1, 1, 2048))
"""

from __future__ import annotations

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# Keras's md5 of each (with classifier, without) weights file.
WEIGHTS_HASHES = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
# Blocks per stage (conv2..conv5) of each depth.
STAGES = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}
# The bottleneck width of each stage's blocks (conv2..conv5), in v1 and v2 alike.
STAGE_FILTERS = (64, 128, 256, 512)
_EPSILON = 1.001e-5


def ResNet(weights_name, include_top=True, weights="imagenet", input_tensor=None,
           input_shape=None, pooling=None, classes=1000, classifier_activation="softmax",
           name="resnet"):
    """A ResNet v1 of the depth `weights_name` names ("resnet50", "resnet101" or
    "resnet152"); the public builders below call it.

    Example:
        >>> from kilnet.applications.resnet import ResNet
        >>> ResNet("resnet50", weights=None, input_shape=(32, 32, 3), include_top=False,
        ...        pooling="max").output.shape
        (None, 2048)
    """
    def stacks(x):
        for stage, (filters, blocks) in enumerate(zip(STAGE_FILTERS, STAGES[weights_name])):
            x = stack_residual_blocks_v1(x, filters, blocks, stride1=1 if stage == 0 else 2,
                                         name=f"conv{stage + 2}")
        return x

    return build_resnet(stacks, False, weights_name, WEIGHTS_HASHES, include_top, weights,
                        input_tensor, input_shape, pooling, classes, classifier_activation,
                        name)


def build_resnet(stacks, preact, weights_name, weights_hashes, include_top, weights,
                 input_tensor, input_shape, pooling, classes, classifier_activation, name):
    """Keras's ResNet around its residual stages `stacks(x)`: the stem before them; for a
    pre-activation net (`preact`, v2) a batch norm and ReLU after them; then the classifier
    or the pooling. Its ImageNet weights are Keras's file of `weights_name`, checked against
    `weights_hashes[weights_name]`. ResNet and ResNetV2 call it.

    Example:
        >>> from kilnet.applications.resnet import build_resnet
        >>> build_resnet(lambda x: x, True, "stem_only", {}, False, None, None, (32, 32, 3),
        ...              "avg", 1000, None, "stem_only").output.shape
        (None, 64)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    img_input = _builder.sized_image_input(input_tensor, input_shape, 224, 32, include_top,
                                           weights)
    # A pre-activation net's stem has no batch norm: each block normalises its own input.
    x = stacks(stem(img_input, batch_norm=not preact))
    if preact:
        x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name="post_bn")(x)
        x = layers.Activation("relu", name="post_relu")(x)
    x = _builder.top(x, include_top, pooling, classes, classifier_activation, weights,
                     avg_name="avg_pool", max_name="max_pool")

    def imagenet_path():
        return _builder.keras_weights(BASE_WEIGHTS_PATH, weights_name + _builder.TF_KERNELS,
                                      weights_hashes[weights_name], include_top)

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def stem(x, batch_norm=True):
    """Keras's ResNet stem: conv1 (a padded 7x7 stride-2 convolution to 64 channels), its
    batch norm and ReLU when `batch_norm` (v1; v2's blocks normalise their own inputs), and
    pool1 (a padded 3x3 stride-2 max pooling).

    Example:
        >>> import kilnet
        >>> from kilnet.applications.resnet import stem
        >>> stem(kilnet.Input(shape=(32, 32, 3)), batch_norm=False).shape
        (None, 8, 8, 64)
    """
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, use_bias=True, name="conv1_conv")(x)
    if batch_norm:
        x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name="conv1_bn")(x)
        x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def residual_block_v1(x, filters, kernel_size=3, stride=1, conv_shortcut=True, name=None):
    """A bottleneck block: 1x1 (`stride`), `kernel_size`, 1x1 to 4*filters, plus a shortcut
    (a strided 1x1 convolution when `conv_shortcut`, else the input).

    Example:
        >>> import kilnet
        >>> from kilnet.applications.resnet import residual_block_v1
        >>> residual_block_v1(kilnet.Input(shape=(8, 8, 16)), 4, stride=2, name="b").shape
        (None, 4, 4, 16)
    """
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(axis=-1, epsilon=_EPSILON,
                                             name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name=f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.Conv2D(filters, kernel_size, padding="same", name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name=f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name=f"{name}_3_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def stack_residual_blocks_v1(x, filters, blocks, stride1=2, name=None):
    """`blocks` bottleneck blocks named `<name>_block1..n`; the first has the convolution
    shortcut and stride `stride1`.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.resnet import stack_residual_blocks_v1
        >>> stack_residual_blocks_v1(kilnet.Input(shape=(8, 8, 16)), 4, 2, name="s").shape
        (None, 4, 4, 16)
    """
    x = residual_block_v1(x, filters, stride=stride1, name=f"{name}_block1")
    for i in range(2, blocks + 1):
        x = residual_block_v1(x, filters, conv_shortcut=False, name=f"{name}_block{i}")
    return x


def _depth_builder(weights_name):
    return _builder.variant_builder(
        f"ResNet{weights_name[len('resnet'):]}", weights_name,
        'Its inputs are "caffe"-preprocessed (BGR, minus the ImageNet mean pixel): see '
        "`preprocess_input`.", ResNet, weights_name)


ResNet50 = _depth_builder("resnet50")
ResNet101 = _depth_builder("resnet101")
ResNet152 = _depth_builder("resnet152")


preprocess_input = _builder.preprocessing("caffe", __name__)
decode_predictions = imagenet_utils.decode_predictions
