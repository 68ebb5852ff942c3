"""VGG16 (Simonyan & Zisserman, 2014): five blocks of 3x3 convolutions and max pooling, then
two 4096-unit layers, as keras.applications.vgg16, with Keras's layer names so that its
ImageNet weights load. `build_vgg` also makes VGG19 (kilnet.applications.vgg19).

Example:
    >>> from kilnet.applications import vgg16
    >>> model = vgg16.VGG16(input_shape=(32, 32, 3), weights=None, include_top=False)
    >>> model.name, model.output.shape
    ('vgg16', (None, 1, 1, 512))
"""

from __future__ import annotations

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils
from kilnet.applications._origin import keras_file

WEIGHTS_PATH = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5")
WEIGHTS_PATH_NO_TOP = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                       "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
# Keras's md5 of the files (with classifier, without).
WEIGHTS_HASHES = ("64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc")
BLOCK_FILTERS = (64, 128, 256, 512, 512)


def VGG16(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax", name="vgg16"):
    """VGG16, as keras.applications.VGG16 (same arguments, defaults, layer names and
    weights). Its inputs are "caffe"-preprocessed: see `preprocess_input`.

    Args:
        include_top: whether to end in the two 4096-unit layers and the 1000-class (or
            `classes`) classifier.
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
        >>> from kilnet.applications import VGG16
        >>> [layer.name for layer in VGG16(weights=None, input_shape=(32, 32, 3),
        ...                                include_top=False).layers][1:4]
        ['block1_conv1', 'block1_conv2', 'block1_pool']
    """
    def imagenet_path():
        if include_top:
            return keras_file("vgg16_weights_tf_dim_ordering_tf_kernels.h5", WEIGHTS_PATH,
                              WEIGHTS_HASHES[0])
        return keras_file("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          WEIGHTS_PATH_NO_TOP, WEIGHTS_HASHES[1])

    return build_vgg((2, 2, 3, 3, 3), include_top, weights, input_tensor, input_shape, pooling,
                     classes, classifier_activation, name, imagenet_path)


def build_vgg(convs_per_block, include_top, weights, input_tensor, input_shape, pooling,
              classes, classifier_activation, name, imagenet_path):
    """A VGG network with `convs_per_block` 3x3 convolutions in each of its five blocks
    (VGG16: (2, 2, 3, 3, 3), VGG19: (2, 2, 4, 4, 4)); `imagenet_path()` fetches the weights.

    Example:
        >>> from kilnet.applications.vgg16 import build_vgg
        >>> build_vgg((1, 1, 1, 1, 1), False, None, None, (32, 32, 3), "avg", 1000, None,
        ...           "tiny_vgg", None).output.shape
        (None, 512)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    input_shape = imagenet_utils.obtain_input_shape(input_shape, 224, min_size=32,
                                                    require_flatten=include_top,
                                                    weights=weights)
    img_input = _builder.image_input(input_tensor, input_shape)
    x = img_input
    for block, (filters, convs) in enumerate(zip(BLOCK_FILTERS, convs_per_block), start=1):
        for conv in range(1, convs + 1):
            x = layers.Conv2D(filters, (3, 3), activation="relu", padding="same",
                              name=f"block{block}_conv{conv}")(x)
        x = layers.MaxPooling2D((2, 2), strides=(2, 2), name=f"block{block}_pool")(x)
    if include_top:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(4096, activation="relu", name="fc1")(x)
        x = layers.Dense(4096, activation="relu", name="fc2")(x)
        imagenet_utils.validate_activation(classifier_activation, weights)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    else:
        x = _builder.pooled(x, pooling)
    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


def preprocess_input(x, data_format=None):
    """Images in [0, 255] as VGG's weights expect: RGB to BGR, minus ImageNet's mean pixel
    ("caffe" mode of imagenet_utils.preprocess_input).

    Example:
        >>> import numpy as np
        >>> from kilnet.applications import vgg16
        >>> vgg16.preprocess_input(np.zeros((1, 3))).tolist()
        [[-103.939, -116.779, -123.68]]
    """
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")


def decode_predictions(preds, top=5):
    """The `top` ImageNet classes of each prediction (imagenet_utils.decode_predictions).

    Example:
        >>> from kilnet.applications import vgg16
        >>> vgg16.decode_predictions.__name__
        'decode_predictions'
    """
    return imagenet_utils.decode_predictions(preds, top=top)
