"""The steps every application builder shares, as Keras's builders take them: check the
`weights` argument, make (or adopt) the image input, put a classifier or a global pooling on
the features, and make the model and load its weights (Keras's pretrained file, or a path).
"""

from __future__ import annotations

import os

from kilnet import backend, layers, utils
from kilnet.applications import imagenet_utils
from kilnet.models import Model

POOLINGS = (None, "avg", "max")


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


def top(x, include_top, pooling, classes, classifier_activation, weights,
        avg_name=None, max_name=None):
    """Global average pooling and the "predictions" Dense layer when `include_top`, else the
    `pooling` asked for (or none), named as in the family's Keras builder."""
    if include_top:
        x = layers.GlobalAveragePooling2D(name=avg_name)(x)
        imagenet_utils.validate_activation(classifier_activation, weights)
        return layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return pooled(x, pooling, avg_name, max_name)


def pooled(x, pooling, avg_name=None, max_name=None):
    """`x` after the global pooling `pooling` names ("avg", "max" or None)."""
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name=avg_name)(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name=max_name)(x)
    return x


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
