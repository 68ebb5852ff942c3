"""ConvLSTM1D/2D/3D and Conv3DTranspose: values against Keras 3 (weights copied with
set_weights, which also checks their order and shapes) for the options of each, masks (Keras
3.15's ConvLSTM fails on any mask under JAX, so a masked step is checked against Keras run on
the sequence without it), dropout, Bidirectional, a next-frame-prediction model that trains
and opens in Keras, the CPU transposed convolution against the native one, then errors."""

from __future__ import annotations

import json
import os
import zipfile

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402
from kilnet._kernels.conv_transpose import (conv_transpose_native,  # noqa: E402
                                           conv_transpose_scatter, transpose_padding)


def normal(shape, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


def as_list(outputs):
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple))
                                    else [outputs])]


def twins(name, kwargs, x, **call):
    """The kilnet layer (random weights) and the Keras layer given its weights, called on x."""
    ours = getattr(layers, name)(**kwargs)
    ours(x)
    ours.set_weights([normal(w.shape, 1 + i, 0.5) for i, w in enumerate(ours.get_weights())])
    theirs = getattr(keras.layers, name)(**kwargs)
    theirs(x)
    theirs.set_weights(ours.get_weights())
    return as_list(ours(x, **call)), as_list(theirs(x, **call))


# (layer, kwargs, input shape with batch and time)
CONV_LSTM_CASES = [
    ("ConvLSTM1D", dict(filters=3, kernel_size=2, padding="same", return_sequences=True,
                        go_backwards=True), (2, 3, 5, 2)),
    ("ConvLSTM1D", dict(filters=2, kernel_size=3, dilation_rate=2, return_state=True,
                        unit_forget_bias=False), (2, 3, 7, 2)),
    ("ConvLSTM2D", dict(filters=3, kernel_size=3, padding="same", activation="relu",
                        return_sequences=True, return_state=True), (2, 3, 5, 4, 1)),
    ("ConvLSTM2D", dict(filters=2, kernel_size=(2, 3), strides=(2, 1), use_bias=False,
                        recurrent_activation="hard_sigmoid"), (2, 4, 5, 5, 2)),
    ("ConvLSTM2D", dict(filters=2, kernel_size=3, dilation_rate=(1, 2), padding="same",
                        go_backwards=True, return_state=True), (1, 3, 4, 6, 2)),
    ("ConvLSTM3D", dict(filters=2, kernel_size=2, strides=(1, 2, 2), padding="same",
                        return_sequences=True), (2, 2, 3, 4, 4, 1)),
]


@pytest.mark.parametrize("name,kwargs,shape", CONV_LSTM_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CONV_LSTM_CASES)])
def test_conv_lstm_matches_keras(name, kwargs, shape):
    ours, theirs = twins(name, kwargs, normal(shape))
    assert [o.shape for o in ours] == [t.shape for t in theirs]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_initial_state_matches_keras():
    x = normal((2, 3, 4, 4, 2))
    state = [normal((2, 4, 4, 3), 7), normal((2, 4, 4, 3), 8)]
    ours, theirs = twins("ConvLSTM2D", dict(filters=3, kernel_size=3, padding="same",
                                            return_state=True), x, initial_state=state)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_weights_and_config_follow_keras():
    ours = layers.ConvLSTM2D(4, 3, padding="same", dropout=0.2, recurrent_dropout=0.1,
                             kernel_regularizer="l2", recurrent_constraint="non_neg")
    ours(np.zeros((1, 2, 5, 5, 3), np.float32))
    assert [(w.name, w.shape) for w in ours.weights] == [
        ("kernel", (3, 3, 3, 16)), ("recurrent_kernel", (3, 3, 4, 16)), ("bias", (16,))]
    bias = np.asarray(ours.weights[2].numpy())
    np.testing.assert_array_equal(bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    config = ours.get_config()
    theirs = keras.layers.ConvLSTM2D(4, 3, padding="same", dropout=0.2, recurrent_dropout=0.1,
                                     kernel_regularizer="l2", recurrent_constraint="non_neg")
    assert set(config) - {"activity_regularizer"} <= set(theirs.get_config())
    assert "cell" not in config and config["kernel_size"] == (3, 3)   # Keras's tuple
    again = layers.ConvLSTM2D.from_config(config)
    assert again.get_config() == config
    assert layers.Convolution3DTranspose is layers.Conv3DTranspose


# -- masks ----------------------------------------------------------------------------------------
def test_a_masked_step_is_skipped_as_keras_without_it():
    """A masked middle step keeps the states and repeats the previous output: the kept outputs
    are Keras's on the sequence without that step."""
    x = normal((2, 4, 5, 2))
    kwargs = dict(filters=2, kernel_size=3, padding="same", return_sequences=True,
                  return_state=True)
    ours = layers.ConvLSTM1D(**kwargs)
    ours(x)
    theirs = keras.layers.ConvLSTM1D(**kwargs)
    theirs(x)
    theirs.set_weights(ours.get_weights())
    mask = np.array([[True, False, True, True]] * 2)
    sequence, h, c = as_list(ours(x, mask=mask))
    k_sequence, k_h, k_c = as_list(theirs(x[:, [0, 2, 3]]))
    np.testing.assert_allclose(sequence[:, [0, 2, 3]], k_sequence, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sequence[:, 1], sequence[:, 0])   # the previous output
    np.testing.assert_allclose(h, k_h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c, k_c, rtol=1e-5, atol=1e-5)


def test_masking_frames_pads_without_changing_the_prediction():
    """Masking masks each position of a frame; a frame whose positions are all masked is a
    masked step, so padded sequences predict what their prefixes predict."""
    inputs = kilnet.Input((None, 4, 4, 1))
    masked = layers.Masking()(inputs)
    sequence = layers.ConvLSTM2D(2, 3, padding="same", return_sequences=True)(masked)
    model = kilnet.Model(inputs, layers.ConvLSTM2D(2, 3, padding="same")(sequence))
    x = normal((2, 5, 4, 4, 1))
    x[:, 3:] = 0.0
    x[0, 1, 2, 2] = 0.0  # one masked position does not mask its frame
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(x[:, :3], verbose=0),
                               rtol=1e-5, atol=1e-6)


# -- dropout --------------------------------------------------------------------------------------
def test_dropout_in_training_only():
    layer = layers.ConvLSTM2D(3, 3, padding="same", dropout=0.5, recurrent_dropout=0.5,
                              return_sequences=True)
    x = normal((2, 3, 4, 4, 2))
    inference = np.asarray(layer(x))
    again = np.asarray(layer(x, training=False))
    params, state = layer.params_tree(), layer.state_tree()
    training, _ = layer.apply(params, state, x, training=True, rng=jax.random.PRNGKey(0))
    other, _ = layer.apply(params, state, x, training=True, rng=jax.random.PRNGKey(1))
    assert training.shape == inference.shape == (2, 3, 4, 4, 3)
    np.testing.assert_array_equal(inference, again)
    assert np.isfinite(training).all()
    assert not np.allclose(training, inference) and not np.allclose(training, other)
    theirs = keras.layers.ConvLSTM2D(3, 3, padding="same", dropout=0.5, recurrent_dropout=0.5,
                                     return_sequences=True)
    theirs(x)
    theirs.set_weights(layer.get_weights())
    np.testing.assert_allclose(inference, theirs(x, training=False), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="without a random key"):
        layer.apply(params, state, x, training=True)


def test_bidirectional_matches_keras():
    x = normal((2, 3, 4, 4, 1))
    ours = layers.Bidirectional(layers.ConvLSTM2D(2, 3, padding="same"))
    ours(x)
    theirs = keras.layers.Bidirectional(keras.layers.ConvLSTM2D(2, 3, padding="same"))
    theirs(x)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


# -- the next-frame prediction tutorial, in small --------------------------------------------------
def test_next_frame_model_trains_and_opens_in_keras(tmp_path):
    inputs = kilnet.Input(shape=(None, 8, 8, 1))
    x = layers.ConvLSTM2D(4, (5, 5), padding="same", return_sequences=True,
                          activation="relu")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ConvLSTM2D(4, (3, 3), padding="same", return_sequences=True,
                          activation="relu")(x)
    x = layers.BatchNormalization()(x)
    outputs = layers.Conv3D(1, (3, 3, 3), activation="sigmoid", padding="same")(x)
    model = kilnet.Model(inputs, outputs)
    model.compile(loss="binary_crossentropy", optimizer="adam")
    frames = (np.random.default_rng(0).uniform(size=(16, 4, 8, 8, 1)) > 0.7).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(frames[:, :-1], frames[:, 1:], batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    model.save(tmp_path / "next_frame.keras")
    theirs = keras.models.load_model(tmp_path / "next_frame.keras")
    np.testing.assert_allclose(theirs.predict(frames[:2], verbose=0),
                               model.predict(frames[:2], verbose=0), rtol=1e-4, atol=1e-5)


def test_a_keras_file_declaring_huge_filters_is_refused_before_building(tmp_path):
    """The weights' shapes follow from the config and are checked against the file's before
    anything is allocated (filters=10**7 would make a 1.4 GB kernel)."""
    inputs = keras.Input((None, 4, 4, 1))
    keras.Model(inputs, keras.layers.ConvLSTM2D(2, 3)(inputs)).save(tmp_path / "k.keras")
    with zipfile.ZipFile(tmp_path / "k.keras") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["config"]["filters"] = 10**7
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "hostile.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(kilnet.errors.ModelFileError, match=r"filters=10000000.*file holds"):
        kilnet.models.load_model(tmp_path / "hostile.keras")


# -- Conv3DTranspose ------------------------------------------------------------------------------
TRANSPOSE_CASES = [
    dict(filters=3, kernel_size=3, strides=2, padding="same"),
    dict(filters=2, kernel_size=(2, 3, 1), strides=(2, 1, 3), output_padding=(1, 0, 2)),
    dict(filters=2, kernel_size=2, dilation_rate=(2, 1, 2), padding="same",
         activation="relu", use_bias=False),
]


@pytest.mark.parametrize("kwargs", TRANSPOSE_CASES)
def test_conv3d_transpose_matches_keras(kwargs):
    ours, theirs = twins("Conv3DTranspose", kwargs, normal((2, 3, 4, 3, 2)))
    assert ours[0].shape == theirs[0].shape
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5, atol=1e-5)


def test_transposed_scatter_equals_native_in_3d():
    """The CPU form (one matmul, one pad a tap) against lax.conv_transpose (GPU's)."""
    x, kernel = normal((2, 3, 4, 2, 3)), normal((3, 2, 2, 4, 3), 1)
    strides, dilation = (2, 1, 2), (1, 2, 1)
    pads = [transpose_padding(kernel.shape[i], strides[i], dilation[i], "same", None)
            for i in range(3)]
    a, b = jax.jit(lambda x, k: (conv_transpose_scatter(x, k, strides, dilation, pads),
                                 conv_transpose_native(x, k, strides, dilation, pads)))(x, kernel)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,message", [
    (lambda: layers.ConvLSTM2D(2, 3, data_format="channels_first"), "channels_last"),
    (lambda: kilnet.Sequential([kilnet.Input((3, 5, 5, 1)), layers.ConvLSTM2D(
        2, 3, stateful=True)]).build(), "stateful=True.*batch size must be known"),
    (lambda: layers.ConvLSTM2D(0, 3), "filters must be a positive integer"),
    (lambda: layers.ConvLSTM3D(2, (3, 3)), "kernel_size must be"),
    (lambda: layers.ConvLSTM1D(2, 3, strides=2, dilation_rate=2), "dilation_rate"),
    (lambda: layers.ConvLSTM2D(2, 3, padding="causal"), "padding must be"),
    (lambda: layers.ConvLSTM2D(2, 3, dropout=1.5), "dropout must be"),
    (lambda: layers.Conv3DTranspose(2, 3, strides=2, output_padding=2), "output_padding"),
    (lambda: layers.Conv3DTranspose(2, (3, 3)), "kernel_size must be"),
])
def test_bad_arguments_are_refused(make, message):
    with pytest.raises(ValueError, match=message) as error:
        make()
    assert "Received:" in str(error.value)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"sequences of images.*Received: input of shape"):
        layers.ConvLSTM2D(2, 3)(np.zeros((2, 3, 4, 1), np.float32))
    with pytest.raises(ValueError, match="does not fit"):
        layers.ConvLSTM1D(2, 5)(np.zeros((2, 3, 4, 1), np.float32))
    with pytest.raises(ValueError, match=r"initial_state.*Received: shapes"):
        inputs = kilnet.Input((None, 4, 4, 1))
        layers.ConvLSTM2D(2, 3, padding="same")(
            inputs, initial_state=[kilnet.Input((4, 4, 3)), kilnet.Input((4, 4, 3))])
    with pytest.raises(ValueError, match="volumes of shape"):
        layers.Conv3DTranspose(2, 3)(np.zeros((1, 4, 4, 2), np.float32))
