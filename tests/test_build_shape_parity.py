"""`layer.build((10,))` and `layer.build(None)` over the built-in layers, against Keras 3.15
itself: each builds where Keras's builds, with the same weight shapes, and is refused where
Keras's is (a shape of one known length is read feature axis last, as Keras's layers read
it; a layer with no weights takes any shape, as Keras's default build)."""

import os
import warnings

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402

LAYERS = {
    "BatchNormalization": {}, "GroupNormalization": dict(groups=2), "LayerNormalization": {},
    "UnitNormalization": {}, "RMSNormalization": {}, "Normalization": {},
    "EinsumDense": dict(equation="ab,bc->ac", output_shape=4), "PReLU": {},
    "Dense": dict(units=3), "Embedding": dict(input_dim=5, output_dim=3),
    "ReversibleEmbedding": dict(input_dim=5, output_dim=3),
    "Conv1D": dict(filters=2, kernel_size=1), "Conv2D": dict(filters=2, kernel_size=1),
    "Conv3D": dict(filters=2, kernel_size=1), "Conv1DTranspose": dict(filters=2, kernel_size=1),
    "Conv2DTranspose": dict(filters=2, kernel_size=1),
    "Conv3DTranspose": dict(filters=2, kernel_size=1),
    "DepthwiseConv1D": dict(kernel_size=1), "DepthwiseConv2D": dict(kernel_size=1),
    "SeparableConv1D": dict(filters=2, kernel_size=1),
    "SeparableConv2D": dict(filters=2, kernel_size=1),
    "SimpleRNN": dict(units=2), "LSTM": dict(units=2), "GRU": dict(units=2),
    "SimpleRNNCell": dict(units=2), "LSTMCell": dict(units=2), "GRUCell": dict(units=2),
    "ConvLSTM1D": dict(filters=2, kernel_size=1), "ConvLSTM2D": dict(filters=2, kernel_size=1),
    "MultiHeadAttention": dict(num_heads=2, key_dim=2),
    "GroupQueryAttention": dict(head_dim=2, num_query_heads=2, num_key_value_heads=1),
    "Attention": {}, "AdditiveAttention": {},
    "Dropout": dict(rate=0.5), "GaussianNoise": dict(stddev=0.1), "ActivityRegularization": {},
    "ReLU": {}, "LeakyReLU": {}, "ELU": {}, "Softmax": {}, "Activation": dict(activation="relu"),
    "Identity": {}, "Flatten": {}, "Masking": {}, "Rescaling": dict(scale=2.0),
    "Reshape": dict(target_shape=(10,)), "RepeatVector": dict(n=2), "Permute": dict(dims=(1,)),
    "ZeroPadding1D": {}, "Cropping1D": {}, "UpSampling1D": {},
    "GlobalAveragePooling1D": {}, "MaxPooling1D": {},
    "Discretization": dict(bin_boundaries=[0.0]), "CategoryEncoding": dict(num_tokens=4),
    "StringLookup": dict(vocabulary=["a"]), "IntegerLookup": dict(vocabulary=[1]),
    "Hashing": dict(num_bins=3),
    "SpectralNormalization": "wraps", "Bidirectional": "wraps", "TimeDistributed": "wraps",
}

# Where kilnet still differs (each strict: it fails once fixed, to be taken off this list)
DIFFERS = {
    ("EinsumDense", (10,)): "Keras's build refuses a shape shorter than the equation's input",
    ("PReLU", None): "kilnet reads None as scalars and makes a scalar alpha",
    ("ConvLSTM1D", (10,)): "Keras builds kernels from a misread shape; kilnet needs spatial sizes",
    ("ConvLSTM2D", (10,)): "Keras builds kernels from a misread shape; kilnet needs spatial sizes",
    ("Normalization", None): "Keras builds with no weights; kilnet needs the feature axis",
    ("SpectralNormalization", (10,)): "kilnet builds the wrapped layer at the first call",
    ("SpectralNormalization", None): "kilnet takes it, to build at the first call",
    ("TimeDistributed", (10,)): "Keras refuses fewer than 3 axes at build; kilnet at the call",
    ("TimeDistributed", None): "Keras refuses fewer than 3 axes at build; kilnet at the call",
}


def make(lib, name):
    arguments = LAYERS[name]
    layers = lib.layers
    if arguments == "wraps":
        inner = layers.LSTM(2) if name == "Bidirectional" else layers.Dense(2)
        return getattr(layers, name)(inner)
    return getattr(layers, name)(**arguments)


def outcome(lib, name, shape):
    """("built", sorted weight shapes) or ("refused", None)."""
    layer = make(lib, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            layer.build(shape)
    except Exception:  # the refusal's kind differs between the libraries; its fact is compared
        return ("refused", None)
    return ("built", sorted(tuple(w.shape) for w in layer.weights))


CASES = [pytest.param(name, shape, id=f"{name}-{shape}",
                      marks=[pytest.mark.xfail(strict=True, reason=DIFFERS[(name, shape)])]
                      if (name, shape) in DIFFERS else [])
         for name in LAYERS for shape in ((10,), None)]


@pytest.mark.parametrize("name, shape", CASES)
def test_build_takes_or_refuses_the_shape_as_keras(name, shape):
    assert outcome(kilnet, name, shape) == outcome(keras, name, shape)
