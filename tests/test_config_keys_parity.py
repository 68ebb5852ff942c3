"""Every layer's get_config() is Keras 3.15's: the same keys in the same order, and the same
values as Keras's JSON writes them, for each layer type kilnet exports that Keras also has
(kilnet.layers.LAYER_TYPES, CELL_TYPES, StringLookup and TextVectorization), built with its
default arguments and with a set of non-default ones. `.keras` files written by kilnet then
open in Keras with the same configs, and Keras's in kilnet.

One table below (CASES) says how to make each layer, from a top-level module `k` (`kilnet` or
`keras`), so one line describes both the layer under test and the Keras layer it is compared
with. Wrappers and RNNs hold a small inner layer.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
from typing import Callable

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402
from kilnet.keras_files import _config as keras_files_config  # noqa: E402
from kilnet.models import _config as model_config  # noqa: E402

# Types with no Keras twin to compare with, and why.
NOT_COMPARED = {
    "Operation": "kilnet's graph node for Keras's ops (each op class has its own config)",
    "Lambda": "Keras's config holds the function's bytecode, which kilnet never writes",
}


@dataclasses.dataclass(frozen=True)
class Case:
    name: str                       # the class name (LAYER_TYPES / CELL_TYPES key)
    default: Callable               # default(k) -> the layer with default arguments
    custom: Callable                # custom(k) -> the layer with non-default arguments


def _apps(k):
    """Where Keras keeps ConvNeXt's and Inception-ResNet's layers; kilnet.layers for kilnet."""
    if k is kilnet:
        return kilnet.layers
    from keras.src.applications import convnext, inception_resnet_v2
    return types.SimpleNamespace(LayerScale=convnext.LayerScale,
                                 StochasticDepth=convnext.StochasticDepth,
                                 CustomScaleLayer=inception_resnet_v2.CustomScaleLayer)


def _weights(k, prefix="kernel", bias=True, activity=True):
    """Non-default initializers, regularizers and constraints of a layer's weights."""
    out = {f"{prefix}_initializer": k.initializers.HeNormal(seed=3),
           f"{prefix}_regularizer": k.regularizers.L1L2(l1=0.1, l2=0.2),
           f"{prefix}_constraint": k.constraints.MaxNorm(max_value=2.0, axis=0)}
    if bias:
        out.update(bias_initializer=k.initializers.Constant(0.25), bias_regularizer="l2",
                   bias_constraint="non_neg")
    if activity:
        out["activity_regularizer"] = k.regularizers.L1(0.3)
    return out


def _recurrent(k):
    return {**_weights(k), "recurrent_initializer": "glorot_normal",
            "recurrent_regularizer": k.regularizers.L2(0.05),
            "recurrent_constraint": "unit_norm", "use_bias": True, "dropout": 0.1,
            "recurrent_dropout": 0.2, "seed": 7}


def _cell_args(k):
    args = _recurrent(k)
    del args["activity_regularizer"]   # a cell's outputs are its RNN's
    return args


def _sequence(k):
    return dict(return_sequences=True, return_state=True, go_backwards=True, unroll=True)


def _conv(k, rank):
    ones = (1,) * rank
    return dict(strides=(2,) + ones[1:], padding="same", dilation_rate=ones,
                activation="relu", use_bias=True, data_format="channels_last",
                **_weights(k), name="custom", dtype="mixed_bfloat16")


def _separable(k, rank):
    return dict(strides=2, padding="same", depth_multiplier=2, activation="tanh",
                depthwise_initializer="he_uniform", pointwise_initializer="lecun_normal",
                bias_initializer="ones", depthwise_regularizer="l2",
                pointwise_regularizer=k.regularizers.L1(0.02), bias_regularizer="l1",
                activity_regularizer="l2", depthwise_constraint="non_neg",
                pointwise_constraint="unit_norm", bias_constraint="max_norm",
                data_format="channels_last", name="custom")


def _depthwise(k):
    return dict(strides=2, padding="same", depth_multiplier=3, activation="elu",
                depthwise_initializer="he_uniform", bias_initializer="ones",
                depthwise_regularizer="l2", bias_regularizer="l1", activity_regularizer="l2",
                depthwise_constraint="non_neg", bias_constraint="max_norm",
                data_format="channels_last", name="custom")


def _conv_lstm(k):
    return dict(strides=1, padding="same", dilation_rate=1, activation="relu",
                recurrent_activation="hard_sigmoid", unit_forget_bias=False,
                data_format="channels_last", return_sequences=True, go_backwards=True,
                **_recurrent(k))


def _image(k, **extra):
    return dict(seed=5, data_format="channels_last", name="custom", **extra)


def C(name, default, custom):   # noqa: N802 - a table row
    return Case(name, default, custom)


CASES = [
    # activations
    C("ReLU", lambda k: k.layers.ReLU(),
      lambda k: k.layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5, name="custom")),
    C("LeakyReLU", lambda k: k.layers.LeakyReLU(),
      lambda k: k.layers.LeakyReLU(negative_slope=0.2, trainable=False)),
    C("PReLU", lambda k: k.layers.PReLU(),
      lambda k: k.layers.PReLU(alpha_initializer="he_normal", alpha_regularizer="l2",
                               alpha_constraint="non_neg", shared_axes=[1, 2])),
    C("ELU", lambda k: k.layers.ELU(), lambda k: k.layers.ELU(alpha=0.5)),
    C("Softmax", lambda k: k.layers.Softmax(), lambda k: k.layers.Softmax(axis=1)),
    # Keras's Identity and ELU configure themselves from their arguments: the base keys
    # given to the constructor come in the order given (here Keras's own order)
    C("Identity", lambda k: k.layers.Identity(),
      lambda k: k.layers.Identity(name="custom", trainable=False, dtype="mixed_bfloat16")),
    # regularization
    C("SpatialDropout1D", lambda k: k.layers.SpatialDropout1D(0.1),
      lambda k: k.layers.SpatialDropout1D(0.3, seed=3, name="custom")),
    C("SpatialDropout2D", lambda k: k.layers.SpatialDropout2D(0.1),
      lambda k: k.layers.SpatialDropout2D(0.3, data_format="channels_last", seed=3)),
    C("SpatialDropout3D", lambda k: k.layers.SpatialDropout3D(0.1),
      lambda k: k.layers.SpatialDropout3D(0.3, data_format="channels_last", seed=3)),
    C("GaussianNoise", lambda k: k.layers.GaussianNoise(0.1),
      lambda k: k.layers.GaussianNoise(0.2, seed=1)),
    C("GaussianDropout", lambda k: k.layers.GaussianDropout(0.1),
      lambda k: k.layers.GaussianDropout(0.2, seed=1)),
    C("AlphaDropout", lambda k: k.layers.AlphaDropout(0.1),
      lambda k: k.layers.AlphaDropout(0.2, noise_shape=(None, 1), seed=1)),
    C("ActivityRegularization", lambda k: k.layers.ActivityRegularization(),
      lambda k: k.layers.ActivityRegularization(l1=0.1, l2=0.2)),
    # core
    C("InputLayer", lambda k: k.layers.InputLayer(shape=(3,)),
      lambda k: k.layers.InputLayer(batch_shape=(4, 3), dtype="int32", name="custom")),
    C("Masking", lambda k: k.layers.Masking(), lambda k: k.layers.Masking(mask_value=-1.0)),
    C("Dense", lambda k: k.layers.Dense(2),
      lambda k: k.layers.Dense(3, activation="relu", use_bias=True, **_weights(k),
                               name="custom", dtype="mixed_bfloat16")),
    C("EinsumDense", lambda k: k.layers.EinsumDense("ab,bc->ac", 2),
      lambda k: k.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3),
                                     bias_axes="de", activation="tanh", **_weights(k))),
    C("Flatten", lambda k: k.layers.Flatten(),
      lambda k: k.layers.Flatten(data_format="channels_last", name="custom")),
    C("Reshape", lambda k: k.layers.Reshape((2,)), lambda k: k.layers.Reshape((3, -1))),
    C("Activation", lambda k: k.layers.Activation("relu"),
      lambda k: k.layers.Activation("softmax", name="custom")),
    C("Dropout", lambda k: k.layers.Dropout(0.1),
      lambda k: k.layers.Dropout(0.3, noise_shape=(None, 1), seed=2)),
    C("Rescaling", lambda k: k.layers.Rescaling(0.5),
      lambda k: k.layers.Rescaling(1 / 255, offset=-1.0)),
    C("LayerScale", lambda k: _apps(k).LayerScale(0.5, 3),
      lambda k: _apps(k).LayerScale(1e-6, 8, name="custom")),
    C("StochasticDepth", lambda k: _apps(k).StochasticDepth(0.2),
      lambda k: _apps(k).StochasticDepth(0.5, name="custom")),
    C("CustomScaleLayer", lambda k: _apps(k).CustomScaleLayer(0.17),
      lambda k: _apps(k).CustomScaleLayer(1.0, name="custom")),
    C("Embedding", lambda k: k.layers.Embedding(5, 2),
      lambda k: k.layers.Embedding(7, 3, embeddings_initializer="he_normal",
                                   embeddings_regularizer="l2", activity_regularizer="l1",
                                   embeddings_constraint="unit_norm", mask_zero=True)),
    C("ReversibleEmbedding", lambda k: k.layers.ReversibleEmbedding(5, 2),
      lambda k: k.layers.ReversibleEmbedding(7, 3, tie_weights=False,
                                             embeddings_initializer="he_normal",
                                             embeddings_regularizer="l2",
                                             embeddings_constraint="unit_norm", mask_zero=True,
                                             reverse_dtype="float32", logit_soft_cap=30.0)),
    C("BatchNormalization", lambda k: k.layers.BatchNormalization(),
      lambda k: k.layers.BatchNormalization(
          axis=1, momentum=0.9, epsilon=1e-5, center=True, scale=True,
          beta_initializer="random_normal", gamma_initializer=k.initializers.Constant(2.0),
          moving_mean_initializer="ones", moving_variance_initializer="zeros",
          beta_regularizer="l2", gamma_regularizer="l1", beta_constraint="non_neg",
          gamma_constraint="max_norm", renorm=False, renorm_clipping=None,
          renorm_momentum=0.99, synchronized=False, name="custom")),
    # convolutions
    C("Conv1D", lambda k: k.layers.Conv1D(2, 3),
      lambda k: k.layers.Conv1D(4, 3, groups=1, **_conv(k, 1))),
    C("Conv2D", lambda k: k.layers.Conv2D(2, 3),
      lambda k: k.layers.Conv2D(4, (2, 3), groups=2, **_conv(k, 2))),
    C("Conv3D", lambda k: k.layers.Conv3D(2, 3),
      lambda k: k.layers.Conv3D(4, 2, groups=1, **_conv(k, 3))),
    C("Conv1DTranspose", lambda k: k.layers.Conv1DTranspose(2, 3),
      lambda k: k.layers.Conv1DTranspose(4, 3, output_padding=1, **_conv(k, 1))),
    C("Conv2DTranspose", lambda k: k.layers.Conv2DTranspose(2, 3),
      lambda k: k.layers.Conv2DTranspose(4, (2, 3), output_padding=(1, 0), **_conv(k, 2))),
    C("Conv3DTranspose", lambda k: k.layers.Conv3DTranspose(2, 3),
      lambda k: k.layers.Conv3DTranspose(4, 2, **_conv(k, 3))),
    C("DepthwiseConv1D", lambda k: k.layers.DepthwiseConv1D(3),
      lambda k: k.layers.DepthwiseConv1D(2, **_depthwise(k))),
    C("DepthwiseConv2D", lambda k: k.layers.DepthwiseConv2D(3),
      lambda k: k.layers.DepthwiseConv2D((2, 3), **_depthwise(k))),
    C("SeparableConv1D", lambda k: k.layers.SeparableConv1D(2, 3),
      lambda k: k.layers.SeparableConv1D(4, 2, **_separable(k, 1))),
    C("SeparableConv2D", lambda k: k.layers.SeparableConv2D(2, 3),
      lambda k: k.layers.SeparableConv2D(4, (2, 3), **_separable(k, 2))),
    # pooling
    C("MaxPooling1D", lambda k: k.layers.MaxPooling1D(),
      lambda k: k.layers.MaxPooling1D(3, strides=2, padding="same",
                                      data_format="channels_last", name="custom")),
    C("AveragePooling1D", lambda k: k.layers.AveragePooling1D(2),
      lambda k: k.layers.AveragePooling1D(3, strides=1, padding="same")),
    C("MaxPooling2D", lambda k: k.layers.MaxPooling2D(),
      lambda k: k.layers.MaxPooling2D((3, 2), strides=2, padding="same",
                                      data_format="channels_last")),
    C("AveragePooling2D", lambda k: k.layers.AveragePooling2D(2),
      lambda k: k.layers.AveragePooling2D((3, 2), strides=(1, 2), padding="same")),
    C("MaxPooling3D", lambda k: k.layers.MaxPooling3D(),
      lambda k: k.layers.MaxPooling3D(3, strides=2, padding="same")),
    C("AveragePooling3D", lambda k: k.layers.AveragePooling3D(2),
      lambda k: k.layers.AveragePooling3D((1, 2, 3), padding="same")),
    C("GlobalAveragePooling1D", lambda k: k.layers.GlobalAveragePooling1D(),
      lambda k: k.layers.GlobalAveragePooling1D(data_format="channels_last", keepdims=True)),
    C("GlobalMaxPooling1D", lambda k: k.layers.GlobalMaxPooling1D(),
      lambda k: k.layers.GlobalMaxPooling1D(keepdims=True)),
    C("GlobalAveragePooling2D", lambda k: k.layers.GlobalAveragePooling2D(),
      lambda k: k.layers.GlobalAveragePooling2D(keepdims=True, name="custom")),
    C("GlobalMaxPooling2D", lambda k: k.layers.GlobalMaxPooling2D(),
      lambda k: k.layers.GlobalMaxPooling2D(keepdims=True)),
    C("GlobalAveragePooling3D", lambda k: k.layers.GlobalAveragePooling3D(),
      lambda k: k.layers.GlobalAveragePooling3D(keepdims=True)),
    C("GlobalMaxPooling3D", lambda k: k.layers.GlobalMaxPooling3D(),
      lambda k: k.layers.GlobalMaxPooling3D(keepdims=True)),
    C("AdaptiveAveragePooling1D", lambda k: k.layers.AdaptiveAveragePooling1D(2),
      lambda k: k.layers.AdaptiveAveragePooling1D(3, data_format="channels_last")),
    C("AdaptiveAveragePooling2D", lambda k: k.layers.AdaptiveAveragePooling2D(2),
      lambda k: k.layers.AdaptiveAveragePooling2D((2, 3), data_format="channels_last")),
    C("AdaptiveAveragePooling3D", lambda k: k.layers.AdaptiveAveragePooling3D(2),
      lambda k: k.layers.AdaptiveAveragePooling3D((1, 2, 3))),
    C("AdaptiveMaxPooling1D", lambda k: k.layers.AdaptiveMaxPooling1D(2),
      lambda k: k.layers.AdaptiveMaxPooling1D(3, data_format="channels_last")),
    C("AdaptiveMaxPooling2D", lambda k: k.layers.AdaptiveMaxPooling2D(2),
      lambda k: k.layers.AdaptiveMaxPooling2D((3, 2))),
    C("AdaptiveMaxPooling3D", lambda k: k.layers.AdaptiveMaxPooling3D(2),
      lambda k: k.layers.AdaptiveMaxPooling3D((1, 2, 3), data_format="channels_last")),
    # merging
    C("Add", lambda k: k.layers.Add(), lambda k: k.layers.Add(name="custom", trainable=False)),
    C("Subtract", lambda k: k.layers.Subtract(), lambda k: k.layers.Subtract(name="custom")),
    C("Multiply", lambda k: k.layers.Multiply(), lambda k: k.layers.Multiply(name="custom")),
    C("Average", lambda k: k.layers.Average(), lambda k: k.layers.Average(name="custom")),
    C("Maximum", lambda k: k.layers.Maximum(), lambda k: k.layers.Maximum(name="custom")),
    C("Minimum", lambda k: k.layers.Minimum(), lambda k: k.layers.Minimum(name="custom")),
    C("Concatenate", lambda k: k.layers.Concatenate(), lambda k: k.layers.Concatenate(axis=1)),
    C("Dot", lambda k: k.layers.Dot(axes=1),
      lambda k: k.layers.Dot(axes=(1, 2), normalize=True)),
    # reshaping
    C("Permute", lambda k: k.layers.Permute((2, 1)), lambda k: k.layers.Permute((3, 1, 2))),
    C("RepeatVector", lambda k: k.layers.RepeatVector(2), lambda k: k.layers.RepeatVector(5)),
    C("UpSampling1D", lambda k: k.layers.UpSampling1D(), lambda k: k.layers.UpSampling1D(3)),
    C("UpSampling2D", lambda k: k.layers.UpSampling2D(),
      lambda k: k.layers.UpSampling2D((2, 3), data_format="channels_last",
                                      interpolation="bilinear")),
    C("UpSampling3D", lambda k: k.layers.UpSampling3D(),
      lambda k: k.layers.UpSampling3D((1, 2, 3), data_format="channels_last")),
    C("ZeroPadding1D", lambda k: k.layers.ZeroPadding1D(),
      lambda k: k.layers.ZeroPadding1D((1, 2))),
    C("ZeroPadding2D", lambda k: k.layers.ZeroPadding2D(),
      lambda k: k.layers.ZeroPadding2D(((1, 0), (2, 3)), data_format="channels_last")),
    C("ZeroPadding3D", lambda k: k.layers.ZeroPadding3D(),
      lambda k: k.layers.ZeroPadding3D(2)),
    C("Cropping1D", lambda k: k.layers.Cropping1D(), lambda k: k.layers.Cropping1D((2, 0))),
    C("Cropping2D", lambda k: k.layers.Cropping2D(),
      lambda k: k.layers.Cropping2D(((1, 0), (0, 1)), data_format="channels_last")),
    C("Cropping3D", lambda k: k.layers.Cropping3D(), lambda k: k.layers.Cropping3D(1)),
    # attention and normalization
    C("MultiHeadAttention", lambda k: k.layers.MultiHeadAttention(2, 2),
      lambda k: k.layers.MultiHeadAttention(
          num_heads=4, key_dim=3, value_dim=5, dropout=0.1, use_bias=True, output_shape=(7,),
          attention_axes=(1,), **_weights(k), use_gate=True, seed=3)),
    C("GroupQueryAttention", lambda k: k.layers.GroupQueryAttention(2, 4, 2),
      lambda k: k.layers.GroupQueryAttention(
          head_dim=3, num_query_heads=4, num_key_value_heads=2, dropout=0.1, use_bias=True,
          **_weights(k), use_gate=True, seed=1)),
    C("Attention", lambda k: k.layers.Attention(),
      lambda k: k.layers.Attention(use_scale=True, score_mode="concat", dropout=0.1, seed=2)),
    C("AdditiveAttention", lambda k: k.layers.AdditiveAttention(),
      lambda k: k.layers.AdditiveAttention(use_scale=False, dropout=0.1, seed=2)),
    C("LayerNormalization", lambda k: k.layers.LayerNormalization(),
      lambda k: k.layers.LayerNormalization(
          axis=1, epsilon=1e-5, center=True, scale=True, rms_scaling=False,
          beta_initializer="ones", gamma_initializer=k.initializers.Constant(0.5),
          beta_regularizer="l2", gamma_regularizer="l1", beta_constraint="non_neg",
          gamma_constraint="unit_norm")),
    C("GroupNormalization", lambda k: k.layers.GroupNormalization(),
      lambda k: k.layers.GroupNormalization(
          groups=2, axis=1, epsilon=1e-5, center=False, scale=True,
          beta_initializer="ones", gamma_initializer="random_uniform",
          beta_regularizer="l2", gamma_regularizer="l1", beta_constraint="non_neg",
          gamma_constraint="unit_norm")),
    C("UnitNormalization", lambda k: k.layers.UnitNormalization(),
      lambda k: k.layers.UnitNormalization(axis=[1, 2])),
    C("RMSNormalization", lambda k: k.layers.RMSNormalization(),
      lambda k: k.layers.RMSNormalization(axis=1, epsilon=1e-5)),
    # preprocessing
    C("Normalization", lambda k: k.layers.Normalization(),
      lambda k: k.layers.Normalization(axis=1, mean=[0.5, -1.0], variance=[4.0, 0.25],
                                       invert=True)),
    C("Resizing", lambda k: k.layers.Resizing(2, 2),
      lambda k: k.layers.Resizing(4, 6, interpolation="nearest", crop_to_aspect_ratio=True,
                                  fill_mode="constant", fill_value=1.0, antialias=True,
                                  data_format="channels_last")),
    C("CenterCrop", lambda k: k.layers.CenterCrop(2, 2),
      lambda k: k.layers.CenterCrop(3, 4, data_format="channels_last", name="custom")),
    C("CategoryEncoding", lambda k: k.layers.CategoryEncoding(3),
      lambda k: k.layers.CategoryEncoding(num_tokens=8, output_mode="count")),
    C("Discretization", lambda k: k.layers.Discretization(bin_boundaries=[0.0]),
      lambda k: k.layers.Discretization(bin_boundaries=[0.0, 0.5], output_mode="one_hot",
                                        epsilon=0.1, name="custom")),
    C("Hashing", lambda k: k.layers.Hashing(3),
      lambda k: k.layers.Hashing(num_bins=4, mask_value=0, salt=3, output_mode="one_hot")),
    C("HashedCrossing", lambda k: k.layers.HashedCrossing(3),
      lambda k: k.layers.HashedCrossing(num_bins=5, output_mode="one_hot", name="custom")),
    C("IntegerLookup", lambda k: k.layers.IntegerLookup(),
      lambda k: k.layers.IntegerLookup(vocabulary=[2, 3, 5], num_oov_indices=2, mask_token=0,
                                       oov_token=-2, output_mode="multi_hot")),
    C("StringLookup", lambda k: k.layers.StringLookup(),
      lambda k: k.layers.StringLookup(vocabulary=["a", "b"], num_oov_indices=2,
                                      mask_token="", oov_token="?", output_mode="count")),
    C("TextVectorization", lambda k: k.layers.TextVectorization(),
      lambda k: k.layers.TextVectorization(max_tokens=10, standardize="lower", split=None,
                                           ngrams=2, output_mode="int",
                                           output_sequence_length=4,
                                           vocabulary=["a", "b"])),
    # augmentation
    C("RandomFlip", lambda k: k.layers.RandomFlip(),
      lambda k: k.layers.RandomFlip("horizontal", **_image(k))),
    C("RandomRotation", lambda k: k.layers.RandomRotation(0.1),
      lambda k: k.layers.RandomRotation((-0.2, 0.3), fill_mode="constant",
                                        interpolation="nearest", fill_value=1.0, **_image(k))),
    C("RandomZoom", lambda k: k.layers.RandomZoom(0.1),
      lambda k: k.layers.RandomZoom((-0.2, 0.1), width_factor=0.3, fill_mode="wrap",
                                    interpolation="nearest", fill_value=1.0, **_image(k))),
    C("RandomTranslation", lambda k: k.layers.RandomTranslation(0.1, 0.1),
      lambda k: k.layers.RandomTranslation((-0.2, 0.1), 0.3, fill_mode="nearest",
                                           interpolation="nearest", fill_value=1.0,
                                           **_image(k))),
    C("RandomContrast", lambda k: k.layers.RandomContrast(0.2),
      lambda k: k.layers.RandomContrast((0.1, 0.3), value_range=(0, 1), seed=2)),
    C("RandomBrightness", lambda k: k.layers.RandomBrightness(0.2),
      lambda k: k.layers.RandomBrightness((-0.1, 0.3), value_range=(0, 1), seed=2)),
    C("RandomCrop", lambda k: k.layers.RandomCrop(2, 2),
      lambda k: k.layers.RandomCrop(3, 4, **_image(k))),
    C("RandomGrayscale", lambda k: k.layers.RandomGrayscale(),
      lambda k: k.layers.RandomGrayscale(0.7, **_image(k))),
    C("RandomHue", lambda k: k.layers.RandomHue(0.3),
      lambda k: k.layers.RandomHue((0.1, 0.4), value_range=(0, 1), **_image(k))),
    C("RandomSaturation", lambda k: k.layers.RandomSaturation(0.3),
      lambda k: k.layers.RandomSaturation((0.1, 0.4), value_range=(0, 1), **_image(k))),
    C("RandomColorDegeneration", lambda k: k.layers.RandomColorDegeneration(0.3),
      lambda k: k.layers.RandomColorDegeneration((0.1, 0.4), value_range=(0, 1),
                                                 **_image(k))),
    C("RandomColorJitter", lambda k: k.layers.RandomColorJitter(),
      lambda k: k.layers.RandomColorJitter(value_range=(0, 1), brightness_factor=0.2,
                                           contrast_factor=0.2, saturation_factor=(0.1, 0.3),
                                           hue_factor=0.1, **_image(k))),
    C("RandomInvert", lambda k: k.layers.RandomInvert(),
      lambda k: k.layers.RandomInvert(0.5, value_range=(0, 1), **_image(k))),
    C("RandomPosterization", lambda k: k.layers.RandomPosterization(4),
      lambda k: k.layers.RandomPosterization(2, value_range=(0, 1), **_image(k))),
    C("Solarization", lambda k: k.layers.Solarization(),
      lambda k: k.layers.Solarization(0.1, 0.5, value_range=(0, 1), seed=2, name="custom")),
    C("AutoContrast", lambda k: k.layers.AutoContrast(),
      lambda k: k.layers.AutoContrast(value_range=(-2, 2), name="custom")),
    C("RandomSharpness", lambda k: k.layers.RandomSharpness(0.4),
      lambda k: k.layers.RandomSharpness((0.1, 0.6), value_range=(0, 1), **_image(k))),
    C("RandomGaussianBlur", lambda k: k.layers.RandomGaussianBlur(),
      lambda k: k.layers.RandomGaussianBlur(0.5, kernel_size=5, sigma=(0.2, 0.8),
                                            value_range=(0, 1), **_image(k))),
    C("Equalization", lambda k: k.layers.Equalization(),
      lambda k: k.layers.Equalization(value_range=(0, 1), bins=16,
                                      data_format="channels_last", name="custom")),
    C("MixUp", lambda k: k.layers.MixUp(), lambda k: k.layers.MixUp(alpha=0.4, **_image(k))),
    C("CutMix", lambda k: k.layers.CutMix(), lambda k: k.layers.CutMix(0.5, **_image(k))),
    C("RandomShear", lambda k: k.layers.RandomShear(),
      lambda k: k.layers.RandomShear(0.2, 0.1, interpolation="nearest", fill_mode="constant",
                                     fill_value=1.0, **_image(k))),
    C("RandomErasing", lambda k: k.layers.RandomErasing(),
      lambda k: k.layers.RandomErasing(0.5, scale=(0.1, 0.2), fill_value=0.5,
                                       value_range=(0, 1), **_image(k))),
    C("RandAugment", lambda k: k.layers.RandAugment(),
      lambda k: k.layers.RandAugment(value_range=(0, 1), num_ops=1, factor=0.3,
                                     interpolation="nearest", **_image(k))),
    C("RandomPerspective", lambda k: k.layers.RandomPerspective(),
      lambda k: k.layers.RandomPerspective(0.5, scale=0.4, interpolation="nearest",
                                           fill_value=1.0, **_image(k))),
    C("RandomElasticTransform", lambda k: k.layers.RandomElasticTransform(),
      lambda k: k.layers.RandomElasticTransform(0.5, scale=0.5, interpolation="nearest",
                                                fill_mode="constant", fill_value=1.0,
                                                value_range=(0, 1), **_image(k))),
    C("AugMix", lambda k: k.layers.AugMix(),
      lambda k: k.layers.AugMix(value_range=(0, 1), num_chains=1, chain_depth=2, factor=0.5,
                                alpha=0.5, all_ops=False, interpolation="nearest",
                                **_image(k))),
    C("Pipeline", lambda k: k.layers.Pipeline([k.layers.RandomFlip(name="flip")]),
      lambda k: k.layers.Pipeline([k.layers.RandomFlip("vertical", seed=1, name="flip"),
                                   k.layers.AutoContrast((-2, 2), name="contrast")],
                                  name="custom")),
    # audio
    C("STFTSpectrogram", lambda k: k.layers.STFTSpectrogram(),
      lambda k: k.layers.STFTSpectrogram(mode="magnitude", frame_length=8, frame_step=4,
                                         fft_length=16, window="hamming", periodic=True,
                                         scaling="spectrum", padding="same", expand_dims=True,
                                         data_format="channels_last")),
    C("MelSpectrogram", lambda k: k.layers.MelSpectrogram(),
      lambda k: k.layers.MelSpectrogram(fft_length=16, sequence_stride=8, sequence_length=12,
                                        window="hamming", sampling_rate=800, num_mel_bins=4,
                                        min_freq=10.0, max_freq=300.0, power_to_db=False,
                                        top_db=60.0, mag_exp=1.0, min_power=1e-8,
                                        ref_power=2.0)),
    # recurrent, cells and wrappers
    # Keras 3.15's SimpleRNN drops an activity_regularizer (its config writes null, and it
    # adds no penalty); kilnet's applies and keeps it (tests/test_regularizers_layers.py)
    C("SimpleRNN", lambda k: k.layers.SimpleRNN(2),
      lambda k: k.layers.SimpleRNN(3, activation="relu", **_cell_args(k), **_sequence(k))),
    C("LSTM", lambda k: k.layers.LSTM(2),
      lambda k: k.layers.LSTM(3, activation="relu", recurrent_activation="hard_sigmoid",
                              unit_forget_bias=False, **_recurrent(k), **_sequence(k))),
    C("GRU", lambda k: k.layers.GRU(2),
      lambda k: k.layers.GRU(3, activation="relu", recurrent_activation="hard_sigmoid",
                             reset_after=False, **_recurrent(k), **_sequence(k))),
    C("SimpleRNNCell", lambda k: k.layers.SimpleRNNCell(2),
      lambda k: k.layers.SimpleRNNCell(3, activation="relu", **_cell_args(k))),
    C("LSTMCell", lambda k: k.layers.LSTMCell(2),
      lambda k: k.layers.LSTMCell(3, activation="relu", recurrent_activation="hard_sigmoid",
                                  unit_forget_bias=False, **_cell_args(k))),
    C("GRUCell", lambda k: k.layers.GRUCell(2),
      lambda k: k.layers.GRUCell(3, activation="relu", recurrent_activation="hard_sigmoid",
                                 reset_after=False, **_cell_args(k))),
    C("StackedRNNCells",
      lambda k: k.layers.StackedRNNCells([k.layers.GRUCell(2, name="inner")]),
      lambda k: k.layers.StackedRNNCells([k.layers.GRUCell(2, name="first"),
                                          k.layers.LSTMCell(3, dropout=0.1, name="second")],
                                         name="custom")),
    C("RNN", lambda k: k.layers.RNN(k.layers.GRUCell(2, name="inner")),
      lambda k: k.layers.RNN([k.layers.GRUCell(2, name="first"),
                              k.layers.LSTMCell(3, name="second")], **_sequence(k),
                             zero_output_for_mask=True, name="custom")),
    C("Bidirectional", lambda k: k.layers.Bidirectional(k.layers.LSTM(2, name="inner")),
      lambda k: k.layers.Bidirectional(
          k.layers.LSTM(2, return_sequences=True, name="inner"), merge_mode="sum",
          backward_layer=k.layers.LSTM(2, return_sequences=True, go_backwards=True,
                                       name="back"), name="custom")),
    C("TimeDistributed", lambda k: k.layers.TimeDistributed(k.layers.Dense(2, name="inner")),
      lambda k: k.layers.TimeDistributed(k.layers.Conv1D(2, 3, name="inner"),
                                         name="custom")),
    C("SpectralNormalization",
      lambda k: k.layers.SpectralNormalization(k.layers.Dense(2, name="inner")),
      lambda k: k.layers.SpectralNormalization(k.layers.Conv2D(2, 3, name="inner"),
                                               power_iterations=3, name="custom")),
    C("ConvLSTM1D", lambda k: k.layers.ConvLSTM1D(2, 3),
      lambda k: k.layers.ConvLSTM1D(4, 2, **_conv_lstm(k))),
    C("ConvLSTM2D", lambda k: k.layers.ConvLSTM2D(2, 3),
      lambda k: k.layers.ConvLSTM2D(4, (2, 3), **_conv_lstm(k))),
    C("ConvLSTM3D", lambda k: k.layers.ConvLSTM3D(2, 3),
      lambda k: k.layers.ConvLSTM3D(4, 2, **_conv_lstm(k))),
]
FORMS = ("default", "custom")
PARAMS = [pytest.param(case, form, id=f"{case.name}-{form}") for case in CASES
          for form in FORMS]
# Keras 3.15 builds these with TensorFlow, which the tests do not install: their configs as
# Keras's JSON writes them, recorded from Keras 3.15.1 with TensorFlow (bench/.venv-peers)
# for the same arguments.
_POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
           "registered_name": None}
_LOOKUP = {"invert": False, "max_tokens": None, "num_oov_indices": 1, "oov_token": "[UNK]",
           "mask_token": None, "output_mode": "int", "sparse": False, "pad_to_max_tokens": False,
           "idf_weights": None, "vocabulary": None, "vocabulary_size": None,
           "oov_method": "floormod", "salt": None, "encoding": "utf-8"}
_INTEGER_LOOKUP = {**{key: value for key, value in _LOOKUP.items() if key != "encoding"},
                   "oov_token": -1}
_INTEGER_LOOKUP = {key: _INTEGER_LOOKUP[key] for key in (
    "invert", "max_tokens", "num_oov_indices", "oov_token", "mask_token", "output_mode",
    "sparse", "pad_to_max_tokens")} | {"vocabulary_dtype": "int64"} | {
    key: _INTEGER_LOOKUP[key] for key in ("idf_weights", "vocabulary", "vocabulary_size",
                                          "oov_method", "salt")}
_TEXT = {"max_tokens": None, "standardize": "lower_and_strip_punctuation",
         "split": "whitespace", "ngrams": None, "output_mode": "int",
         "output_sequence_length": None, "pad_to_max_tokens": False, "sparse": False,
         "ragged": False, "vocabulary": None, "idf_weights": None, "encoding": "utf-8",
         "vocabulary_size": 2}


def _base(name):
    return {"name": name, "trainable": True, "dtype": _POLICY}


RECORDED = {
    ("Hashing", "default"): {**_base("hashing"), "dtype": {**_POLICY, "config": {"name": "int64"}},
                             "num_bins": 3, "salt": None, "mask_value": None,
                             "output_mode": "int", "sparse": False},
    ("Hashing", "custom"): {**_base("hashing"), "num_bins": 4, "salt": [3, 3], "mask_value": 0,
                            "output_mode": "one_hot", "sparse": False},
    ("HashedCrossing", "default"): {"num_bins": 3, "output_mode": "int", "sparse": False,
                                    "name": "hashed_crossing", "dtype": "int64"},
    ("HashedCrossing", "custom"): {"num_bins": 5, "output_mode": "one_hot", "sparse": False,
                                   "name": "custom", "dtype": "float32"},
    ("IntegerLookup", "default"): {**_base("integer_lookup"), **_INTEGER_LOOKUP},
    ("IntegerLookup", "custom"): {**_base("integer_lookup"), **_INTEGER_LOOKUP, "num_oov_indices": 2,
                                  "oov_token": -2, "mask_token": 0,
                                  "output_mode": "multi_hot", "vocabulary": [2, 3, 5],
                                  "vocabulary_size": 5},
    ("StringLookup", "default"): {**_base("string_lookup"), **_LOOKUP},
    ("StringLookup", "custom"): {**_base("string_lookup"), **_LOOKUP, "num_oov_indices": 2, "oov_token": "?",
                                 "mask_token": "", "output_mode": "count",
                                 "vocabulary": ["a", "b"], "vocabulary_size": 4},
    ("TextVectorization", "default"): {**_base("text_vectorization"), **_TEXT},
    ("TextVectorization", "custom"): {**_base("text_vectorization"), **_TEXT, "max_tokens": 10,
                                      "standardize": "lower", "split": None, "ngrams": 2,
                                      "output_sequence_length": 4, "vocabulary": ["a", "b"],
                                      "vocabulary_size": 4},
}
# Values that differ on purpose (their keys do not): Keras 3.15's RandomCrop draws a seed
# when none is given (kilnet's model seed decides); kilnet's RandomShear keeps its factors as
# given, where Keras 3.15 writes a (-f, f) pair its own constructor refuses (README).
DIFFERENT_VALUES = {("RandomCrop", "default"): ("seed",),
                    ("RandomShear", "default"): ("x_factor", "y_factor"),
                    ("RandomShear", "custom"): ("x_factor", "y_factor")}


def _make(case, form, k):
    return getattr(case, form)(k)


def _keras_config(case, form):
    """Keras's config of the case's layer, its objects serialized as Keras's JSON writer
    does (tuples kept)."""
    if (case.name, form) in RECORDED:
        return RECORDED[case.name, form]
    return keras.saving.serialize_keras_object(_make(case, form, keras).get_config())


def _comparable(config, case, form, tuples=True):
    """A config as JSON text to compare: tuples told from lists (where `tuples`: Keras's
    printed configs and code reading them tell them apart; a file's JSON does not), NumPy
    scalars as Python numbers, layer names without the number Keras and kilnet add to a
    default name in their own ways, the values that differ on purpose left out."""
    config = {key: value for key, value in config.items()
              if key not in DIFFERENT_VALUES.get((case.name, form), ())}
    return json.dumps(_normalized(config, tuples))


def _normalized(value, tuples):
    if isinstance(value, dict):
        return {key: re.sub(r"_\d+$", "", item) if key == "name" and isinstance(item, str)
                else _normalized(item, tuples) for key, item in value.items()}
    if isinstance(value, tuple) and tuples:
        return {"__tuple__": [_normalized(item, tuples) for item in value]}
    if isinstance(value, (list, tuple)):
        return [_normalized(item, tuples) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _written_by_kilnet(layer):
    """The layer's entry as kilnet's `.keras` writer writes it into config.json."""
    spec = keras_files_config.keras_layer(model_config.serialize(layer), "m.keras")
    return json.loads(json.dumps(spec))


# -- the table is complete ----------------------------------------------------------------------
def test_every_layer_type_has_a_case():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), "a layer has two cases"
    exported = set(layers.LAYER_TYPES) | set(layers.CELL_TYPES) | {"StringLookup",
                                                                    "TextVectorization"}
    assert set(names) == exported - set(NOT_COMPARED)
    for case in CASES:
        for form in FORMS:
            assert type(_make(case, form, kilnet)).__name__ == case.name


# -- keys and values ----------------------------------------------------------------------------
@pytest.mark.parametrize("case, form", PARAMS)
def test_config_keys_are_keras_keys_in_keras_order(case, form):
    assert list(_make(case, form, kilnet).get_config()) == list(_keras_config(case, form))


@pytest.mark.parametrize("case, form", PARAMS)
def test_config_values_are_keras_values(case, form):
    tuples = (case.name, form) not in RECORDED   # recorded as JSON
    ours = _comparable(_make(case, form, kilnet).get_config(), case, form, tuples)
    assert ours == _comparable(_keras_config(case, form), case, form, tuples)


# -- both ways through Keras's files ------------------------------------------------------------
FILE_PARAMS = PARAMS


@pytest.mark.parametrize("case, form", [param for param in FILE_PARAMS
                                        if (param.values[0].name, param.values[1])
                                        not in RECORDED])
def test_keras_rebuilds_the_layers_kilnet_writes(case, form):
    rebuilt = keras.layers.deserialize(_written_by_kilnet(_make(case, form, kilnet)))
    assert type(rebuilt) is type(_make(case, form, keras))
    ours = _comparable(keras.saving.serialize_keras_object(rebuilt.get_config()), case, form,
                       tuples=False)
    assert ours == _comparable(_keras_config(case, form), case, form, tuples=False)


@pytest.mark.parametrize("case, form", FILE_PARAMS)
def test_kilnet_reads_the_layers_keras_writes(case, form):
    entry = (keras.layers.serialize(_make(case, form, keras))
             if (case.name, form) not in RECORDED else
             {"module": "keras.layers", "class_name": case.name,
              "config": RECORDED[case.name, form], "registered_name": None})
    read = kilnet.layers.deserialize(json.loads(json.dumps(entry)))
    assert type(read).__name__ == case.name
    ours = _comparable(read.get_config(), case, form, tuples=False)
    assert ours == _comparable(_keras_config(case, form), case, form, tuples=False)


def _image_model(k):
    inputs = k.Input((6, 6, 4))
    x = k.layers.Conv2D(4, 3, padding="same", groups=2, data_format="channels_last",
                        activity_regularizer=k.regularizers.L1(0.3), name="conv")(inputs)
    x = k.layers.BatchNormalization(beta_initializer="random_normal",
                                    moving_variance_initializer=k.initializers.Constant(2.0),
                                    name="norm")(x)
    x = k.layers.MaxPooling2D(data_format="channels_last", name="pool")(x)
    x = k.layers.Flatten(data_format="channels_last", name="flat")(x)
    return k.Model(inputs, k.layers.Dense(3, kernel_regularizer="l1", name="head")(x))


def _sequence_model(k):
    inputs = k.Input((5,), dtype="int32")
    x = k.layers.Embedding(9, 4, activity_regularizer="l2", name="embed")(inputs)
    x = k.layers.MultiHeadAttention(2, 2, output_shape=(4,), seed=3, name="attend")(x, x)
    x = k.layers.LayerNormalization(name="norm")(x)
    x = k.layers.Bidirectional(k.layers.LSTM(3, name="inner"), name="both")(x)
    return k.Model(inputs, k.layers.Dense(2, name="head")(x))


@pytest.mark.usefixtures("keras_draws_on_host")
@pytest.mark.parametrize("make", [_image_model, _sequence_model])
def test_keras_files_carry_the_configs_both_ways(make, tmp_path):
    """A model saved by kilnet opens in Keras, and Keras's opens in kilnet, with every layer's
    config Keras's."""
    ours, twin = make(kilnet), make(keras)
    ours.build(seed=0)
    ours.save(tmp_path / "kilnet.keras")
    twin.save(tmp_path / "keras.keras")
    theirs = keras.models.load_model(tmp_path / "kilnet.keras")
    mine = kilnet.models.load_model(tmp_path / "keras.keras")

    def config(model, name):
        # (a built Keras wrapper nests its inner layer's build_config; kilnet's does not)
        return json.dumps(json.loads(json.dumps(keras.saving.serialize_keras_object(
            model.get_layer(name).get_config())), object_hook=lambda entry: {
                key: value for key, value in entry.items() if key != "build_config"}))

    for layer in twin.layers[1:]:
        expected = config(twin, layer.name)
        assert config(theirs, layer.name) == expected, layer.name
        assert config(mine, layer.name) == expected, layer.name
