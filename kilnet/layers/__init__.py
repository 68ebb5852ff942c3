"""Keras-named layers. Each layer describes a computation; the model owns its arrays."""

from kilnet.layers._base import ActivatedLayer, Layer
from kilnet.layers._conv import Conv2D
from kilnet.layers._core import (
    Activation,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Rescaling,
    Reshape,
)
from kilnet.layers._dense import Dense
from kilnet.layers._normalization import BatchNormalization
from kilnet.layers._pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D

# The allowlist of layer types a model file may name (see kilnet/saving).
LAYER_TYPES = {
    cls.__name__: cls
    for cls in (InputLayer, Dense, Flatten, Reshape, Activation, Dropout, Rescaling, Conv2D,
                MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, BatchNormalization)
}

__all__ = [
    "ActivatedLayer", "Activation", "AveragePooling2D", "BatchNormalization", "Conv2D", "Dense",
    "Dropout", "Flatten", "GlobalAveragePooling2D", "Input", "InputLayer", "LAYER_TYPES", "Layer",
    "MaxPooling2D", "Rescaling", "Reshape",
]
