"""The spec table of the layer contract test: for every layer kilnet can save, how to make a
small one and what to feed it.

A spec's `make(ns)` builds the layer from a namespace, `kilnet.layers` or `keras.layers`, so
one line describes both the layer under test and the Keras layer it is compared with (same
arguments). Shapes are per sample (no batch axis); `call` says how several inputs are passed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str                       # the LAYER_TYPES key
    make: Callable                  # make(ns) -> layer, ns = kilnet.layers or keras.layers
    shapes: tuple                   # one per-sample shape per input
    call: str = "one"               # "one": layer(x); "list": layer([a, b]); "args": layer(a, b)
    dtype: str = "float32"          # of the inputs
    out_dtype: str = "float32"      # of the output
    keras: bool = True              # compare values with Keras (else `reference` must be set)
    reference: Callable | None = None   # reference(inputs, weights) -> NumPy output
    grad: bool = True               # finite-difference gradient check
    rtol: float = 1e-5
    atol: float = 1e-5
    # The per-sample sequence shape of the masking check, when it differs from shapes[0].
    mask_shape: tuple | None = None
    mask_make: Callable | None = None   # the layer of the masking check, when it differs
    no_mask_check: str = ""         # why the masking check does not apply, if it does not
    marks: tuple = ()               # pytest marks (xfail) for every check of this spec


def _registered(function):
    import kilnet   # the specs module is imported before the backend is chosen
    return kilnet.saving.register_serializable(package="Specs")(function)


def _scaled_softsign(x, scale=1.0):
    """A Lambda's function, registered so that its configuration names it."""
    return scale * x / (1.0 + abs(x))


def _integer_lookup_reference(inputs, weights):
    # vocabulary [2, 3, 5]: index 0 is the out-of-vocabulary bucket, then the vocabulary
    table = {2: 1, 3: 2, 5: 3}
    return np.vectorize(lambda v: table.get(int(v), 0))(inputs[0]).astype(np.int32)


def _hashed_crossing_reference(inputs, weights):
    # tf.sparse.cross_hashed: FingerprintCat64 of the key 0xDECAFCAFFE with each integer's
    # own 64 bits, modulo num_bins
    from kilnet.layers._hashed_crossing import fingerprint_cat64
    def cross(a, b):
        return fingerprint_cat64(fingerprint_cat64(0xDECAFCAFFE, int(a) % 2**64),
                                 int(b) % 2**64) % 5
    return np.vectorize(cross)(inputs[0], inputs[1]).astype(np.int32)


def _hashing_reference(inputs, weights):
    # Keras hashes an integer's decimal string with FarmHash64 (fingerprint64) and takes it
    # modulo num_bins; kilnet's fingerprint was checked against the pyfarmhash package.
    from kilnet.layers._fingerprints import fingerprint64
    return np.vectorize(lambda v: fingerprint64(str(int(v)).encode()) % 4)(
        inputs[0]).astype(np.int32)


def _keras_deterministic_crop(images, height, width):
    import keras  # the contract test has chosen the JAX backend before importing keras
    return np.asarray(keras.layers.RandomCrop(height, width)(images, training=True))


def _normalization_reference(inputs, weights):
    mean, variance = np.array([0.5, -1.0, 2.0]), np.array([4.0, 0.25, 1.0])
    return (inputs[0] - mean) / np.sqrt(variance)


SPECS = [
    # activations
    Spec("ReLU", lambda ns: ns.ReLU(max_value=1.5, negative_slope=0.1, threshold=0.3), [(5,)]),
    Spec("LeakyReLU", lambda ns: ns.LeakyReLU(negative_slope=0.2), [(5,)]),
    Spec("PReLU", lambda ns: ns.PReLU(alpha_initializer="glorot_uniform", shared_axes=[1]),
         [(3, 4)]),
    Spec("ELU", lambda ns: ns.ELU(alpha=0.5), [(5,)]),
    Spec("Softmax", lambda ns: ns.Softmax(axis=1), [(3, 4)],
         no_mask_check="a (batch, steps) sequence mask does not broadcast to (batch, steps, "
                       "features): refused, as Keras's Softmax refuses it "
                       "(tests/test_softmax_mask.py)"),
    Spec("Identity", lambda ns: ns.Identity(), [(4,)]),
    # regularization (random layers are compared in inference mode)
    Spec("SpatialDropout1D", lambda ns: ns.SpatialDropout1D(0.5), [(4, 3)]),
    Spec("SpatialDropout2D", lambda ns: ns.SpatialDropout2D(0.5), [(3, 3, 2)],
         no_mask_check="takes images, not (steps, features) sequences"),
    Spec("GaussianNoise", lambda ns: ns.GaussianNoise(0.3), [(4,)]),
    Spec("GaussianDropout", lambda ns: ns.GaussianDropout(0.3), [(4,)]),
    Spec("SpatialDropout3D", lambda ns: ns.SpatialDropout3D(0.5), [(2, 2, 3, 2)],
         no_mask_check="takes volumes, not (steps, features) sequences"),
    Spec("AlphaDropout", lambda ns: ns.AlphaDropout(0.3), [(4,)]),
    Spec("ActivityRegularization", lambda ns: ns.ActivityRegularization(l1=0.01, l2=0.01),
         [(4,)]),
    # core
    Spec("Masking", lambda ns: ns.Masking(mask_value=0.0), [(3, 2)]),
    Spec("Dense", lambda ns: ns.Dense(3, activation="tanh"), [(4,)]),
    Spec("Flatten", lambda ns: ns.Flatten(), [(2, 3)]),
    Spec("Reshape", lambda ns: ns.Reshape((3, 2)), [(6,)]),
    Spec("Activation", lambda ns: ns.Activation("softplus"), [(4,)]),
    Spec("Dropout", lambda ns: ns.Dropout(0.5), [(4,)]),
    # Keras keeps these three in its applications' modules (not keras.layers): NumPy decides.
    Spec("LayerScale", lambda ns: ns.LayerScale(0.5, 3), [(2, 3)], keras=False,
         reference=lambda xs, w: xs[0] * w[0]),
    Spec("StochasticDepth", lambda ns: ns.StochasticDepth(0.2), [(4,)], keras=False,
         reference=lambda xs, w: xs[0]),
    Spec("CustomScaleLayer", lambda ns: ns.CustomScaleLayer(0.17), [(3,), (3,)], call="list",
         keras=False, reference=lambda xs, w: xs[0] + xs[1] * np.float32(0.17)),
    Spec("Rescaling", lambda ns: ns.Rescaling(0.5, offset=0.1), [(4,)]),
    Spec("Embedding", lambda ns: ns.Embedding(7, 3, mask_zero=True), [(4,)], dtype="int32",
         grad=False, mask_shape=(4,)),
    Spec("ReversibleEmbedding", lambda ns: ns.ReversibleEmbedding(
        7, 3, tie_weights=False, mask_zero=True), [(4,)], dtype="int32", grad=False,
         mask_shape=(4,)),
    Spec("BatchNormalization", lambda ns: ns.BatchNormalization(), [(3,)]),
    # convolutions and pooling
    Spec("Conv1D", lambda ns: ns.Conv1D(2, 3, padding="same", activation="tanh"), [(5, 2)]),
    Spec("Conv2D", lambda ns: ns.Conv2D(2, (2, 3), strides=(1, 2), padding="same"),
         [(4, 5, 2)]),
    Spec("Conv3D", lambda ns: ns.Conv3D(2, 2), [(3, 3, 3, 1)]),
    Spec("Conv1DTranspose", lambda ns: ns.Conv1DTranspose(2, 3, strides=2), [(3, 2)]),
    Spec("Conv2DTranspose", lambda ns: ns.Conv2DTranspose(2, 3, strides=2), [(3, 3, 1)]),
    Spec("Conv3DTranspose", lambda ns: ns.Conv3DTranspose(2, 2, strides=(1, 2, 1),
                                                          padding="same"), [(2, 2, 3, 2)]),
    Spec("DepthwiseConv2D", lambda ns: ns.DepthwiseConv2D(3, depth_multiplier=2), [(4, 4, 2)]),
    Spec("SeparableConv2D", lambda ns: ns.SeparableConv2D(3, 2), [(4, 4, 2)]),
    Spec("DepthwiseConv1D", lambda ns: ns.DepthwiseConv1D(3, depth_multiplier=2,
                                                          padding="same"), [(6, 3)]),
    Spec("SeparableConv1D", lambda ns: ns.SeparableConv1D(4, 3, strides=2, depth_multiplier=2),
         [(7, 3)]),
    Spec("MaxPooling1D", lambda ns: ns.MaxPooling1D(2), [(6, 2)]),
    Spec("AveragePooling1D", lambda ns: ns.AveragePooling1D(3, strides=1, padding="same"),
         [(5, 2)]),
    Spec("MaxPooling2D", lambda ns: ns.MaxPooling2D(2), [(4, 4, 2)]),
    Spec("AveragePooling2D", lambda ns: ns.AveragePooling2D(2, padding="same"), [(5, 5, 1)]),
    Spec("MaxPooling3D", lambda ns: ns.MaxPooling3D(2), [(2, 2, 4, 1)]),
    Spec("AveragePooling3D", lambda ns: ns.AveragePooling3D(2), [(2, 2, 4, 1)]),
    Spec("GlobalAveragePooling1D", lambda ns: ns.GlobalAveragePooling1D(), [(4, 3)]),
    Spec("GlobalMaxPooling1D", lambda ns: ns.GlobalMaxPooling1D(), [(4, 3)]),
    Spec("GlobalAveragePooling2D", lambda ns: ns.GlobalAveragePooling2D(), [(3, 3, 2)]),
    Spec("GlobalMaxPooling2D", lambda ns: ns.GlobalMaxPooling2D(keepdims=True), [(3, 3, 2)]),
    Spec("GlobalAveragePooling3D", lambda ns: ns.GlobalAveragePooling3D(), [(2, 3, 4, 2)]),
    Spec("GlobalMaxPooling3D", lambda ns: ns.GlobalMaxPooling3D(keepdims=True), [(2, 3, 4, 2)]),
    Spec("AdaptiveAveragePooling1D", lambda ns: ns.AdaptiveAveragePooling1D(3), [(7, 2)]),
    Spec("AdaptiveAveragePooling2D", lambda ns: ns.AdaptiveAveragePooling2D((2, 3)),
         [(5, 4, 2)]),
    Spec("AdaptiveAveragePooling3D", lambda ns: ns.AdaptiveAveragePooling3D(2), [(3, 5, 4, 1)]),
    Spec("AdaptiveMaxPooling1D", lambda ns: ns.AdaptiveMaxPooling1D(3), [(7, 2)]),
    Spec("AdaptiveMaxPooling2D", lambda ns: ns.AdaptiveMaxPooling2D((3, 2)), [(5, 4, 2)]),
    Spec("AdaptiveMaxPooling3D", lambda ns: ns.AdaptiveMaxPooling3D((1, 2, 3)),
         [(3, 5, 4, 1)]),
    Spec("ZeroPadding3D", lambda ns: ns.ZeroPadding3D(((1, 0), (0, 2), (1, 1))), [(2, 3, 2, 2)]),
    Spec("Cropping3D", lambda ns: ns.Cropping3D(((1, 0), (0, 1), (1, 1))), [(3, 3, 4, 2)]),
    Spec("UpSampling3D", lambda ns: ns.UpSampling3D((1, 2, 3)), [(2, 2, 2, 2)]),
    # merging
    Spec("Add", lambda ns: ns.Add(), [(3,), (3,), (3,)], call="list"),
    Spec("Subtract", lambda ns: ns.Subtract(), [(3,), (3,)], call="list"),
    Spec("Multiply", lambda ns: ns.Multiply(), [(3,), (3,)], call="list"),
    Spec("Average", lambda ns: ns.Average(), [(3,), (3,)], call="list"),
    Spec("Maximum", lambda ns: ns.Maximum(), [(3,), (3,)], call="list"),
    Spec("Minimum", lambda ns: ns.Minimum(), [(3,), (3,)], call="list"),
    Spec("Concatenate", lambda ns: ns.Concatenate(axis=-1), [(2, 3), (2, 2)], call="list"),
    Spec("Dot", lambda ns: ns.Dot(axes=1, normalize=True), [(3,), (3,)], call="list"),
    # reshaping
    Spec("Permute", lambda ns: ns.Permute((2, 1)), [(2, 3)]),
    Spec("RepeatVector", lambda ns: ns.RepeatVector(3), [(2,)]),
    Spec("UpSampling1D", lambda ns: ns.UpSampling1D(2), [(3, 2)]),
    Spec("UpSampling2D", lambda ns: ns.UpSampling2D((2, 2)), [(2, 2, 1)]),
    Spec("ZeroPadding1D", lambda ns: ns.ZeroPadding1D(1), [(3, 2)]),
    Spec("ZeroPadding2D", lambda ns: ns.ZeroPadding2D((1, 2)), [(2, 2, 1)]),
    Spec("Cropping1D", lambda ns: ns.Cropping1D((1, 1)), [(4, 2)]),
    Spec("Cropping2D", lambda ns: ns.Cropping2D(((1, 0), (0, 1))), [(3, 3, 1)]),
    # attention and normalization
    Spec("MultiHeadAttention", lambda ns: ns.MultiHeadAttention(num_heads=2, key_dim=2),
         [(3, 4), (2, 4)], call="args", rtol=1e-4),
    Spec("GroupQueryAttention", lambda ns: ns.GroupQueryAttention(
        head_dim=2, num_query_heads=4, num_key_value_heads=2), [(3, 4), (2, 4)], call="args",
         rtol=1e-4),
    Spec("Attention", lambda ns: ns.Attention(use_scale=True), [(3, 4), (2, 4)], call="list"),
    Spec("AdditiveAttention", lambda ns: ns.AdditiveAttention(), [(3, 4), (2, 4)],
         call="list"),
    Spec("LayerNormalization", lambda ns: ns.LayerNormalization(), [(3, 4)]),
    Spec("GroupNormalization", lambda ns: ns.GroupNormalization(groups=2), [(3, 4)],
         no_mask_check="its statistics span the steps, masked ones too, as in Keras"),
    Spec("UnitNormalization", lambda ns: ns.UnitNormalization(), [(4,)]),
    Spec("RMSNormalization", lambda ns: ns.RMSNormalization(), [(3, 4)]),
    Spec("EinsumDense", lambda ns: ns.EinsumDense("abc,cde->abde", output_shape=(None, 2, 3),
                                                  bias_axes="de", activation="tanh"),
         [(3, 4)]),
    # preprocessing and augmentation (augmentation is the identity at inference)
    Spec("Normalization", lambda ns: ns.Normalization(mean=[0.5, -1.0, 2.0],
                                                      variance=[4.0, 0.25, 1.0]), [(3,)],
         reference=_normalization_reference),
    Spec("Resizing", lambda ns: ns.Resizing(4, 6), [(3, 3, 1)]),
    Spec("CategoryEncoding", lambda ns: ns.CategoryEncoding(8, output_mode="count"), [(3,)],
         dtype="int32", grad=False, no_mask_check="counts the ids of a whole sample"),
    Spec("Discretization", lambda ns: ns.Discretization(bin_boundaries=[0.0, 0.5]), [(4,)],
         out_dtype="int32", grad=False, no_mask_check="gives bin ids, not features"),
    # Keras runs these two with TensorFlow (not installed): compared with NumPy references
    Spec("IntegerLookup", lambda ns: ns.IntegerLookup(vocabulary=[2, 3, 5]), [(4,)],
         dtype="int32", out_dtype="int32", keras=False, reference=_integer_lookup_reference,
         grad=False, no_mask_check="gives ids, not features"),
    Spec("Hashing", lambda ns: ns.Hashing(num_bins=4), [(4,)], dtype="int32",
         out_dtype="int32", keras=False, reference=_hashing_reference, grad=False,
         no_mask_check="gives bin ids, not features"),
    # Keras's HashedCrossing needs TensorFlow: checked against it in test_gqa_and_augmentation
    Spec("HashedCrossing", lambda ns: ns.HashedCrossing(num_bins=5), [(1,), (1,)],
         call="list", dtype="int32", out_dtype="int32", keras=False,
         reference=_hashed_crossing_reference, grad=False,
         no_mask_check="gives bin ids, not features"),
    Spec("Operation", lambda ns: ns.Operation("Greater"), [(3, 2), (3, 2)], call="args",
         out_dtype="bool", keras=False, grad=False,
         reference=lambda inputs, weights: np.greater(inputs[0], inputs[1]),
         no_mask_check="a graph node of Keras's files; it computes masks, passes none on"),
    Spec("Lambda", lambda ns: ns.Lambda(_registered(_scaled_softsign),
                                         arguments={"scale": 2.0}), [(3, 2)], keras=False,
         reference=lambda inputs, weights: 2.0 * inputs[0] / (1.0 + np.abs(inputs[0])),
         no_mask_check="passes no mask on unless given mask= (as Keras's)"),
    Spec("CenterCrop", lambda ns: ns.CenterCrop(2, 2), [(3, 4, 1)]),
    Spec("RandomFlip", lambda ns: ns.RandomFlip(), [(4, 4, 1)]),
    Spec("RandomRotation", lambda ns: ns.RandomRotation(0.1), [(4, 4, 1)]),
    Spec("RandomZoom", lambda ns: ns.RandomZoom(0.1), [(4, 4, 1)]),
    Spec("RandomTranslation", lambda ns: ns.RandomTranslation(0.1, 0.1), [(4, 4, 1)]),
    Spec("RandomContrast", lambda ns: ns.RandomContrast(0.2), [(4, 4, 1)]),
    Spec("RandomBrightness", lambda ns: ns.RandomBrightness(0.2), [(4, 4, 1)]),
    # Keras 3.15's RandomCrop passes images through at inference (keras-team/keras#21868);
    # the reference is Keras's deterministic crop, which it applies in training to images not
    # larger than the target (here 3 rows for 4: a window cut short, then resized).
    Spec("RandomCrop", lambda ns: ns.RandomCrop(4, 4), [(3, 5, 1)], keras=False,
         reference=lambda inputs, weights: _keras_deterministic_crop(inputs[0], 4, 4)),
    # Keras 3's newer augmentation layers: identity at inference, except AutoContrast
    Spec("RandomGrayscale", lambda ns: ns.RandomGrayscale(0.7), [(4, 4, 3)]),
    Spec("RandomHue", lambda ns: ns.RandomHue(0.3), [(4, 4, 3)]),
    Spec("RandomSaturation", lambda ns: ns.RandomSaturation(0.3), [(4, 4, 3)]),
    Spec("RandomColorDegeneration", lambda ns: ns.RandomColorDegeneration(0.3), [(4, 4, 3)]),
    Spec("RandomColorJitter", lambda ns: ns.RandomColorJitter(
        brightness_factor=0.2, contrast_factor=0.2, saturation_factor=0.3, hue_factor=0.1),
        [(4, 4, 3)]),
    Spec("RandomInvert", lambda ns: ns.RandomInvert(0.5), [(4, 4, 1)]),
    Spec("RandomPosterization", lambda ns: ns.RandomPosterization(4), [(4, 4, 1)]),
    Spec("Solarization", lambda ns: ns.Solarization(0.1, 0.5), [(4, 4, 1)]),
    Spec("AutoContrast", lambda ns: ns.AutoContrast(value_range=(-2, 2)), [(4, 4, 2)]),
    Spec("RandomSharpness", lambda ns: ns.RandomSharpness(0.4), [(4, 4, 1)]),
    Spec("RandomGaussianBlur", lambda ns: ns.RandomGaussianBlur(sigma=0.5), [(4, 4, 1)]),
    # Keras 3.15's Equalization cannot sit in a functional model (its compute_output_spec
    # returns its input: "part of a cycle"); at inference it passes images through
    Spec("Equalization", lambda ns: ns.Equalization(bins=16), [(4, 4, 1)], keras=False,
         reference=lambda inputs, weights: inputs[0]),
    Spec("MixUp", lambda ns: ns.MixUp(alpha=0.4), [(4, 4, 1)]),
    Spec("CutMix", lambda ns: ns.CutMix(0.5), [(4, 4, 1)]),
    Spec("RandomShear", lambda ns: ns.RandomShear(0.2, 0.1), [(4, 4, 1)]),
    Spec("RandomErasing", lambda ns: ns.RandomErasing(scale=0.2), [(4, 4, 1)]),
    Spec("RandAugment", lambda ns: ns.RandAugment(num_ops=1, factor=0.3), [(4, 4, 3)]),
    Spec("RandomPerspective", lambda ns: ns.RandomPerspective(scale=0.4), [(4, 4, 1)]),
    Spec("RandomElasticTransform", lambda ns: ns.RandomElasticTransform(scale=0.5),
         [(4, 4, 1)]),
    Spec("AugMix", lambda ns: ns.AugMix(num_chains=1, chain_depth=1), [(4, 4, 3)]),
    Spec("Pipeline", lambda ns: ns.Pipeline([ns.RandomFlip(), ns.AutoContrast((-2, 2))]),
         [(4, 4, 2)]),
    # recurrent and wrappers
    Spec("SimpleRNN", lambda ns: ns.SimpleRNN(3), [(4, 2)]),
    Spec("LSTM", lambda ns: ns.LSTM(2, return_sequences=True), [(3, 2)]),
    Spec("GRU", lambda ns: ns.GRU(2), [(3, 2)]),
    Spec("Bidirectional", lambda ns: ns.Bidirectional(ns.LSTM(2)), [(3, 2)]),
    Spec("RNN", lambda ns: ns.RNN([ns.GRUCell(2), ns.LSTMCell(3)], return_sequences=True),
         [(3, 2)]),
    # Keras 3.15's ConvLSTM fails on any mask under JAX: kilnet's masking is checked against
    # the unpadded prefix (test_masked_steps_change_nothing) and in tests/test_conv_lstm.py.
    Spec("ConvLSTM1D", lambda ns: ns.ConvLSTM1D(2, 2, padding="same", return_sequences=True),
         [(3, 4, 2)], mask_shape=(4, 3, 2),
         mask_make=lambda ns: ns.ConvLSTM1D(2, 2, padding="same")),
    Spec("ConvLSTM2D", lambda ns: ns.ConvLSTM2D(2, 2, strides=(1, 2)), [(3, 3, 4, 1)],
         mask_shape=(4, 3, 3, 1)),
    Spec("ConvLSTM3D", lambda ns: ns.ConvLSTM3D(1, 2, padding="same", return_sequences=True),
         [(2, 2, 2, 2, 1)], mask_shape=(4, 2, 2, 2, 1),
         mask_make=lambda ns: ns.ConvLSTM3D(1, 2, padding="same")),
    Spec("TimeDistributed", lambda ns: ns.TimeDistributed(ns.Dense(2)), [(3, 4)]),
    Spec("SpectralNormalization", lambda ns: ns.SpectralNormalization(ns.Dense(3)), [(4,)]),
    # audio (tests/test_audio.py compares more arguments with Keras)
    Spec("STFTSpectrogram", lambda ns: ns.STFTSpectrogram(frame_length=8, frame_step=4),
         [(24, 2)]),
    Spec("MelSpectrogram", lambda ns: ns.MelSpectrogram(fft_length=16, sequence_stride=8,
                                                        num_mel_bins=4, sampling_rate=800),
         [(48,)], rtol=1e-4, atol=1e-4),
]
