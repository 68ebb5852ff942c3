"""The steps every application builder shares, as Keras's builders take them: check the
`weights` argument, make (or adopt) the image input, put a classifier or a global pooling on
the features, and make the model and load its weights (Keras's pretrained file, or a path).
Also what every family module exports alike: the builders of its variants with the common
arguments and their documentation, `preprocess_input` in its mode, `decode_predictions`.
"""

from __future__ import annotations

import inspect
import os
import textwrap

from kilnet import backend, layers, utils
from kilnet.applications import imagenet_utils
from kilnet.applications._origin import keras_file
from kilnet.models import Model

POOLINGS = (None, "avg", "max")
# How Keras's older weights files are named after their model: "<model><TF_KERNELS>.h5".
TF_KERNELS = "_weights_tf_dim_ordering_tf_kernels"


def check_arguments(weights, include_top, classes, pooling=None):
    """Keras's refusals of `weights` and `classes`, and of an unknown `pooling`.

    Example:
        >>> from kilnet.applications._builder import check_arguments
        >>> check_arguments("imagenet", True, 10)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: With weights='imagenet' and include_top=True, classes must be 1000 ...
    """
    if not (weights in ("imagenet", None) or _is_file(weights)):
        raise ValueError("weights must be None (random initialization), 'imagenet' "
                         "(pre-training on ImageNet) or the path of a weights file that exists. "
                         f"Received: weights={weights!r}")
    if weights == "imagenet" and include_top and classes != 1000:
        raise ValueError("With weights='imagenet' and include_top=True, classes must be 1000 "
                         f"(the ImageNet classes); for {classes} classes pass include_top=False "
                         "and add your own classifier, or weights=None. "
                         f"Received: classes={classes}")
    if pooling not in POOLINGS:
        raise ValueError("pooling must be None (the last feature map), 'avg' or 'max' (global "
                         f"pooling). Received: pooling={pooling!r}")


def _is_file(weights):
    return isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights)


def image_input(input_tensor, input_shape):
    """`input_tensor` when given (a symbolic tensor), else a new Input of `input_shape`."""
    if input_tensor is None:
        return layers.Input(shape=input_shape)
    if not backend.is_keras_tensor(input_tensor):
        raise ValueError("input_tensor must be a symbolic tensor (kilnet.Input(...) or a "
                         "layer's output); to run on arrays, build the model and call it. "
                         f"Received: input_tensor of type {type(input_tensor).__name__}")
    return input_tensor


def sized_image_input(input_tensor, input_shape, default_size, min_size, include_top,
                      weights):
    """The image input of a builder whose weights were trained at `default_size` and whose
    layers need `min_size` pixels a side: `input_shape` checked as Keras checks it
    (imagenet_utils.obtain_input_shape), then `image_input`.

    Example:
        >>> from kilnet.applications._builder import sized_image_input
        >>> sized_image_input(None, None, 224, 32, include_top=True, weights=None).shape
        (None, 224, 224, 3)
    """
    input_shape = imagenet_utils.obtain_input_shape(input_shape, default_size,
                                                    min_size=min_size,
                                                    require_flatten=include_top,
                                                    weights=weights)
    return image_input(input_tensor, input_shape)


def published_size(shape, sizes):
    """The square size of (height, width, ...) when it is one of `sizes` (those Keras
    publishes weights for), else None.

    Example:
        >>> from kilnet.applications._builder import published_size
        >>> published_size((128, 128, 3), (128, 224)), published_size((128, 96, 3), (128,))
        (128, None)
    """
    if shape is None or len(shape) < 2:
        return None
    rows, cols = shape[0], shape[1]
    return rows if rows == cols and rows in sizes else None


def weights_size(input_shape, sizes):
    """The image size whose ImageNet weights load: `input_shape`'s when Keras publishes
    weights for it (one of `sizes`), else 224's, with a warning, as Keras.

    Example:
        >>> import warnings
        >>> from kilnet.applications._builder import weights_size
        >>> with warnings.catch_warnings(record=True):
        ...     weights_size((100, 100, 3), (128, 224))
        224
    """
    size = published_size(input_shape, sizes)
    if size is None:
        imagenet_utils.warn_at_users_call(
            "input_shape is undefined, not square, or its size is not one of "
            f"{sizes}: the weights for 224x224 inputs are loaded.")
        return 224
    return size


def top(x, include_top, pooling, classes, classifier_activation, weights,
        avg_name=None, max_name=None, **head):
    """The `classifier` when `include_top` (its pooling named `avg_name`; `head`: its other
    options), else the `pooling` asked for (or none), named as in the family's Keras builder.

    Example:
        >>> import kilnet
        >>> from kilnet.applications._builder import top
        >>> features = kilnet.Input(shape=(4, 4, 8))
        >>> top(features, False, "max", 1000, None, None).shape
        (None, 8)
        >>> top(features, True, None, 10, "softmax", None, avg_name="avg_pool").shape
        (None, 10)
    """
    if include_top:
        return classifier(x, classes, classifier_activation, weights, pool_name=avg_name,
                          **head)
    return pooled(x, pooling, avg_name, max_name)


def classifier(x, classes, classifier_activation, weights, pool_name=None, dropout_rate=0.0,
               kernel_initializer="glorot_uniform"):
    """Global average pooling (named `pool_name`), dropout ("top_dropout") when
    `dropout_rate` > 0, and the `predictions` layer: the head most families end in.

    Example:
        >>> import kilnet
        >>> from kilnet.applications._builder import classifier
        >>> classifier(kilnet.Input(shape=(4, 4, 8)), 5, "softmax", None,
        ...            dropout_rate=0.2).shape
        (None, 5)
    """
    x = layers.GlobalAveragePooling2D(name=pool_name)(x)
    if dropout_rate > 0:
        x = layers.Dropout(dropout_rate, name="top_dropout")(x)
    return predictions(x, classes, classifier_activation, weights, kernel_initializer)


def predictions(x, classes, classifier_activation, weights,
                kernel_initializer="glorot_uniform"):
    """The "predictions" Dense layer of `classes` units, its activation checked against the
    weights (imagenet_utils.validate_activation).

    Example:
        >>> import kilnet
        >>> from kilnet.applications._builder import predictions
        >>> predictions(kilnet.Input(shape=(8,)), 3, None, "imagenet").shape
        (None, 3)
    """
    imagenet_utils.validate_activation(classifier_activation, weights)
    return layers.Dense(classes, activation=classifier_activation,
                        kernel_initializer=kernel_initializer, name="predictions")(x)


def pooled(x, pooling, avg_name=None, max_name=None):
    """`x` after the global pooling `pooling` names ("avg", "max" or None).

    Example:
        >>> import kilnet
        >>> from kilnet.applications._builder import pooled
        >>> pooled(kilnet.Input(shape=(4, 4, 8)), "avg").shape
        (None, 8)
    """
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name=avg_name)(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name=max_name)(x)
    return x


def keras_weights(base_url, stem, hashes, include_top, no_top_suffix="_notop"):
    """The local path of Keras's ImageNet weights file `<stem>.h5` (with the classifier) or
    `<stem><no_top_suffix>.h5` (without) at `base_url`, downloaded on first use and checked
    against `hashes` (with, without; None: unchecked).

    Example:
        >>> from kilnet.applications._builder import keras_weights
        >>> keras_weights.__name__
        'keras_weights'
    """
    file_name = f"{stem}{'' if include_top else no_top_suffix}.h5"
    return keras_file(file_name, base_url + file_name, hashes[0 if include_top else 1])


def make_model(input_tensor, img_input, outputs, name, weights, imagenet_path):
    """The model from the image input (or `input_tensor`'s sources) to `outputs`, with its
    weights: `imagenet_path()` (Keras's file, fetched only now) for "imagenet", the file at
    `weights` for a path, random ones (from kilnet's seed) for None. The weights exist on
    return, as in Keras (`len(model.weights)`, `model.summary()` before any call)."""
    if input_tensor is None:
        inputs = img_input
    else:
        sources = utils.get_source_inputs(input_tensor)
        inputs = sources[0] if len(sources) == 1 else sources
    model = Model(inputs, outputs, name=name)
    if weights == "imagenet":
        model.load_weights(imagenet_path())
    elif weights is not None:
        model.load_weights(weights)
    else:
        model.build()
    return model


# -- what each family module exports alike ------------------------------------------------
ARGUMENT_DOCS = {
    "include_top": "whether to end in the 1000-class (or `classes`) classifier.",
    "weights": '"imagenet" (Keras\'s pretrained weights, downloaded on first use), None '
               "(random) or the path of a weights file.",
    "input_tensor": "a symbolic tensor to use as the image input.",
    "input_shape": "(height, width, 3), at least {min_size}x{min_size}; ({size}, {size}, 3) "
                   "with the classifier and ImageNet weights.",
    "pooling": 'without the classifier, None (the last feature map), "avg" or "max".',
    "classes": "the classifier's classes (1000 with ImageNet weights).",
    "classifier_activation": 'the classifier\'s activation ("softmax" or None with weights).',
    "name": "the model's name.",
}
ARGUMENTS_MARK = "<arguments>"


def documented(builder=None, *, size=224, min_size=32, **descriptions):
    """`builder` with the line `<arguments>` of its docstring made its Args and Returns
    sections: one entry per parameter, in signature order, from ARGUMENT_DOCS (the text
    every application shares; `size` and `min_size` fill input_shape's) unless
    `descriptions` gives its own. A decorator, with or without options.

    Example:
        >>> import inspect
        >>> from kilnet.applications._builder import documented
        >>> @documented(size=299, name="the model's name; None: Keras's.")
        ... def Net(input_shape=None, name=None):
        ...     \"\"\"A net.
        ...
        ...     <arguments>
        ...     \"\"\"
        >>> print(inspect.getdoc(Net))
        A net.
        <BLANKLINE>
        Args:
            input_shape: (height, width, 3), at least 32x32; (299, 299, 3) with the classifier
                and ImageNet weights.
            name: the model's name; None: Keras's.
        <BLANKLINE>
        Returns:
            A kilnet functional Model.
    """
    if builder is None:
        return lambda fn: documented(fn, size=size, min_size=min_size, **descriptions)
    if f"    {ARGUMENTS_MARK}" not in (builder.__doc__ or ""):
        raise ValueError(f"documented: {builder.__name__}'s docstring must hold a line "
                         f"'    {ARGUMENTS_MARK}' (indented 4) where its Args go. "
                         f"Received: {builder.__doc__!r}")
    entries = []
    for parameter in inspect.signature(builder).parameters:
        text = descriptions.get(parameter, ARGUMENT_DOCS.get(parameter))
        if text is None:
            raise ValueError(f"documented: {builder.__name__}'s argument {parameter!r} has "
                             "no common description; pass "
                             f"{parameter}='...' to describe it.")
        text = text.format(size=size, min_size=min_size)
        entries.append(textwrap.fill(f"{parameter}: {text}", width=92,
                                     initial_indent=" " * 8, subsequent_indent=" " * 12))
    sections = ("    Args:\n" + "\n".join(entries)
                + "\n\n    Returns:\n        A kilnet functional Model.")
    builder.__doc__ = builder.__doc__.replace(f"    {ARGUMENTS_MARK}", sections)
    return builder


def variant_builder(title, default_name, about, build, *args, image_size=224, **fixed):
    """The public builder `title` of one variant of a family: the arguments every application
    takes (`name` defaulting to `default_name`), passed on to `build(*args, **fixed, ...)`.
    It belongs to `build`'s module (where its example runs), and its docstring says it is
    Keras's `title`, then `about` (its inputs), then its arguments (`documented`, with
    `image_size` the size of its weights).

    Example:
        >>> from kilnet.applications._builder import variant_builder
        >>> from kilnet.applications.resnet import ResNet
        >>> builder = variant_builder("ResNet50", "resnet50", "Caffe inputs.", ResNet,
        ...                           "resnet50")
        >>> builder.__name__, builder.__module__
        ('ResNet50', 'kilnet.applications.resnet')
    """
    def builder(include_top=True, weights="imagenet", input_tensor=None, input_shape=None,
                pooling=None, classes=1000, classifier_activation="softmax",
                name=default_name):
        return build(*args, **fixed, include_top=include_top, weights=weights,
                     input_tensor=input_tensor, input_shape=input_shape, pooling=pooling,
                     classes=classes, classifier_activation=classifier_activation, name=name)

    summary = textwrap.fill(f"{title}, as keras.applications.{title} (same arguments, "
                            f"defaults, layer names and weights). {about}", width=92,
                            subsequent_indent=" " * 4)
    doc = f"""{summary}

    {ARGUMENTS_MARK}

    Example:
        >>> from kilnet.applications import {title}
        >>> {title}(weights=None, input_shape=(32, 32, 3), include_top=False).name
        '{default_name}'
    """
    return documented(exported(builder, title, build.__module__, doc), size=image_size)


def exported(function, name, module, doc):
    """`function` named `name` in the module named `module` with docstring `doc`: made by a
    factory here, it reads as if written there (and its examples run with that module's).

    Example:
        >>> from kilnet.applications._builder import exported
        >>> exported(lambda: None, "f", "kilnet.applications.resnet", "F.").__qualname__
        'f'
    """
    function.__name__ = function.__qualname__ = name
    function.__module__ = module
    function.__doc__ = doc
    return function


# What each preprocessing mode does, and what it makes of the pixels [0.0, 127.5, 255.0].
_MODES = {
    "caffe": ("RGB to BGR, minus ImageNet's mean pixel", "[[151.061, 10.721, -123.68]]"),
    "tf": ("scaled to [-1, 1]", "[[-1.0, 0.0, 1.0]]"),
    "torch": ("scaled to [0, 1], then standardised per channel with ImageNet's mean and "
              "std", "[[-2.118, 0.196, 2.64]]"),
    None: ("unchanged: these models scale their inputs themselves (the function is kept, as "
           "in Keras, so that code written for the other applications runs)",
           "[[0.0, 127.5, 255.0]]"),
}


def preprocessing(mode, module):
    """The `preprocess_input(x, data_format=None)` of the family module named `module`:
    images in [0, 255] prepared as its weights expect, imagenet_utils.preprocess_input's
    `mode` ("caffe", "tf" or "torch"), or None: `x` unchanged.

    Example:
        >>> import numpy as np
        >>> from kilnet.applications._builder import preprocessing
        >>> preprocess_input = preprocessing("tf", "kilnet.applications.xception")
        >>> preprocess_input(np.array([0.0, 255.0])).tolist()
        [-1.0, 1.0]
    """
    if mode is None:
        def preprocess_input(x, data_format=None):
            del data_format   # accepted for the families' common signature
            return x
    else:
        def preprocess_input(x, data_format=None):
            return imagenet_utils.preprocess_input(x, data_format=data_format, mode=mode)
    what, example = _MODES[mode]
    family = module.rsplit(".", 1)[-1]
    source = "" if mode is None else f' ("{mode}" mode of imagenet_utils.preprocess_input)'
    doc = f"""Images in [0, 255] {what}{source}.

    Example:
        >>> import numpy as np
        >>> from kilnet.applications import {family}
        >>> {family}.preprocess_input(np.array([[0.0, 127.5, 255.0]])).round(3).tolist()
        {example}
    """
    return exported(preprocess_input, "preprocess_input", module, doc)
