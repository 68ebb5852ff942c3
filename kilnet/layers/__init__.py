"""Keras-named layers. Each layer describes a computation; the model owns its arrays."""

from kilnet.layers._activations import ELU, Identity, LeakyReLU, PReLU, ReLU, Softmax
from kilnet.layers._application_layers import CustomScaleLayer, LayerScale, StochasticDepth
from kilnet.layers._attention import AdditiveAttention, Attention, MultiHeadAttention
from kilnet.layers._grouped_query_attention import GroupedQueryAttention, GroupQueryAttention
from kilnet.layers._audio import MelSpectrogram, STFTSpectrogram
from kilnet.layers._augmentation import (RandomBrightness, RandomContrast, RandomCrop,
                                         RandomFlip, RandomRotation, RandomShear,
                                         RandomTranslation, RandomZoom)
from kilnet.layers._base import ActivatedLayer, Layer
# Keras's automatic get_config, which kilnet.models' configs use too
from kilnet.layers._auto_config import configures_automatically, with_constructor_arguments
from kilnet.layers._input_spec import InputSpec
from kilnet.layers._color_augmentation import (AutoContrast, Equalization, RandomColorDegeneration,
                                               RandomColorJitter, RandomGaussianBlur,
                                               RandomGrayscale, RandomHue, RandomInvert,
                                               RandomPosterization, RandomSaturation,
                                               RandomSharpness, Solarization)
from kilnet.layers._mixing_augmentation import (CutMix, MixUp, Pipeline, RandAugment,
                                                RandomErasing)
from kilnet.layers._geometric_augmentation import (AugMix, RandomElasticTransform,
                                                   RandomPerspective)
from kilnet.layers._conv import Conv2D
from kilnet.layers._conv1d import Conv1D
from kilnet.layers._conv_transpose import Conv2DTranspose, Conv3DTranspose
from kilnet.layers._conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D
from kilnet.layers._conv3d import AveragePooling3D, Conv3D, MaxPooling3D
from kilnet.layers._conv_more import (Conv1DTranspose, DepthwiseConv1D, DepthwiseConv2D,
                                      SeparableConv1D, SeparableConv2D)
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
from kilnet.layers._einsum_dense import EinsumDense
from kilnet.layers._embedding import Embedding
from kilnet.layers._lambda import Lambda
from kilnet.layers._layer_norm import (GroupNormalization, LayerNormalization,
                                       RMSNormalization, UnitNormalization)
from kilnet.layers._node import KerasTensor
from kilnet.layers._merge import (add, average, concatenate, dot, maximum, minimum, multiply,
                                  subtract)
from kilnet.layers._merge import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply,
                                  Subtract)
from kilnet.layers._normalization import BatchNormalization
from kilnet.layers._operation import Operation
from kilnet.layers._pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from kilnet.layers._pooling import (AveragePooling1D, GlobalAveragePooling1D,
                                    GlobalAveragePooling3D, GlobalMaxPooling1D,
                                    GlobalMaxPooling2D, GlobalMaxPooling3D, MaxPooling1D)
from kilnet.layers._preprocessing import CenterCrop, Normalization, Resizing
from kilnet.layers._encoding import CategoryEncoding, Discretization, Hashing
from kilnet.layers._hashed_crossing import HashedCrossing
from kilnet.layers._lookup import IntegerLookup, StringLookup
from kilnet.layers._text_vectorization import TextVectorization
from kilnet.layers._regularization import (ActivityRegularization, AlphaDropout,
                                           GaussianDropout, GaussianNoise, SpatialDropout1D,
                                           SpatialDropout2D, SpatialDropout3D)
from kilnet.layers._recurrent import GRU, LSTM, SimpleRNN
from kilnet.layers._rnn import RNN, GRUCell, LSTMCell, SimpleRNNCell, StackedRNNCells
from kilnet.layers._reshaping import (Cropping1D, Cropping2D, Cropping3D, Permute,
                                      RepeatVector, UpSampling1D, UpSampling2D, UpSampling3D,
                                      ZeroPadding1D, ZeroPadding2D, ZeroPadding3D)
from kilnet.layers._wrappers import Bidirectional, TimeDistributed, Wrapper
from kilnet.layers._spectral_normalization import SpectralNormalization
from kilnet.layers._adaptive_pooling import (AdaptiveAveragePooling1D, AdaptiveAveragePooling2D,
                                             AdaptiveAveragePooling3D, AdaptiveMaxPooling1D,
                                             AdaptiveMaxPooling2D, AdaptiveMaxPooling3D)
from kilnet.layers._reversible_embedding import ReversibleEmbedding

# The allowlist of layer types a model file may name (see kilnet/saving).
LAYER_TYPES = {
    cls.__name__: cls
    for cls in (ReLU, LeakyReLU, PReLU, ELU, Softmax, Identity, SpatialDropout1D,
                SpatialDropout2D, SpatialDropout3D, GaussianNoise, GaussianDropout,
                AlphaDropout, ActivityRegularization,
                InputLayer, Masking, Dense, EinsumDense, Flatten, Reshape, Activation, Dropout,
                Rescaling, Conv2D,
                MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, BatchNormalization,
                Embedding, Conv1D, Conv2DTranspose, MaxPooling1D, AveragePooling1D,
                GlobalAveragePooling1D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate, Dot,
                Permute, RepeatVector, UpSampling1D, UpSampling2D, ZeroPadding1D,
                ZeroPadding2D, Cropping1D, Cropping2D, ZeroPadding3D, Cropping3D, UpSampling3D,
                GlobalAveragePooling3D, GlobalMaxPooling3D,
                MultiHeadAttention, Attention, AdditiveAttention, LayerNormalization,
                GroupQueryAttention,
                GroupNormalization, UnitNormalization, RMSNormalization,
                Normalization, Resizing, CenterCrop, RandomFlip, RandomRotation,
                RandomZoom, RandomTranslation, RandomContrast, RandomBrightness, RandomCrop,
                RandomGrayscale, RandomHue, RandomSaturation, RandomColorDegeneration,
                RandomColorJitter, RandomInvert, RandomPosterization, Solarization,
                AutoContrast, RandomSharpness, RandomGaussianBlur, Equalization, MixUp, CutMix,
                RandomShear, RandomErasing, RandAugment, Pipeline,
                RandomPerspective, RandomElasticTransform, AugMix,
                SimpleRNN, LSTM, GRU, Bidirectional, TimeDistributed,
                SpectralNormalization, ReversibleEmbedding,
                AdaptiveAveragePooling1D, AdaptiveAveragePooling2D, AdaptiveAveragePooling3D,
                AdaptiveMaxPooling1D, AdaptiveMaxPooling2D, AdaptiveMaxPooling3D,
                RNN,
                Conv1DTranspose, DepthwiseConv2D, SeparableConv2D, Conv3D, DepthwiseConv1D,
                SeparableConv1D, Conv3DTranspose, ConvLSTM1D, ConvLSTM2D, ConvLSTM3D,
                MaxPooling3D, AveragePooling3D,
                IntegerLookup, CategoryEncoding, Discretization, Hashing, Operation, Lambda,
                HashedCrossing, StringLookup, TextVectorization,
                MelSpectrogram, STFTSpectrogram,
                LayerScale, StochasticDepth, CustomScaleLayer)
    # StringLookup and TextVectorization take strings: in a model they follow a string
    # Input and run on the host, before its program (kilnet.models._host_stage)
}
# Keras's other names for the same classes (`layers.MaxPool2D is layers.MaxPooling2D`); files
# name the classes by their own names.
AvgPool1D, AvgPool2D, AvgPool3D = AveragePooling1D, AveragePooling2D, AveragePooling3D
MaxPool1D, MaxPool2D, MaxPool3D = MaxPooling1D, MaxPooling2D, MaxPooling3D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalAvgPool3D, GlobalMaxPool3D = GlobalAveragePooling3D, GlobalMaxPooling3D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
Convolution1D, Convolution2D, Convolution3D = Conv1D, Conv2D, Conv3D
Convolution1DTranspose, Convolution2DTranspose = Conv1DTranspose, Conv2DTranspose
Convolution3DTranspose = Conv3DTranspose
SeparableConvolution1D, SeparableConvolution2D = SeparableConv1D, SeparableConv2D

# The cells a file may name inside an RNN's config (they compute one step: not graph layers).
CELL_TYPES = {cls.__name__: cls
              for cls in (SimpleRNNCell, LSTMCell, GRUCell, StackedRNNCells)}

__all__ = [
    "ELU", "Identity", "LeakyReLU", "PReLU", "ReLU", "Softmax",
    "ActivityRegularization", "AlphaDropout", "GaussianDropout", "GaussianNoise",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
    "add", "average", "concatenate", "dot", "maximum", "minimum", "multiply", "subtract",
    "Masking",
    "ActivatedLayer", "Activation", "AveragePooling2D", "BatchNormalization", "Conv2D", "Dense",
    "Dropout", "Flatten", "GlobalAveragePooling2D", "Input", "InputLayer", "InputSpec",
    "LAYER_TYPES", "Layer",
    "CELL_TYPES", "MaxPooling2D", "Rescaling", "Reshape",
    "configures_automatically", "with_constructor_arguments",
    "AveragePooling1D", "Conv1D", "Conv2DTranspose", "Embedding", "GlobalAveragePooling1D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "MaxPooling1D",
    "Add", "Average", "Concatenate", "Dot", "Maximum", "Minimum", "Multiply", "Subtract",
    "Cropping1D", "Cropping2D", "Permute", "RepeatVector", "UpSampling1D", "UpSampling2D",
    "ZeroPadding1D", "ZeroPadding2D", "Cropping3D", "UpSampling3D", "ZeroPadding3D",
    "GlobalAveragePooling3D", "GlobalMaxPooling3D",
    "AdditiveAttention", "Attention", "GroupNormalization", "LayerNormalization",
    "MultiHeadAttention", "RMSNormalization", "UnitNormalization",
    "GroupQueryAttention", "GroupedQueryAttention",
    "CenterCrop", "Normalization", "RandomBrightness", "RandomContrast", "RandomCrop",
    "RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "Resizing",
    "AutoContrast", "CutMix", "Equalization", "MixUp", "RandomColorDegeneration",
    "RandomColorJitter", "RandomGaussianBlur", "RandomGrayscale", "RandomHue", "RandomInvert",
    "RandomPosterization", "RandomSaturation", "RandomSharpness", "Solarization",
    "RandomShear", "RandomErasing", "RandAugment", "Pipeline",
    "RandomPerspective", "RandomElasticTransform", "AugMix",
    "Bidirectional", "GRU", "LSTM", "SimpleRNN", "TimeDistributed",
    "Wrapper", "SpectralNormalization", "ReversibleEmbedding",
    "AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D",
    "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D",
    "GRUCell", "LSTMCell", "RNN", "SimpleRNNCell", "StackedRNNCells",
    "AveragePooling3D", "Conv1DTranspose", "Conv3D", "DepthwiseConv2D", "MaxPooling3D",
    "SeparableConv2D",
    "CategoryEncoding", "Discretization", "Hashing", "IntegerLookup", "StringLookup",
    "HashedCrossing",
    "TextVectorization",
    "Operation", "Lambda", "KerasTensor", "EinsumDense",
    "CustomScaleLayer", "LayerScale", "StochasticDepth",
    "AvgPool1D", "AvgPool2D", "AvgPool3D", "MaxPool1D", "MaxPool2D", "MaxPool3D",
    "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool1D", "GlobalMaxPool2D",
    "GlobalAvgPool3D", "GlobalMaxPool3D",
    "Convolution1D", "Convolution2D", "Convolution3D", "Convolution1DTranspose",
    "Convolution2DTranspose", "SeparableConvolution1D", "SeparableConvolution2D",
    "DepthwiseConv1D", "SeparableConv1D",
    "Conv3DTranspose", "Convolution3DTranspose", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D",
    "MelSpectrogram", "STFTSpectrogram",
    "serialize", "deserialize",
]


# Keras's layers.serialize / layers.deserialize live in kilnet.serialization, which builds on
# the layers (and the file readers): looked up when first used (PEP 562).
_SERIALIZATION = {"serialize": "serialize_layer", "deserialize": "deserialize_layer"}


def __getattr__(name):
    if name in _SERIALIZATION:
        import importlib
        return getattr(importlib.import_module("kilnet.serialization"), _SERIALIZATION[name])
    raise AttributeError(f"module 'kilnet.layers' has no attribute {name!r}")
