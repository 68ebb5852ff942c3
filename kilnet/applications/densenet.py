"""DenseNet121, DenseNet169 and DenseNet201 (Huang et al., 2017): dense blocks where each
layer sees every earlier feature map of its block, as keras.applications.densenet, with
Keras's layer names so that its ImageNet weights load.

Example:
    >>> from kilnet.applications import densenet
    >>> model = densenet.DenseNet121(input_shape=(32, 32, 3), weights=None, include_top=False)
    >>> model.name, model.output.shape
    ('densenet121', (None, 1, 1, 1024))
"""

from __future__ import annotations

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
# Blocks per dense block of each depth, and Keras's md5 of its (with classifier, without)
# weights files.
BLOCKS = {"densenet121": (6, 12, 24, 16), "densenet169": (6, 12, 32, 32),
          "densenet201": (6, 12, 48, 32)}
WEIGHTS_HASHES = {
    "densenet121": ("9d60b8095a5708f2dcce2bca79d332c7", "30ee3e1110167f948a6b9946edeeb738"),
    "densenet169": ("d699b8f76981ab1b30698df4c175e90b", "b8c4d4c20dd625c148057b9ff1c1176b"),
    "densenet201": ("1ceb130c1ea1b78c3bf6114dbdfd8807", "c13680b51ded0fb44dff2d8f86ac8bb1"),
}
GROWTH_RATE = 32
_EPSILON = 1.001e-5


def DenseNet(blocks, include_top=True, weights="imagenet", input_tensor=None,
             input_shape=None, pooling=None, classes=1000, classifier_activation="softmax",
             name="densenet"):
    """A DenseNet with `blocks` conv blocks in each of its four dense blocks, as Keras's
    DenseNet(blocks, ...); ImageNet weights exist for the three depths of BLOCKS, which the
    public builders below make.

    Example:
        >>> from kilnet.applications.densenet import DenseNet
        >>> DenseNet([1, 1, 1, 1], weights=None, input_shape=(32, 32, 3), include_top=False,
        ...          pooling="avg").output.shape
        (None, 68)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    depth_name = next((n for n, b in BLOCKS.items() if tuple(blocks) == b), None)
    if weights == "imagenet" and depth_name is None:
        raise ValueError(f"DenseNet has ImageNet weights for blocks in {list(BLOCKS.values())} "
                         f"only; pass weights=None or a file. Received: blocks={blocks}")
    img_input = _builder.sized_image_input(input_tensor, input_shape, 224, 32, include_top,
                                           weights)
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)))(img_input)   # unnamed in Keras
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)))(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, count in enumerate(blocks, start=2):
        x = dense_block(x, count, name=f"conv{stage}")
        if stage < 5:
            x = transition_block(x, 0.5, name=f"pool{stage}")
    x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name="bn")(x)
    x = layers.Activation("relu", name="relu")(x)
    x = _builder.top(x, include_top, pooling, classes, classifier_activation, weights,
                     avg_name="avg_pool", max_name="max_pool")

    def imagenet_path():
        return _builder.keras_weights(BASE_WEIGHTS_PATH, depth_name + _builder.TF_KERNELS,
                                      WEIGHTS_HASHES[depth_name], include_top)

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def dense_block(x, blocks, name):
    """`blocks` conv blocks, each concatenating GROWTH_RATE new channels to its input.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.densenet import dense_block
        >>> dense_block(kilnet.Input(shape=(8, 8, 16)), 2, name="d").shape
        (None, 8, 8, 80)
    """
    for i in range(blocks):
        x = conv_block(x, GROWTH_RATE, name=f"{name}_block{i + 1}")
    return x


def transition_block(x, reduction, name):
    """Batch norm, ReLU, a 1x1 convolution keeping `reduction` of the channels, 2x2
    average pooling.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.densenet import transition_block
        >>> transition_block(kilnet.Input(shape=(8, 8, 16)), 0.5, name="t").shape
        (None, 4, 4, 8)
    """
    x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Conv2D(int(x.shape[-1] * reduction), 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def conv_block(x, growth_rate, name):
    """The input and `growth_rate` new channels (BN-ReLU-1x1 conv-BN-ReLU-3x3 conv of it),
    concatenated.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.densenet import conv_block
        >>> conv_block(kilnet.Input(shape=(8, 8, 16)), 32, name="c").shape
        (None, 8, 8, 48)
    """
    x1 = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name=f"{name}_0_bn")(x)
    x1 = layers.Activation("relu", name=f"{name}_0_relu")(x1)
    x1 = layers.Conv2D(4 * growth_rate, 1, use_bias=False, name=f"{name}_1_conv")(x1)
    x1 = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name=f"{name}_1_bn")(x1)
    x1 = layers.Activation("relu", name=f"{name}_1_relu")(x1)
    x1 = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False,
                       name=f"{name}_2_conv")(x1)
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([x, x1])


def _depth_builder(depth_name):
    return _builder.variant_builder(
        f"DenseNet{depth_name[len('densenet'):]}", depth_name,
        'Its inputs are "torch"-preprocessed: see `preprocess_input`.', DenseNet,
        BLOCKS[depth_name])


DenseNet121 = _depth_builder("densenet121")
DenseNet169 = _depth_builder("densenet169")
DenseNet201 = _depth_builder("densenet201")


preprocess_input = _builder.preprocessing("torch", __name__)
decode_predictions = imagenet_utils.decode_predictions
