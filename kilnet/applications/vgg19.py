"""VGG19: VGG16 with four convolutions in each of the last three blocks, as
keras.applications.vgg19, with Keras's layer names so that its ImageNet weights load.

Example:
    >>> from kilnet.applications import vgg19
    >>> model = vgg19.VGG19(input_shape=(32, 32, 3), weights=None, include_top=False)
    >>> model.name, len(model.layers)
    ('vgg19', 22)
"""

from __future__ import annotations

from kilnet.applications import imagenet_utils
from kilnet.applications._origin import keras_file
from kilnet.applications.vgg16 import build_vgg

WEIGHTS_PATH = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5")
WEIGHTS_PATH_NO_TOP = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                       "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5")
# Keras's md5 of the files (with classifier, without).
WEIGHTS_HASHES = ("cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6")


def VGG19(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax", name="vgg19"):
    """VGG19, as keras.applications.VGG19 (same arguments, defaults, layer names and
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
        >>> from kilnet.applications import VGG19
        >>> VGG19(weights=None, input_shape=(32, 32, 3), classes=3).output.shape
        (None, 3)
    """
    def imagenet_path():
        if include_top:
            return keras_file("vgg19_weights_tf_dim_ordering_tf_kernels.h5", WEIGHTS_PATH,
                              WEIGHTS_HASHES[0])
        return keras_file("vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          WEIGHTS_PATH_NO_TOP, WEIGHTS_HASHES[1])

    return build_vgg((2, 2, 4, 4, 4), include_top, weights, input_tensor, input_shape, pooling,
                     classes, classifier_activation, name, imagenet_path)


def preprocess_input(x, data_format=None):
    """Images in [0, 255] as VGG's weights expect: RGB to BGR, minus ImageNet's mean pixel
    ("caffe" mode of imagenet_utils.preprocess_input).

    Example:
        >>> import numpy as np
        >>> from kilnet.applications import vgg19
        >>> vgg19.preprocess_input(np.full((1, 3), 255.0)).round(3).tolist()
        [[151.061, 138.221, 131.32]]
    """
    return imagenet_utils.preprocess_input(x, data_format=data_format, mode="caffe")


def decode_predictions(preds, top=5):
    """The `top` ImageNet classes of each prediction (imagenet_utils.decode_predictions).

    Example:
        >>> from kilnet.applications import vgg19
        >>> vgg19.decode_predictions.__name__
        'decode_predictions'
    """
    return imagenet_utils.decode_predictions(preds, top=top)
