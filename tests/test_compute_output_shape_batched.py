"""`layer.compute_output_shape(input_shape)` in Keras's form: the shape with its batch axis
first (`(None, 8, 8, 1)`), answered with the batch axis, for every built-in layer, as Keras's
layers answer it (a layer of yours often answers with `self.conv.compute_output_shape(s)`
of a sub-layer). Each exported layer class is compared with Keras's on the same shapes, the
batch axis unknown and of a known size."""

from __future__ import annotations

import inspect
import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

SEQ, IMG, VOL = (7, 3), (8, 8, 3), (4, 4, 4, 3)

# (label, make(lib) -> layer, per-sample input shapes (several for a layer taking several
# shapes), keyword arguments of compute_output_shape)
CASES = [
    ("ELU", lambda L: L.ELU(), [SEQ]),
    ("Identity", lambda L: L.Identity(), [SEQ]),
    ("LeakyReLU", lambda L: L.LeakyReLU(), [SEQ]),
    ("PReLU", lambda L: L.PReLU(), [SEQ]),
    ("ReLU", lambda L: L.ReLU(), [SEQ]),
    ("Softmax", lambda L: L.Softmax(), [SEQ]),
    ("ActivityRegularization", lambda L: L.ActivityRegularization(), [SEQ]),
    ("AlphaDropout", lambda L: L.AlphaDropout(0.5), [SEQ]),
    ("GaussianDropout", lambda L: L.GaussianDropout(0.5), [SEQ]),
    ("GaussianNoise", lambda L: L.GaussianNoise(0.1), [SEQ]),
    ("SpatialDropout1D", lambda L: L.SpatialDropout1D(0.5), [SEQ]),
    ("SpatialDropout2D", lambda L: L.SpatialDropout2D(0.5), [IMG]),
    ("SpatialDropout3D", lambda L: L.SpatialDropout3D(0.5), [VOL]),
    ("Masking", lambda L: L.Masking(), [SEQ]),
    ("Activation", lambda L: L.Activation("relu"), [SEQ]),
    ("AveragePooling2D", lambda L: L.AveragePooling2D(2), [IMG]),
    ("AvgPool2D", lambda L: L.AvgPool2D(2), [IMG]),
    ("BatchNormalization", lambda L: L.BatchNormalization(), [SEQ]),
    ("Conv2D", lambda L: L.Conv2D(4, 3), [IMG]),
    ("Conv2D-same-strided", lambda L: L.Conv2D(4, 3, strides=2, padding="same"), [IMG]),
    ("Convolution2D", lambda L: L.Convolution2D(4, 3), [(8, 8, 1)]),
    ("Dense", lambda L: L.Dense(4), [(5,)]),
    ("Dense-sequence", lambda L: L.Dense(4), [SEQ]),
    ("Dropout", lambda L: L.Dropout(0.5), [SEQ]),
    ("Flatten", lambda L: L.Flatten(), [IMG]),
    ("GlobalAveragePooling2D", lambda L: L.GlobalAveragePooling2D(), [IMG]),
    ("GlobalAveragePooling2D-keepdims",
     lambda L: L.GlobalAveragePooling2D(keepdims=True), [IMG]),
    ("GlobalAvgPool2D", lambda L: L.GlobalAvgPool2D(), [IMG]),
    ("MaxPooling2D", lambda L: L.MaxPooling2D(), [IMG]),
    ("MaxPool2D", lambda L: L.MaxPool2D(), [IMG]),
    ("Rescaling", lambda L: L.Rescaling(1 / 255), [IMG]),
    ("Reshape", lambda L: L.Reshape((64,)), [(8, 8, 1)]),
    ("Reshape-unknown-axis", lambda L: L.Reshape((-1, 2)), [(8, 8, 1)]),
    ("AveragePooling1D", lambda L: L.AveragePooling1D(2), [(8, 3)]),
    ("AvgPool1D", lambda L: L.AvgPool1D(2), [(8, 3)]),
    ("Conv1D", lambda L: L.Conv1D(4, 3), [(8, 3)]),
    ("Convolution1D", lambda L: L.Convolution1D(4, 3), [(8, 3)]),
    ("Conv2DTranspose", lambda L: L.Conv2DTranspose(4, 3, strides=2), [IMG]),
    ("Convolution2DTranspose", lambda L: L.Convolution2DTranspose(4, 3), [IMG]),
    ("Embedding", lambda L: L.Embedding(10, 4), [(7,)]),
    ("GlobalAveragePooling1D", lambda L: L.GlobalAveragePooling1D(), [SEQ]),
    ("GlobalAvgPool1D", lambda L: L.GlobalAvgPool1D(), [SEQ]),
    ("GlobalMaxPooling1D", lambda L: L.GlobalMaxPooling1D(), [SEQ]),
    ("GlobalMaxPool1D", lambda L: L.GlobalMaxPool1D(), [SEQ]),
    ("GlobalMaxPooling2D", lambda L: L.GlobalMaxPooling2D(), [IMG]),
    ("GlobalMaxPool2D", lambda L: L.GlobalMaxPool2D(), [IMG]),
    ("MaxPooling1D", lambda L: L.MaxPooling1D(), [(8, 3)]),
    ("MaxPool1D", lambda L: L.MaxPool1D(), [(8, 3)]),
    ("Add", lambda L: L.Add(), [[(5,), (5,)]]),
    ("Average", lambda L: L.Average(), [[(5,), (5,)]]),
    ("Concatenate", lambda L: L.Concatenate(), [[(5,), (3,)]]),
    ("Dot", lambda L: L.Dot(axes=1), [[(5,), (5,)]]),
    ("Maximum", lambda L: L.Maximum(), [[(5,), (5,)]]),
    ("Minimum", lambda L: L.Minimum(), [[(5,), (5,)]]),
    ("Multiply", lambda L: L.Multiply(), [[(5,), (5,)]]),
    ("Subtract", lambda L: L.Subtract(), [[(5,), (5,)]]),
    ("Cropping1D", lambda L: L.Cropping1D(1), [(8, 3)]),
    ("Cropping2D", lambda L: L.Cropping2D(1), [IMG]),
    ("Cropping3D", lambda L: L.Cropping3D(1), [VOL]),
    ("Permute", lambda L: L.Permute((2, 1)), [SEQ]),
    ("RepeatVector", lambda L: L.RepeatVector(3), [(5,)]),
    ("UpSampling1D", lambda L: L.UpSampling1D(), [SEQ]),
    ("UpSampling2D", lambda L: L.UpSampling2D(), [IMG]),
    ("UpSampling3D", lambda L: L.UpSampling3D(), [VOL]),
    ("ZeroPadding1D", lambda L: L.ZeroPadding1D(), [SEQ]),
    ("ZeroPadding2D", lambda L: L.ZeroPadding2D(), [IMG]),
    ("ZeroPadding3D", lambda L: L.ZeroPadding3D(), [VOL]),
    ("GlobalAveragePooling3D", lambda L: L.GlobalAveragePooling3D(), [VOL]),
    ("GlobalAvgPool3D", lambda L: L.GlobalAvgPool3D(), [VOL]),
    ("GlobalMaxPooling3D", lambda L: L.GlobalMaxPooling3D(), [VOL]),
    ("GlobalMaxPool3D", lambda L: L.GlobalMaxPool3D(), [VOL]),
    ("AdditiveAttention", lambda L: L.AdditiveAttention(), [[(5, 3), (6, 3)]]),
    ("Attention", lambda L: L.Attention(), [[(5, 3), (6, 3)]]),
    ("GroupNormalization", lambda L: L.GroupNormalization(groups=3), [(8, 6)]),
    ("LayerNormalization", lambda L: L.LayerNormalization(), [SEQ]),
    ("RMSNormalization", lambda L: L.RMSNormalization(), [SEQ]),
    ("UnitNormalization", lambda L: L.UnitNormalization(), [SEQ]),
    ("MultiHeadAttention", lambda L: L.MultiHeadAttention(2, 4), [(5, 3), (6, 3)]),
    ("MultiHeadAttention-key", lambda L: L.MultiHeadAttention(2, 4, output_shape=8),
     [(5, 3), (6, 3), (6, 2)]),
    ("GroupQueryAttention",
     lambda L: L.GroupQueryAttention(head_dim=4, num_query_heads=2, num_key_value_heads=1),
     [(5, 3), (6, 3)]),
    ("CenterCrop", lambda L: L.CenterCrop(4, 4), [IMG]),
    ("Normalization", lambda L: L.Normalization(), [SEQ]),
    ("RandomBrightness", lambda L: L.RandomBrightness(0.1), [IMG]),
    ("RandomContrast", lambda L: L.RandomContrast(0.1), [IMG]),
    ("RandomCrop", lambda L: L.RandomCrop(4, 4), [IMG]),
    ("RandomFlip", lambda L: L.RandomFlip(), [IMG]),
    ("RandomRotation", lambda L: L.RandomRotation(0.1), [IMG]),
    ("RandomTranslation", lambda L: L.RandomTranslation(0.1, 0.1), [IMG]),
    ("RandomZoom", lambda L: L.RandomZoom(0.1), [IMG]),
    ("Resizing", lambda L: L.Resizing(4, 6), [IMG]),
    ("AutoContrast", lambda L: L.AutoContrast(), [IMG]),
    ("CutMix", lambda L: L.CutMix(), [IMG]),
    ("Equalization", lambda L: L.Equalization(), [IMG]),
    ("MixUp", lambda L: L.MixUp(), [IMG]),
    ("RandomColorDegeneration", lambda L: L.RandomColorDegeneration(0.5), [IMG]),
    ("RandomColorJitter", lambda L: L.RandomColorJitter(), [IMG]),
    ("RandomGaussianBlur", lambda L: L.RandomGaussianBlur(), [IMG]),
    ("RandomGrayscale", lambda L: L.RandomGrayscale(), [IMG]),
    ("RandomHue", lambda L: L.RandomHue(0.5), [IMG]),
    ("RandomInvert", lambda L: L.RandomInvert(), [IMG]),
    ("RandomPosterization", lambda L: L.RandomPosterization(4), [IMG]),
    ("RandomSaturation", lambda L: L.RandomSaturation(0.5), [IMG]),
    ("RandomSharpness", lambda L: L.RandomSharpness(0.5), [IMG]),
    ("Solarization", lambda L: L.Solarization(), [IMG]),
    ("RandomShear", lambda L: L.RandomShear(0.1), [IMG]),
    ("RandomErasing", lambda L: L.RandomErasing(), [IMG]),
    ("RandAugment", lambda L: L.RandAugment(), [IMG]),
    ("Pipeline", lambda L: L.Pipeline([L.RandomFlip(), L.Resizing(4, 4)]), [IMG]),
    ("RandomPerspective", lambda L: L.RandomPerspective(), [IMG]),
    ("RandomElasticTransform", lambda L: L.RandomElasticTransform(), [IMG]),
    ("AugMix", lambda L: L.AugMix(), [IMG]),
    ("Bidirectional", lambda L: L.Bidirectional(L.LSTM(4)), [SEQ]),
    ("Bidirectional-sequences",
     lambda L: L.Bidirectional(L.GRU(4, return_sequences=True)), [SEQ]),
    ("GRU", lambda L: L.GRU(4), [SEQ]),
    ("LSTM", lambda L: L.LSTM(4), [SEQ]),
    ("LSTM-sequences", lambda L: L.LSTM(4, return_sequences=True), [SEQ]),
    ("LSTM-states", lambda L: L.LSTM(4, return_state=True), [SEQ]),
    ("SimpleRNN", lambda L: L.SimpleRNN(4), [SEQ]),
    ("RNN", lambda L: L.RNN(L.LSTMCell(4)), [SEQ]),
    ("RNN-stacked", lambda L: L.RNN([L.GRUCell(4), L.SimpleRNNCell(2)],
                                    return_sequences=True), [SEQ]),
    ("TimeDistributed", lambda L: L.TimeDistributed(L.Dense(4)), [SEQ]),
    ("TimeDistributed-conv", lambda L: L.TimeDistributed(L.Conv2D(4, 3)), [(5, 8, 8, 3)]),
    ("SpectralNormalization", lambda L: L.SpectralNormalization(L.Dense(4)), [(5,)]),
    ("ReversibleEmbedding", lambda L: L.ReversibleEmbedding(10, 4), [(7,)]),
    ("AdaptiveAveragePooling1D", lambda L: L.AdaptiveAveragePooling1D(4), [(8, 3)]),
    ("AdaptiveAveragePooling2D", lambda L: L.AdaptiveAveragePooling2D((4, 2)), [IMG]),
    ("AdaptiveAveragePooling3D", lambda L: L.AdaptiveAveragePooling3D(2), [VOL]),
    ("AdaptiveMaxPooling1D", lambda L: L.AdaptiveMaxPooling1D(4), [(8, 3)]),
    ("AdaptiveMaxPooling2D", lambda L: L.AdaptiveMaxPooling2D((4, 2)), [IMG]),
    ("AdaptiveMaxPooling3D", lambda L: L.AdaptiveMaxPooling3D(2), [VOL]),
    ("AveragePooling3D", lambda L: L.AveragePooling3D(2), [VOL]),
    ("AvgPool3D", lambda L: L.AvgPool3D(2), [VOL]),
    ("MaxPooling3D", lambda L: L.MaxPooling3D(), [VOL]),
    ("MaxPool3D", lambda L: L.MaxPool3D(), [VOL]),
    ("Conv1DTranspose", lambda L: L.Conv1DTranspose(4, 3), [(8, 3)]),
    ("Convolution1DTranspose", lambda L: L.Convolution1DTranspose(4, 3), [(8, 3)]),
    ("Conv3D", lambda L: L.Conv3D(4, 3), [VOL]),
    ("Convolution3D", lambda L: L.Convolution3D(4, 3), [VOL]),
    ("Conv3DTranspose", lambda L: L.Conv3DTranspose(4, 3), [VOL]),
    ("Convolution3DTranspose", lambda L: L.Convolution3DTranspose(4, 3), [VOL]),
    ("DepthwiseConv1D", lambda L: L.DepthwiseConv1D(3), [(8, 3)]),
    ("DepthwiseConv2D", lambda L: L.DepthwiseConv2D(3), [IMG]),
    ("SeparableConv1D", lambda L: L.SeparableConv1D(4, 3), [(8, 3)]),
    ("SeparableConvolution1D", lambda L: L.SeparableConvolution1D(4, 3), [(8, 3)]),
    ("SeparableConv2D", lambda L: L.SeparableConv2D(4, 3), [IMG]),
    ("SeparableConvolution2D", lambda L: L.SeparableConvolution2D(4, 3), [IMG]),
    ("ConvLSTM1D", lambda L: L.ConvLSTM1D(4, 3), [(5, 8, 3)]),
    ("ConvLSTM2D", lambda L: L.ConvLSTM2D(4, 3, return_sequences=True), [(5, 8, 8, 3)]),
    ("ConvLSTM3D", lambda L: L.ConvLSTM3D(4, 3), [(3,) + VOL]),
    ("CategoryEncoding", lambda L: L.CategoryEncoding(5, output_mode="multi_hot"), [(3,)]),
    ("Discretization", lambda L: L.Discretization(bin_boundaries=[0.0, 1.0]), [(3,)]),
    ("Hashing", lambda L: L.Hashing(5), [(3,)]),
    ("IntegerLookup", lambda L: L.IntegerLookup(vocabulary=[1, 2, 3]), [(3,)]),
    ("StringLookup", lambda L: L.StringLookup(vocabulary=["a", "b"]), [(3,)]),
    ("StringLookup-counts",
     lambda L: L.StringLookup(vocabulary=["a", "b"], output_mode="count"), [(5,)]),
    ("TextVectorization",
     lambda L: L.TextVectorization(vocabulary=["a", "b"], output_sequence_length=4), [()]),
    ("EinsumDense", lambda L: L.EinsumDense("ab,bc->ac", output_shape=4), [(5,)]),
    ("EinsumDense-sequence",
     lambda L: L.EinsumDense("abc,cd->abd", output_shape=(None, 4)), [SEQ]),
    ("MelSpectrogram", lambda L: L.MelSpectrogram(), [(16000,)]),
    ("STFTSpectrogram", lambda L: L.STFTSpectrogram(), [(1000, 1)]),
]

# Where Keras gives no answer to compare with, Keras's rule written out: its Pipeline has no
# compute_output_shape, and its string and hashing layers need TensorFlow to be made (their
# compute_output_shape keeps the input's shape, or puts the vocabulary's size, 3 here, last;
# TextVectorization gives (batch, output_sequence_length)).
WITHOUT_KERAS = {
    "Pipeline": lambda batch: (batch, 4, 4, 3),
    "Hashing": lambda batch: (batch, 3),
    "IntegerLookup": lambda batch: (batch, 3),
    "StringLookup": lambda batch: (batch, 3),
    "StringLookup-counts": lambda batch: (batch, 3),
    "TextVectorization": lambda batch: (batch, 4),
}
# Where kilnet's answer knows more than Keras's: EinsumDense given output_shape=(None, 4)
# has the input's 7 steps on its second axis (its outputs have them), where Keras's
# compute_output_shape says None.
KNOWN = {"EinsumDense-sequence": lambda batch: (batch, 7, 4)}


def batched(shapes, batch):
    """The per-sample shapes with the batch axis put first, in the structure given."""
    if isinstance(shapes, list):
        return [batched(s, batch) for s in shapes]
    return (batch,) + tuple(shapes)


def plain(shape):
    """A shape (or a list / tuple of shapes) as nested tuples of ints and Nones."""
    if isinstance(shape, (list, tuple)) and shape and isinstance(
            shape[0], (list, tuple)):
        return [plain(s) for s in shape]
    return tuple(None if d is None else int(d) for d in shape)


@pytest.mark.parametrize("batch", [None, 4])
@pytest.mark.parametrize("label, make, shapes", CASES, ids=[c[0] for c in CASES])
def test_compute_output_shape_takes_and_gives_the_batch_axis_as_keras(label, make, shapes,
                                                                      batch):
    keras.utils.clear_session()
    given = [batched(s, batch) for s in shapes]
    if label in WITHOUT_KERAS:
        expected = WITHOUT_KERAS[label](batch)
    elif label in KNOWN:
        expected = KNOWN[label](batch)
    else:
        expected = plain(make(keras.layers).compute_output_shape(*given))
    assert plain(make(kilnet.layers).compute_output_shape(*given)) == expected


def test_every_exported_layer_class_is_compared():
    """A layer class kilnet exports with Keras's name is in CASES (or is a base class)."""
    bases = {"Layer", "InputLayer", "Wrapper", "RNN", "GRUCell", "LSTMCell",
             "SimpleRNNCell", "StackedRNNCells", "HashedCrossing", "Lambda"}
    covered = {label.split("-")[0] for label, _, _ in CASES}
    exported = {name for name in kilnet.layers.__all__
                if inspect.isclass(getattr(kilnet.layers, name))
                and issubclass(getattr(kilnet.layers, name), kilnet.layers.Layer)
                and hasattr(keras.layers, name)}
    assert sorted(exported - covered - bases) == []


@pytest.mark.parametrize("layer", ["MultiHeadAttention", "GroupQueryAttention"])
def test_attention_takes_keras_argument_names(layer):
    def make(lib):
        if layer == "MultiHeadAttention":
            return lib.layers.MultiHeadAttention(2, 4, output_shape=6)
        return lib.layers.GroupQueryAttention(4, 2, 1)

    value_features = 2 if layer == "MultiHeadAttention" else 8   # GQA: the query's, as Keras
    shapes = dict(query_shape=(3, 5, 8), value_shape=(3, 6, value_features),
                  key_shape=(3, 6, 4))
    assert (plain(make(kilnet).compute_output_shape(**shapes))
            == plain(make(keras).compute_output_shape(**shapes)))


def test_a_shape_without_its_batch_axis_is_refused_clearly():
    with pytest.raises(ValueError, match=r"batch axis first.*\(None, 8, 8, 3\).*"
                                         r"Received: input_shape=\(\)"):
        kilnet.layers.Dense(2).compute_output_shape(())


def test_a_layer_of_yours_answering_with_a_sub_layers_shape():
    """keras.io's pattern: compute_output_shape of yours answers with a sub-layer's, in
    Keras's form; kilnet's functional graph and summary read your answer so."""
    def make(lib):
        class Block(lib.layers.Layer):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.conv = lib.layers.Conv2D(4, 3, strides=2, padding="same", name="conv")

            def call(self, x):
                return self.conv(x)

            def compute_output_shape(self, input_shape):
                return self.conv.compute_output_shape(input_shape)

        inputs = lib.Input((8, 8, 3))
        block = Block(name="block")
        return block, lib.Model(inputs, lib.layers.Flatten()(block(inputs)))

    (ours, our_model), (theirs, their_model) = make(kilnet), make(keras)
    assert ours.compute_output_shape((None, 8, 8, 3)) == (None, 4, 4, 4)
    assert (plain(ours.compute_output_shape((2, 8, 8, 3)))
            == plain(theirs.compute_output_shape((2, 8, 8, 3))))
    assert tuple(our_model.output_shape) == tuple(their_model.output_shape) == (None, 64)
    x = np.ones((2, 8, 8, 3), np.float32)
    assert our_model.predict(x, verbose=0).shape == (2, 64)


def test_a_built_in_layers_subclass_of_yours_answering_through_super():
    """`super().compute_output_shape(s)` from your override reaches the built-in rule (in
    Keras's form), and kilnet's graph reads your answer."""
    def make(lib):
        class Doubled(lib.layers.Dense):
            def call(self, x):
                return lib.ops.concatenate([super().call(x), super().call(x)], axis=-1)

            def compute_output_shape(self, input_shape):
                shape = super().compute_output_shape(input_shape)
                return shape[:-1] + (2 * shape[-1],)

        inputs = lib.Input((5,))
        return lib.Model(inputs, Doubled(3, name="doubled")(inputs))

    ours, theirs = make(kilnet), make(keras)
    for shape in [(None, 5), (4, 5)]:
        assert (ours.layers[-1].compute_output_shape(shape)
                == theirs.layers[-1].compute_output_shape(shape) == (shape[0], 6))
    assert tuple(ours.output_shape) == tuple(theirs.output_shape) == (None, 6)
    assert ours.predict(np.ones((2, 5), np.float32), verbose=0).shape == (2, 6)


def models(lib):
    lib.utils.clear_session()
    inputs = lib.Input((8, 8, 3))
    flat, pooled = lib.layers.Flatten()(inputs), lib.layers.GlobalAveragePooling2D()(inputs)
    return {
        "functional": lib.Model(inputs, lib.layers.Flatten()(lib.layers.Conv2D(2, 3)(inputs))),
        "list": lib.Model(inputs, [flat, pooled]),
        "dict": lib.Model(inputs, {"a": flat, "b": pooled}),
        "sequential": lib.Sequential([lib.Input((5,)), lib.layers.Dense(3),
                                      lib.layers.Dense(2)]),
        "sequential-unbuilt": lib.Sequential([lib.layers.Dense(3)]),
    }


@pytest.mark.parametrize("batch", [None, 4])
def test_models_answer_as_keras(batch):
    ours, theirs = models(kilnet), models(keras)
    for name, model in ours.items():
        shape = (batch, 5) if name.startswith("sequential") else (batch, 8, 8, 3)
        got, expected = model.compute_output_shape(shape), theirs[name].compute_output_shape(shape)
        assert type(got) is type(expected), name
        assert plain(got if not isinstance(got, dict) else list(got.values())) == plain(
            expected if not isinstance(expected, dict) else list(expected.values())), name
        if isinstance(got, dict):
            assert list(got) == list(expected), name


def test_the_graph_reads_your_answer_in_keras_form():
    """A built layer of yours called again on symbolic tensors: its output shape is your
    compute_output_shape's answer, given the batch axis first, as Keras asks it."""
    def make(lib):
        class Twice(lib.layers.Layer):
            def call(self, x):
                return lib.ops.concatenate([x, x], axis=-1)

            def compute_output_shape(self, input_shape):
                return (input_shape[0], 2 * input_shape[-1])

        twice = Twice(name="twice")
        first, second = lib.Input((5,)), lib.Input((3,))
        twice(np.ones((2, 5), np.float32))   # built by a call on arrays
        return twice, lib.Model([first, second], twice(second))

    (_, ours), (_, theirs) = make(kilnet), make(keras)
    assert tuple(ours.output_shape) == tuple(theirs.output_shape) == (None, 6)
    x = [np.ones((2, 5), np.float32), np.ones((2, 3), np.float32)]
    assert ours.predict(x, verbose=0).shape == theirs.predict(x, verbose=0).shape == (2, 6)
