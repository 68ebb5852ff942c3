"""VGG19: VGG16 with four convolutions in each of the last three blocks, as
keras.applications.vgg19, with Keras's layer names so that its ImageNet weights load.

Example:
    >>> from kilnet.applications import vgg19
    >>> model = vgg19.VGG19(input_shape=(32, 32, 3), weights=None, include_top=False)
    >>> model.name, len(model.layers)
    ('vgg19', 22)
"""

from __future__ import annotations

from kilnet.applications import _builder, imagenet_utils
from kilnet.applications.vgg16 import INCLUDE_TOP_DOC, build_vgg

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/vgg19/"
# Keras's names for the two files' URLs.
WEIGHTS_PATH = f"{BASE_WEIGHTS_PATH}vgg19{_builder.TF_KERNELS}.h5"
WEIGHTS_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}vgg19{_builder.TF_KERNELS}_notop.h5"
# Keras's md5 of the files (with classifier, without).
WEIGHTS_HASHES = ("cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6")


@_builder.documented(include_top=INCLUDE_TOP_DOC)
def VGG19(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax", name="vgg19"):
    """VGG19, as keras.applications.VGG19 (same arguments, defaults, layer names and
    weights). Its inputs are "caffe"-preprocessed: see `preprocess_input`.

    <arguments>

    Example:
        >>> from kilnet.applications import VGG19
        >>> VGG19(weights=None, input_shape=(32, 32, 3), classes=3).output.shape
        (None, 3)
    """
    def imagenet_path():
        return _builder.keras_weights(BASE_WEIGHTS_PATH, "vgg19" + _builder.TF_KERNELS,
                                      WEIGHTS_HASHES, include_top)

    return build_vgg((2, 2, 4, 4, 4), include_top, weights, input_tensor, input_shape, pooling,
                     classes, classifier_activation, name, imagenet_path)


preprocess_input = _builder.preprocessing("caffe", __name__)
decode_predictions = imagenet_utils.decode_predictions
