"""NASNet-A (Zoph et al., 2018): normal and reduction cells found by architecture search, as
keras.applications.nasnet, with Keras's layers in Keras's order and Keras's default names for
the unnamed ones, so that its ImageNet weights load.

Example:
    >>> from kilnet.applications import nasnet
    >>> model = nasnet.NASNet(input_shape=(32, 32, 3), penultimate_filters=96, num_blocks=1,
    ...                       stem_block_filters=8, weights=None, include_top=False,
    ...                       pooling="avg")
    >>> model.output.shape
    (None, 96)
"""

from __future__ import annotations

from kilnet import layers
from kilnet.applications import _builder, imagenet_utils
from kilnet.applications._origin import keras_file
from kilnet.applications.inception_v3 import KerasNames

BASE_WEIGHTS_PATH = "https://storage.googleapis.com/tensorflow/keras-applications/nasnet/"
NASNET_MOBILE_WEIGHT_PATH = f"{BASE_WEIGHTS_PATH}NASNet-mobile.h5"
NASNET_MOBILE_WEIGHT_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}NASNet-mobile-no-top.h5"
NASNET_LARGE_WEIGHT_PATH = f"{BASE_WEIGHTS_PATH}NASNet-large.h5"
NASNET_LARGE_WEIGHT_PATH_NO_TOP = f"{BASE_WEIGHTS_PATH}NASNet-large-no-top.h5"
# default_size -> {include_top: (cached file name, URL, Keras's md5)}
WEIGHTS_FILES = {
    224: {True: ("nasnet_mobile.h5", NASNET_MOBILE_WEIGHT_PATH,
                 "020fb642bf7360b370c678b08e0adf61"),
          False: ("nasnet_mobile_no_top.h5", NASNET_MOBILE_WEIGHT_PATH_NO_TOP,
                  "1ed92395b5b598bdda52abe5c0dbfd63")},
    331: {True: ("nasnet_large.h5", NASNET_LARGE_WEIGHT_PATH,
                 "11577c9a518f0070763c2b964a382f17"),
          False: ("nasnet_large_no_top.h5", NASNET_LARGE_WEIGHT_PATH_NO_TOP,
                  "d81d89dc07e6e56530c4e77faddd61b5")},
}


def _batch_norm(name):
    return layers.BatchNormalization(axis=-1, momentum=0.9997, epsilon=1e-3, name=name)


def NASNet(input_shape=None, penultimate_filters=4032, num_blocks=6, stem_block_filters=96,
           skip_reduction=True, filter_multiplier=2, include_top=True, weights="imagenet",
           input_tensor=None, pooling=None, classes=1000, default_size=None,
           classifier_activation="softmax", name="NASNet"):
    """A NASNet-A, as keras.applications' generic builder (same arguments, defaults and
    layers); NASNetMobile and NASNetLarge call it.

    Args:
        input_shape: (height, width, 3), at least 32x32.
        penultimate_filters: the channels before the classifier, a multiple of
            24 * filter_multiplier ** 2 (the P of "NASNet (N @ P)").
        num_blocks: the normal cells between two reductions (the N).
        stem_block_filters: the stem convolution's filters.
        skip_reduction: whether the cells after a reduction see the cell before it (True,
            NASNetLarge) or the reduction's input (False, NASNetMobile).
        filter_multiplier: how much a reduction widens the cells.
        include_top, weights, input_tensor, pooling, classes, classifier_activation: as
            every application (see NASNetMobile).
        default_size: the image size of the weights (224: Mobile's, 331: Large's); None: 331.
        name: the model's name.

    Returns:
        A kilnet functional Model.

    Example:
        >>> from kilnet.applications.nasnet import NASNet
        >>> NASNet(input_shape=(32, 32, 3), penultimate_filters=96, num_blocks=1,
        ...        stem_block_filters=8, weights=None, classes=3).output.shape
        (None, 3)
    """
    _builder.check_arguments(weights, include_top, classes, pooling)
    if penultimate_filters % (24 * filter_multiplier ** 2) != 0:
        raise ValueError("penultimate_filters must be a multiple of 24 * filter_multiplier ** 2"
                         f" = {24 * filter_multiplier ** 2} (NASNet-A's cells split them "
                         f"evenly). Received: penultimate_filters={penultimate_filters}")
    default_size = 331 if default_size is None else default_size
    if weights == "imagenet" and default_size not in WEIGHTS_FILES:
        raise ValueError("ImageNet weights exist for NASNetMobile (default_size=224) and "
                         "NASNetLarge (default_size=331) only; use those builders, or "
                         f"weights=None. Received: default_size={default_size}")
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size, min_size=32,
                                                    require_flatten=include_top,
                                                    weights=weights)
    if input_tensor is None and None in tuple(input_shape)[:2]:
        # Its cells choose their shortcut paths by comparing feature-map sizes when the model
        # is made, as Keras's do: unknown sizes would pair maps of different sizes.
        raise ValueError("NASNet needs the image size: pass input_shape=(height, width, 3), "
                         f"e.g. ({default_size}, {default_size}, 3). Received: "
                         f"input_shape={tuple(input_shape)}")
    img_input = _builder.image_input(input_tensor, input_shape)
    names = KerasNames()
    filters = penultimate_filters // 24
    x = layers.Conv2D(stem_block_filters, (3, 3), strides=(2, 2), padding="valid",
                      use_bias=False, name="stem_conv1", kernel_initializer="he_normal")(
        img_input)
    x = _batch_norm("stem_bn1")(x)
    x, p = _reduction_a_cell(x, None, filters // filter_multiplier ** 2, "stem_1", names)
    x, p = _reduction_a_cell(x, p, filters // filter_multiplier, "stem_2", names)
    for stage in range(3):
        if stage:
            x, p_reduced = _reduction_a_cell(x, p, filters * filter_multiplier ** stage,
                                             f"reduce_{stage * num_blocks}", names)
            p = p if skip_reduction else p_reduced
        for i in range(num_blocks):
            block_id = f"{stage * num_blocks + i + 1 if stage else i}"
            x, p = _normal_a_cell(x, p, filters * filter_multiplier ** stage, block_id, names)
    x = layers.Activation("relu", name=names("activation"))(x)
    if include_top:
        x = _builder.classifier(x, classes, classifier_activation, weights,
                                names("global_average_pooling2d"))
    else:
        x = _builder.pooled(x, pooling, names("global_average_pooling2d") if pooling == "avg"
                            else None,
                            names("global_max_pooling2d") if pooling == "max" else None)

    def imagenet_path():
        return keras_file(*WEIGHTS_FILES[default_size][bool(include_top)])

    return _builder.make_model(input_tensor, img_input, x, name, weights, imagenet_path)


@_builder.documented(input_shape="(height, width, 3), at least 32x32; (224, 224, 3) with the "
                                 "classifier and ImageNet weights, and by default.")
def NASNetMobile(input_shape=None, include_top=True, weights="imagenet", input_tensor=None,
                 pooling=None, classes=1000, classifier_activation="softmax",
                 name="nasnet_mobile"):
    """NASNetMobile (NASNet-A 4 @ 1056), as keras.applications.NASNetMobile (same arguments,
    defaults, layers and weights). Its inputs are RGB in [-1, 1]: see `preprocess_input`.

    <arguments>

    Example:
        >>> from kilnet.applications import NASNetMobile
        >>> NASNetMobile.__name__
        'NASNetMobile'
    """
    if not include_top and input_shape is None:
        input_shape = (224, 224, 3)   # as Keras (its weights' size)
    return NASNet(input_shape, penultimate_filters=1056, num_blocks=4, stem_block_filters=32,
                  skip_reduction=False, filter_multiplier=2, include_top=include_top,
                  weights=weights, input_tensor=input_tensor, pooling=pooling,
                  classes=classes, default_size=224,
                  classifier_activation=classifier_activation, name=name)


@_builder.documented(size=331)
def NASNetLarge(input_shape=None, include_top=True, weights="imagenet", input_tensor=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name="nasnet_large"):
    """NASNetLarge (NASNet-A 6 @ 4032), as keras.applications.NASNetLarge (same arguments,
    defaults, layers and weights). Its inputs are RGB in [-1, 1]: see `preprocess_input`.

    <arguments>

    Example:
        >>> from kilnet.applications import NASNetLarge
        >>> NASNetLarge.__name__
        'NASNetLarge'
    """
    return NASNet(input_shape, penultimate_filters=4032, num_blocks=6, stem_block_filters=96,
                  skip_reduction=True, filter_multiplier=2, include_top=include_top,
                  weights=weights, input_tensor=input_tensor, pooling=pooling,
                  classes=classes, default_size=331,
                  classifier_activation=classifier_activation, name=name)


def _separable_conv_block(ip, filters, kernel_size, strides, block_id, names):
    """ReLU and two separable convolutions with batch normalization; a stride-2 one is
    padded as TensorFlow's "same" would."""
    x = layers.Activation("relu", name=names("activation"))(ip)
    padding = "same"
    if strides == (2, 2):
        x = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(x, kernel_size),
                                 name=f"separable_conv_1_pad_{block_id}")(x)
        padding = "valid"
    x = layers.SeparableConv2D(filters, kernel_size, strides=strides, padding=padding,
                               use_bias=False, name=f"separable_conv_1_{block_id}")(x)
    x = _batch_norm(f"separable_conv_1_bn_{block_id}")(x)
    x = layers.Activation("relu", name=names("activation"))(x)
    x = layers.SeparableConv2D(filters, kernel_size, padding="same", use_bias=False,
                               name=f"separable_conv_2_{block_id}")(x)
    return _batch_norm(f"separable_conv_2_bn_{block_id}")(x)


def _adjust_block(p, ip, filters, block_id, names):
    """The previous cell's output `p` brought to `ip`'s size (a factorized reduction when it
    is twice as large) or to `filters` channels (a 1x1 projection)."""
    if p is None:
        return ip
    if p.shape[-2] != ip.shape[-2]:
        p = layers.Activation("relu", name=f"adjust_relu_1_{block_id}")(p)
        p1 = layers.AveragePooling2D((1, 1), strides=(2, 2), padding="valid",
                                     name=f"adjust_avg_pool_1_{block_id}")(p)
        p1 = _conv_1x1(p1, filters // 2, f"adjust_conv_1_{block_id}")
        # The second half sees the image shifted by one pixel.
        p2 = layers.ZeroPadding2D(padding=((0, 1), (0, 1)), name=names("zero_padding2d"))(p)
        p2 = layers.Cropping2D(cropping=((1, 0), (1, 0)), name=names("cropping2d"))(p2)
        p2 = layers.AveragePooling2D((1, 1), strides=(2, 2), padding="valid",
                                     name=f"adjust_avg_pool_2_{block_id}")(p2)
        p2 = _conv_1x1(p2, filters // 2, f"adjust_conv_2_{block_id}")
        p = layers.concatenate([p1, p2], axis=-1, name=names("concatenate"))
        return _batch_norm(f"adjust_bn_{block_id}")(p)
    if p.shape[-1] != filters:
        p = layers.Activation("relu", name=names("activation"))(p)
        p = _conv_1x1(p, filters, f"adjust_conv_projection_{block_id}")
        return _batch_norm(f"adjust_bn_{block_id}")(p)
    return p


def _conv_1x1(x, filters, name):
    return layers.Conv2D(filters, (1, 1), padding="same", use_bias=False, name=name,
                         kernel_initializer="he_normal")(x)


def _squeezed_input(ip, filters, kind, block_id, names):
    """ReLU, 1x1 convolution and batch normalization of the cell's input."""
    h = layers.Activation("relu", name=names("activation"))(ip)
    h = _conv_1x1(h, filters, f"{kind}_conv_1_{block_id}")
    return _batch_norm(f"{kind}_bn_1_{block_id}")(h)


def _normal_a_cell(ip, p, filters, block_id, names):
    """A normal cell: five sums of separable convolutions, poolings and identities,
    concatenated with the previous cell's output; returns (output, `ip`)."""
    def sep(x, kernel_size, side):
        return _separable_conv_block(x, filters, kernel_size, (1, 1),
                                     f"normal_{side}_{block_id}", names)

    def avg(x, side):
        return layers.AveragePooling2D((3, 3), strides=(1, 1), padding="same",
                                       name=f"normal_{side}_{block_id}")(x)

    p = _adjust_block(p, ip, filters, block_id, names)
    h = _squeezed_input(ip, filters, "normal", block_id, names)
    x1 = layers.add([sep(h, (5, 5), "left1"), sep(p, (3, 3), "right1")],
                    name=f"normal_add_1_{block_id}")
    x2 = layers.add([sep(p, (5, 5), "left2"), sep(p, (3, 3), "right2")],
                    name=f"normal_add_2_{block_id}")
    x3 = layers.add([avg(h, "left3"), p], name=f"normal_add_3_{block_id}")
    x4 = layers.add([avg(p, "left4"), avg(p, "right4")], name=f"normal_add_4_{block_id}")
    x5 = layers.add([sep(h, (3, 3), "left5"), h], name=f"normal_add_5_{block_id}")
    x = layers.concatenate([p, x1, x2, x3, x4, x5], axis=-1, name=f"normal_concat_{block_id}")
    return x, ip


def _reduction_a_cell(ip, p, filters, block_id, names):
    """A reduction cell (stride 2): four sums of strided separable convolutions and
    poolings, concatenated; returns (output, `ip`)."""
    def sep(x, kernel_size, side, strides=(2, 2)):
        return _separable_conv_block(x, filters, kernel_size, strides,
                                     f"reduction_{side}_{block_id}", names)

    def pool(kind, x, side, strides=(2, 2), padding="valid"):
        return kind((3, 3), strides=strides, padding=padding,
                    name=f"reduction_{side}_{block_id}")(x)

    p = _adjust_block(p, ip, filters, block_id, names)
    h = _squeezed_input(ip, filters, "reduction", block_id, names)
    h3 = layers.ZeroPadding2D(padding=imagenet_utils.correct_pad(h, 3),
                              name=f"reduction_pad_1_{block_id}")(h)
    x1 = layers.add([sep(h, (5, 5), "left1"), sep(p, (7, 7), "right1")],
                    name=f"reduction_add_1_{block_id}")
    x2 = layers.add([pool(layers.MaxPooling2D, h3, "left2"), sep(p, (7, 7), "right2")],
                    name=f"reduction_add_2_{block_id}")
    x3 = layers.add([pool(layers.AveragePooling2D, h3, "left3"), sep(p, (5, 5), "right3")],
                    name=f"reduction_add3_{block_id}")
    x4 = pool(layers.AveragePooling2D, x1, "left4", strides=(1, 1), padding="same")
    x4 = layers.add([x2, x4], name=names("add"))
    x5 = layers.add([sep(x1, (3, 3), "left4", strides=(1, 1)),
                     pool(layers.MaxPooling2D, h3, "right5")],
                    name=f"reduction_add4_{block_id}")
    x = layers.concatenate([x2, x3, x4, x5], axis=-1, name=f"reduction_concat_{block_id}")
    return x, ip


preprocess_input = _builder.preprocessing('tf', __name__)
decode_predictions = imagenet_utils.decode_predictions
