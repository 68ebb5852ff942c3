"""Convolutional models on images of any size (`Input((None, None, 3))`), global pooling with
`keepdims`, and BatchNormalization's channels axis given by number (axis=3), against Keras."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

import kilnet  # noqa: E402


def _fully_convolutional(lib):
    inputs = lib.Input(shape=(None, None, 3))
    x = lib.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
    x = lib.layers.BatchNormalization(axis=3)(x)
    x = lib.layers.MaxPooling2D()(x)
    x = lib.layers.SeparableConv2D(5, 3, padding="same")(x)
    x = lib.layers.DepthwiseConv2D(3, padding="same")(x)
    x = lib.layers.GlobalAveragePooling2D(keepdims=True)(x)
    x = lib.layers.Conv2D(2, 1)(x)
    return lib.Model(inputs, lib.layers.GlobalMaxPooling2D()(x))


def test_a_model_of_unknown_image_size_equals_keras_at_every_size():
    theirs, ours = _fully_convolutional(keras), _fully_convolutional(kilnet)
    assert ours.output_shape == theirs.output_shape == (None, 2)
    assert [layer.output.shape for layer in ours.layers] == \
        [tuple(layer.output.shape) for layer in theirs.layers]
    ours.set_weights(theirs.get_weights())
    rng = np.random.default_rng(0)
    for size in [(8, 8), (17, 12), (32, 20)]:
        x = rng.normal(size=(2, *size, 3)).astype(np.float32)
        np.testing.assert_allclose(ours.predict(x, verbose=0), np.asarray(theirs(x)),
                                   rtol=1e-4, atol=1e-5)
    ours.compile(optimizer="sgd", loss="mse")
    ours.fit(rng.normal(size=(4, 9, 11, 3)).astype(np.float32), np.zeros((4, 2)), verbose=0,
             batch_size=2)


@pytest.mark.parametrize("name", ["GlobalAveragePooling1D", "GlobalAveragePooling2D",
                                  "GlobalAveragePooling3D", "GlobalMaxPooling2D"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_keepdims_and_config_equal_keras(name, keepdims):
    rank = {"1D": 2, "2D": 3, "3D": 4}[name[-2:]]
    x = np.random.default_rng(1).normal(size=(2,) + (3,) * (rank - 1) + (4,)).astype("float32")
    ours = getattr(kilnet.layers, name)(keepdims=keepdims)
    theirs = getattr(keras.layers, name)(keepdims=keepdims)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=1e-6)
    mine, keras_config = ours.get_config(), theirs.get_config()
    assert {k: mine[k] for k in ("keepdims", "data_format")} == \
        {k: keras_config[k] for k in ("keepdims", "data_format")}


def test_batch_normalization_axis_by_number_and_in_files(tmp_path):
    inputs = keras.Input(shape=(4, 4, 3))
    km = keras.Model(inputs, keras.layers.BatchNormalization(axis=3, momentum=0.5)(inputs))
    x = np.random.default_rng(2).normal(2.0, 3.0, size=(8, 4, 4, 3)).astype(np.float32)
    km.layers[-1].set_weights([w + i for i, w in enumerate(km.layers[-1].get_weights())])
    km.save(tmp_path / "bn.keras")
    mine = kilnet.models.load_model(tmp_path / "bn.keras")
    assert mine.layers[-1].get_config()["axis"] == 3
    np.testing.assert_allclose(mine.predict(x, verbose=0), np.asarray(km(x)), rtol=1e-5,
                               atol=1e-5)
    mine.save(tmp_path / "back.keras")
    assert keras.models.load_model(tmp_path / "back.keras").layers[-1].axis == 3
    with pytest.raises(ValueError, match=r"axis=-1 or axis=3\. Received: axis=1"):
        kilnet.layers.BatchNormalization(axis=1)(x)
    with pytest.raises(ValueError, match="Received: axis='channels'"):
        kilnet.layers.BatchNormalization(axis="channels")
