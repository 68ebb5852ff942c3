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

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
# Keras's names for the two files' URLs.
WEIGHTS_PATH = f"{BASE_WEIGHTS_PATH}vgg16{_builder.TF_KERNELS}.h5"
WEIGHTS_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}vgg16{_builder.TF_KERNELS}_notop.h5"
# Keras's md5 of the files (with classifier, without).
WEIGHTS_HASHES = ("64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc")
BLOCK_FILTERS = (64, 128, 256, 512, 512)
INCLUDE_TOP_DOC = ("whether to end in the two 4096-unit layers and the 1000-class (or "
                   "`classes`) classifier.")


@_builder.documented(include_top=INCLUDE_TOP_DOC)
def VGG16(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
          pooling=None, classes=1000, classifier_activation="softmax", name="vgg16"):
    """VGG16, as keras.applications.VGG16 (same arguments, defaults, layer names and
    weights). Its inputs are "caffe"-preprocessed: see `preprocess_input`.

    <arguments>

    Example:
        >>> from kilnet.applications import VGG16
        >>> [layer.name for layer in VGG16(weights=None, input_shape=(32, 32, 3),
        ...                                include_top=False).layers][1:4]
        ['block1_conv1', 'block1_conv2', 'block1_pool']
    """
    def imagenet_path():
        return _builder.keras_weights(BASE_WEIGHTS_PATH, "vgg16" + _builder.TF_KERNELS,
                                      WEIGHTS_HASHES, include_top)

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
    img_input = _builder.sized_image_input(input_tensor, input_shape, 224, 32, include_top,
                                           weights)
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
        x = _builder.predictions(x, classes, classifier_activation, weights)
    else:
        x = _builder.pooled(x, pooling)
    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


preprocess_input = _builder.preprocessing("caffe", __name__)
decode_predictions = imagenet_utils.decode_predictions
