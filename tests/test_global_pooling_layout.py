"""Global pooling with data_format="channels_first" (the axes reduced move, nothing else), as
Keras's timeseries Transformer uses GlobalAveragePooling1D: against Keras's layers, with masks,
keepdims, in a functional model and through a .keras file."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference layers are Keras's")

import kilnet  # noqa: E402

RANKS = {"1D": 3, "2D": 4, "3D": 5}


@pytest.mark.parametrize("kind", ["Average", "Max"])
@pytest.mark.parametrize("dims", list(RANKS))
@pytest.mark.parametrize("keepdims", [False, True])
def test_channels_first_equals_keras(kind, dims, keepdims):
    name = f"Global{kind}Pooling{dims}"
    shape = (2, 3) + (4, 5, 2)[:RANKS[dims] - 2]
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    theirs = getattr(keras.layers, name)(data_format="channels_first", keepdims=keepdims)
    mine = getattr(kilnet.layers, name)(data_format="channels_first", keepdims=keepdims)
    np.testing.assert_allclose(mine(x), theirs(x), rtol=1e-6)
    assert mine.compute_output_shape(shape) == tuple(theirs.compute_output_shape(shape))
    assert mine.get_config()["data_format"] == "channels_first"


def test_masked_average_over_the_last_axis_equals_keras():
    x = np.random.default_rng(1).normal(size=(2, 3, 5)).astype("float32")   # (batch, C, steps)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    mine = kilnet.layers.GlobalAveragePooling1D(data_format="channels_first")(x, mask=mask)
    theirs = keras.layers.GlobalAveragePooling1D(data_format="channels_first")(x, mask=mask)
    np.testing.assert_allclose(mine, theirs, rtol=1e-6)


def test_the_timeseries_transformer_head_trains_and_crosses_keras_files(tmp_path):
    inputs = kilnet.Input((12, 1))
    x = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4)(inputs, inputs)
    x = kilnet.layers.GlobalAveragePooling1D(data_format="channels_first")(x)   # over features
    outputs = kilnet.layers.Dense(2, activation="softmax")(x)
    model = kilnet.Model(inputs, outputs)
    assert model.output_shape == (None, 2) and x.shape == (None, 12)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    data = np.random.default_rng(2).normal(size=(16, 12, 1)).astype("float32")
    model.fit(data, np.arange(16) % 2, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(theirs.predict(data, verbose=0), model.predict(data, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_other_formats_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="'channels_last' or 'channels_first'. Received"):
        kilnet.layers.GlobalMaxPooling2D(data_format="NHWC")
