"""Keras-named layers. Each layer describes a computation; the model owns its arrays."""

from kilnet.layers._attention import Attention, MultiHeadAttention
from kilnet.layers._augmentation import (RandomBrightness, RandomContrast, RandomFlip,
                                         RandomRotation, RandomTranslation, RandomZoom)
from kilnet.layers._base import ActivatedLayer, Layer
from kilnet.layers._conv import Conv2D
from kilnet.layers._conv1d import Conv1D
from kilnet.layers._conv_transpose import Conv2DTranspose
from kilnet.layers._core import (
    Activation,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Masking,
    Rescaling,
    Reshape,
)
from kilnet.layers._dense import Dense
from kilnet.layers._embedding import Embedding
from kilnet.layers._layer_norm import (GroupNormalization, LayerNormalization,
                                       UnitNormalization)
from kilnet.layers._merge import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply,
                                  Subtract)
from kilnet.layers._normalization import BatchNormalization
from kilnet.layers._pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from kilnet.layers._pooling import (AveragePooling1D, GlobalAveragePooling1D,
                                    GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D)
from kilnet.layers._preprocessing import CenterCrop, Normalization, Resizing
from kilnet.layers._recurrent import GRU, LSTM, SimpleRNN
from kilnet.layers._reshaping import (Cropping1D, Cropping2D, Permute, RepeatVector,
                                      UpSampling1D, UpSampling2D, ZeroPadding1D, ZeroPadding2D)
from kilnet.layers._wrappers import Bidirectional, TimeDistributed

# The allowlist of layer types a model file may name (see kilnet/saving).
LAYER_TYPES = {
    cls.__name__: cls
    for cls in (InputLayer, Masking, Dense, Flatten, Reshape, Activation, Dropout, Rescaling, Conv2D,
                MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, BatchNormalization,
                Embedding, Conv1D, Conv2DTranspose, MaxPooling1D, AveragePooling1D,
                GlobalAveragePooling1D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot,
                Permute, RepeatVector, UpSampling1D, UpSampling2D, ZeroPadding1D,
                ZeroPadding2D, Cropping1D, Cropping2D,
                MultiHeadAttention, Attention, LayerNormalization, GroupNormalization,
                UnitNormalization,
                Normalization, Resizing, CenterCrop, RandomFlip, RandomRotation,
                RandomZoom, RandomTranslation, RandomContrast, RandomBrightness,
                SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed)
}

__all__ = [
    "Masking",
    "ActivatedLayer", "Activation", "AveragePooling2D", "BatchNormalization", "Conv2D", "Dense",
    "Dropout", "Flatten", "GlobalAveragePooling2D", "Input", "InputLayer", "LAYER_TYPES", "Layer",
    "MaxPooling2D", "Rescaling", "Reshape",
    "AveragePooling1D", "Conv1D", "Conv2DTranspose", "Embedding", "GlobalAveragePooling1D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "MaxPooling1D",
    "Add", "Average", "Concatenate", "Dot", "Maximum", "Minimum", "Multiply", "Subtract",
    "Cropping1D", "Cropping2D", "Permute", "RepeatVector", "UpSampling1D", "UpSampling2D",
    "ZeroPadding1D", "ZeroPadding2D",
    "Attention", "GroupNormalization", "LayerNormalization", "MultiHeadAttention",
    "UnitNormalization",
    "CenterCrop", "Normalization", "RandomBrightness", "RandomContrast", "RandomFlip",
    "RandomRotation", "RandomTranslation", "RandomZoom", "Resizing",
    "Bidirectional", "GRU", "LSTM", "SimpleRNN", "TimeDistributed",
]
