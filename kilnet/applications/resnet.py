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
from kilnet.applications._origin import keras_file

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# Keras's md5 of each (with classifier, without) weights file.
WEIGHTS_HASHES = {
    "resnet50": ("2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": ("f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
    "resnet152": ("100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
}
# Blocks per stage (conv2..conv5) of each depth.
STAGES = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}
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
    _builder.check_arguments(weights, include_top, classes, pooling)
    input_shape = imagenet_utils.obtain_input_shape(input_shape, 224, min_size=32,
                                                    require_flatten=include_top,
                                                    weights=weights)
    img_input = _builder.image_input(input_tensor, input_shape)
    x = layers.ZeroPadding2D(padding=((3, 3), (3, 3)), name="conv1_pad")(img_input)
    x = layers.Conv2D(64, 7, strides=2, use_bias=True, name="conv1_conv")(x)
    x = layers.BatchNormalization(axis=-1, epsilon=_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(padding=((1, 1), (1, 1)), name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, blocks) in enumerate(zip((64, 128, 256, 512), STAGES[weights_name])):
        x = stack_residual_blocks_v1(x, filters, blocks, stride1=1 if stage == 0 else 2,
                                     name=f"conv{stage + 2}")
    x = _builder.top(x, include_top, pooling, classes, classifier_activation, weights,
                     avg_name="avg_pool", max_name="max_pool")

    def imagenet_path():
        suffix = "" if include_top else "_notop"
        file_name = f"{weights_name}_weights_tf_dim_ordering_tf_kernels{suffix}.h5"
        file_hash = WEIGHTS_HASHES[weights_name][0 if include_top else 1]
        return keras_file(file_name, BASE_WEIGHTS_PATH + file_name, file_hash)

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


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
    def builder(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name=weights_name):
        return ResNet(weights_name, include_top=include_top, weights=weights,
                      input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                      classes=classes, classifier_activation=classifier_activation, name=name)

    depth = weights_name[len("resnet"):]
    builder.__name__ = builder.__qualname__ = f"ResNet{depth}"
    builder.__doc__ = f"""ResNet{depth}, as keras.applications.ResNet{depth} (same arguments,
    defaults, layer names and weights). Its inputs are "caffe"-preprocessed (BGR, minus the
    ImageNet mean pixel): see `preprocess_input`.

    Args:
        include_top: whether to end in the 1000-class (or `classes`) classifier.
        weights: "imagenet" (Keras's pretrained weights, downloaded on first use), None
            (random) or the path of a weights file.
        input_tensor: a symbolic tensor to use as the image input.
        input_shape: (height, width, 3), at least 32x32; (224, 224, 3) with the classifier
            and ImageNet weights.
        pooling: without the classifier, None (the last feature map), "avg" or "max".
        classes: the classifier's classes (1000 with ImageNet weights).
        classifier_activation: the classifier's activation ("softmax" or None with weights).
        name: the model's name.

    Returns:
        A kilnet functional Model.

    Example:
        >>> from kilnet.applications import ResNet{depth}
        >>> ResNet{depth}(weights=None, input_shape=(32, 32, 3), include_top=False).name
        'resnet{depth}'
    """
    return builder


ResNet50 = _depth_builder("resnet50")
ResNet101 = _depth_builder("resnet101")
ResNet152 = _depth_builder("resnet152")


def preprocess_input(x, data_format=None):
    """Images in [0, 255] as ResNet's weights expect: RGB to BGR, minus ImageNet's mean pixel
    ("caffe" mode of imagenet_utils.preprocess_input).

    Example:
        >>> import numpy as np
        >>> from kilnet.applications import resnet
        >>> resnet.preprocess_input(np.zeros((1, 3))).tolist()
        [[-103.939, -116.779, -123.68]]
    """
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")


def decode_predictions(preds, top=5):
    """The `top` ImageNet classes of each prediction (imagenet_utils.decode_predictions).

    Example:
        >>> from kilnet.applications import resnet
        >>> resnet.decode_predictions.__name__
        'decode_predictions'
    """
    return imagenet_utils.decode_predictions(preds, top=top)
