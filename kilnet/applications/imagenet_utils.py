"""ImageNet helpers shared by the application families: Keras's input preprocessing modes,
the decoding of 1000-class predictions, and the input-shape checks every builder makes.

The three preprocessing modes are the ones Keras's pretrained weights were trained with:
"caffe" (RGB to BGR, minus the ImageNet mean pixel, no scaling), "tf" (to [-1, 1]) and
"torch" (to [0, 1], then each channel standardised by ImageNet's mean and std).

Example:
    >>> import numpy as np
    >>> from kilnet.applications import imagenet_utils
    >>> imagenet_utils.preprocess_input(np.array([[0.0, 127.5, 255.0]]), mode="tf").tolist()
    [[-1.0, 0.0, 1.0]]
"""

from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np

from kilnet import activations, config
from kilnet.applications._origin import keras_file

CLASS_INDEX_PATH = ("https://storage.googleapis.com/download.tensorflow.org/"
                    "data/imagenet_class_index.json")
# Keras's md5 of that file (keras/src/applications/imagenet_utils.py).
CLASS_INDEX_HASH = "c2c37ea517e94d9795004a39431a14cb"

_MODES = ("caffe", "tf", "torch")
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


# -- preprocessing ------------------------------------------------------------------------------
def preprocess_input(x, data_format=None, mode="caffe"):
    """A batch of RGB images with values in [0, 255] (3-D or 4-D, NumPy or tensor) prepared
    as the ImageNet weights expect, as keras.applications.imagenet_utils.preprocess_input.

    Args:
        x: the images; a float NumPy array is written over, as in Keras (pass a copy to keep
            it); an integer one is converted to float32 first.
        data_format: "channels_last" or "channels_first"; None: kilnet's
            (channels_last).
        mode: "caffe" (RGB to BGR, minus ImageNet's mean pixel), "tf" (scaled to [-1, 1]) or
            "torch" (scaled to [0, 1], then standardised per channel with ImageNet's mean
            and std).

    Returns:
        The preprocessed images, float.

    Example:
        >>> import numpy as np
        >>> from kilnet.applications import imagenet_utils
        >>> image = np.full((1, 1, 3), 255.0)
        >>> imagenet_utils.preprocess_input(image.copy(), mode="torch").round(3).tolist()
        [[[2.249, 2.429, 2.64]]]
        >>> imagenet_utils.preprocess_input(image.copy()).round(3).tolist()  # caffe: BGR
        [[[151.061, 138.221, 131.32]]]
    """
    if mode not in _MODES:
        raise ValueError(f"preprocess_input: mode must be one of {_MODES}. "
                         f"Received: mode={mode!r}")
    if data_format is None:
        data_format = config.image_data_format()
    elif data_format not in ("channels_first", "channels_last"):
        raise ValueError("preprocess_input: data_format must be 'channels_first' or "
                         f"'channels_last'. Received: data_format={data_format!r}")
    if isinstance(x, np.ndarray):
        return _preprocess_numpy(x, data_format, mode)
    return _preprocess_tensor(x, data_format, mode)


def _channel_axis(ndim, data_format):
    if data_format == "channels_last":
        return ndim - 1
    return 0 if ndim == 3 else 1


def _preprocess_numpy(x, data_format, mode):
    """In place on a float array, as Keras does (its documented contract)."""
    if not issubclass(x.dtype.type, np.floating):
        x = x.astype(config.floatx(), copy=False)
    if mode == "tf":
        x /= 127.5
        x -= 1.0
        return x
    axis = _channel_axis(x.ndim, data_format)
    shape = [1] * x.ndim
    shape[axis] = 3
    if mode == "torch":
        x /= 255.0
        x -= np.reshape(np.asarray(_TORCH_MEAN, x.dtype), shape)
        x /= np.reshape(np.asarray(_TORCH_STD, x.dtype), shape)
        return x
    x = np.flip(x, axis=axis)   # RGB -> BGR, a view: Keras's numpy path writes through it too
    x -= np.reshape(np.asarray(_CAFFE_MEAN_BGR, x.dtype), shape)
    return x


def _preprocess_tensor(x, data_format, mode):
    """The same numbers with kilnet.ops, so it also works on symbolic (functional) inputs."""
    from kilnet import ops

    ndim = len(x.shape)
    axis = _channel_axis(ndim, data_format)
    shape = [1] * ndim
    shape[axis] = 3
    if mode == "tf":
        return x / 127.5 - 1.0
    if mode == "torch":
        x = x / 255.0
        mean = np.reshape(np.asarray(_TORCH_MEAN, "float32"), shape)
        std = np.reshape(np.asarray(_TORCH_STD, "float32"), shape)
        return (x - mean) / std
    x = ops.flip(x, axis=axis)
    return x - np.reshape(np.asarray(_CAFFE_MEAN_BGR, "float32"), shape)


# -- predictions --------------------------------------------------------------------------------
def decode_predictions(preds, top=5):
    """The `top` classes of each row of ImageNet predictions, as
    keras.applications.imagenet_utils.decode_predictions: one list per sample of
    `(class_name, class_description, score)`, best first. The class index is Keras's
    `imagenet_class_index.json`, downloaded once into the "models" cache and read as JSON.

    Args:
        preds: predictions of shape (samples, 1000).
        top: how many classes per sample.

    Returns:
        A list (one per sample) of lists of tuples.

    Example:
        >>> import numpy as np
        >>> from kilnet.applications import imagenet_utils
        >>> imagenet_utils.decode_predictions(np.ones((1, 10)))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: decode_predictions expects ... Received: preds.shape=(1, 10)
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError("decode_predictions expects a batch of ImageNet predictions, an array "
                         f"of shape (samples, 1000). Received: preds.shape={preds.shape}")
    index = _class_index()
    results = []
    for row in preds:
        best = row.argsort()[-top:][::-1]
        entries = [tuple(index[str(i)]) + (row[i],) for i in best]
        entries.sort(key=lambda entry: entry[2], reverse=True)
        results.append(entries)
    return results


def _class_index():
    path = keras_file("imagenet_class_index.json", CLASS_INDEX_PATH, CLASS_INDEX_HASH)
    with open(path, encoding="utf8") as f:
        index = json.load(f)
    if not isinstance(index, dict) or len(index) != 1000:
        raise ValueError(f"{path} is not ImageNet's class index (a JSON object of 1000 "
                         "classes); delete it so that it is downloaded again.")
    return index


# -- the builders' shared checks ----------------------------------------------------------------
def warn_at_users_call(message: str) -> None:
    """A UserWarning that points at the line of yours that called an application builder
    (the first frame outside kilnet.applications), however deep inside the builders it is
    raised.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_at_users_call("a note")
        >>> str(caught[0].message), caught[0].filename.endswith("imagenet_utils.py")
        ('a note', False)
    """
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def obtain_input_shape(input_shape, default_size, min_size, require_flatten, weights=None):
    """The (height, width, channels) a builder uses, checked as Keras's builders check it:
    the default size with a classifier on ImageNet weights, 3 channels for ImageNet weights,
    at least `min_size` pixels a side, and a static size under a classifier.

    Example:
        >>> from kilnet.applications.imagenet_utils import obtain_input_shape
        >>> obtain_input_shape(None, 224, 32, require_flatten=False)
        (None, None, 3)
        >>> obtain_input_shape((16, 16, 3), 224, 32, require_flatten=False)
        Traceback (most recent call last):
        ...
        ValueError: Input size must be at least 32x32. Received: input_shape=(16, 16, 3)
    """
    if input_shape is not None:
        input_shape = tuple(input_shape)
    if weights != "imagenet" and input_shape and len(input_shape) == 3:
        if input_shape[-1] not in (1, 3):
            warn_at_users_call(f"This model usually expects 1 or 3 input channels; "
                               f"input_shape has {input_shape[-1]}.")
        default_shape = (default_size, default_size, input_shape[-1])
    else:
        default_shape = (default_size, default_size, 3)
    if weights == "imagenet" and require_flatten:
        if input_shape is not None and input_shape != default_shape:
            raise ValueError("With include_top=True and weights='imagenet', input_shape must be "
                             f"{default_shape} (the size the classifier was trained at); pass "
                             "include_top=False for other sizes. "
                             f"Received: input_shape={input_shape}")
        return default_shape
    if not input_shape:
        if require_flatten:
            return default_shape
        return (None, None, 3)
    if len(input_shape) != 3:
        raise ValueError("input_shape must be (height, width, channels). "
                         f"Received: input_shape={input_shape}")
    if input_shape[-1] != 3 and weights == "imagenet":
        raise ValueError("The ImageNet weights take 3-channel (RGB) images. "
                         f"Received: input_shape={input_shape}")
    if any(side is not None and side < min_size for side in input_shape[:2]):
        raise ValueError(f"Input size must be at least {min_size}x{min_size}. "
                         f"Received: input_shape={input_shape}")
    if require_flatten and None in input_shape:
        raise ValueError("With include_top=True, input_shape must be static (no None). "
                         f"Received: input_shape={input_shape}")
    return input_shape


def correct_pad(inputs, kernel_size):
    """The ((top, bottom), (left, right)) zero padding that makes a stride-2 "valid"
    convolution of `kernel_size` centre as TensorFlow's "same" does, as Keras's correct_pad.

    Example:
        >>> import kilnet
        >>> from kilnet.applications.imagenet_utils import correct_pad
        >>> correct_pad(kilnet.Input(shape=(96, 96, 8)), 3)
        ((0, 1), (0, 1))
    """
    if isinstance(kernel_size, int):
        kernel_size = (kernel_size, kernel_size)
    rows, cols = inputs.shape[1:3]
    adjust = (1, 1) if rows is None else (1 - rows % 2, 1 - cols % 2)
    half = (kernel_size[0] // 2, kernel_size[1] // 2)
    return ((half[0] - adjust[0], half[0]), (half[1] - adjust[1], half[1]))


def validate_activation(classifier_activation, weights):
    """Pretrained classifiers were trained with softmax: only "softmax" or None (logits) are
    accepted with weights, as in Keras.

    Example:
        >>> from kilnet.applications.imagenet_utils import validate_activation
        >>> validate_activation("softmax", "imagenet")
        >>> validate_activation("relu", "imagenet")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: With pretrained weights ... Received: classifier_activation='relu'
    """
    if weights is None:
        return
    chosen = activations.get(classifier_activation)
    if chosen not in (activations.get("softmax"), activations.get(None)):
        raise ValueError("With pretrained weights and include_top=True, classifier_activation "
                         "must be 'softmax' or None. "
                         f"Received: classifier_activation={classifier_activation!r}")
