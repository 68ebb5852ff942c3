"""Model files of models whose inputs have unknown spatial or sequence sizes
(Input(shape=(None, None, 3)), Input(shape=(None,))) with layers that need more than one pixel
or step (pooling, cropping, "valid", strided or dilated convolutions): `.keras` files load
in kilnet and in Keras both ways, `.kilnet` and legacy `.h5` files reload, and the predictions are Keras's.
The check of a file's arrays before building must not invent sizes these layers refuse."""

import os
import zipfile

import numpy as np
import pytest

import kilnet
from kilnet.errors import ModelFileError

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")


def _pooling_1d(lib):
    L = lib.layers
    inputs = lib.Input(shape=(None, 3), name="in")
    x = L.Conv1D(4, 3, strides=2, name="strided")(inputs)
    x = L.MaxPooling1D(2, name="max")(x)
    x = L.AveragePooling1D(3, strides=1, name="average")(x)
    x = L.GlobalMaxPooling1D(name="global_max")(x)
    return lib.Model(inputs, L.Dense(2, name="head")(x))


def _pooling_2d(lib):
    L = lib.layers
    inputs = lib.Input(shape=(None, None, 3), name="in")
    x = L.Conv2D(4, 3, dilation_rate=2, name="dilated")(inputs)
    x = L.MaxPooling2D(name="max")(x)
    x = L.AveragePooling2D(3, strides=1, name="average")(x)
    x = L.Cropping2D(((1, 0), (0, 1)), name="crop")(x)
    x = L.Conv2DTranspose(2, 3, strides=2, name="transposed")(x)
    x = L.UpSampling2D(name="up")(x)
    return lib.Model(inputs, L.Conv2D(2, 1, name="head")(x))


def _pooling_3d(lib):
    L = lib.layers
    inputs = lib.Input(shape=(None, None, None, 2), name="in")
    x = L.Conv3D(2, 2, name="conv")(inputs)
    x = L.MaxPooling3D(name="max")(x)
    x = L.AveragePooling3D(2, name="average")(x)
    x = L.UpSampling3D(name="up")(x)
    x = L.GlobalAveragePooling3D(name="global_average")(x)
    return lib.Model(inputs, L.Dense(2, name="head")(x))


def _cropped_sequence(lib):
    L = lib.layers
    inputs = lib.Input(shape=(None, 3), name="in")
    x = L.Cropping1D((2, 3), name="crop")(inputs)
    x = L.Conv1D(2, 5, name="conv")(x)
    return lib.Model(inputs, L.LSTM(3, name="lstm")(x))


def _text_cnn(lib):
    """keras.io's text_classification_from_scratch model, smaller."""
    L = lib.layers
    inputs = lib.Input(shape=(None,), dtype="int64", name="in")
    x = L.Embedding(50, 8, name="embedding")(inputs)
    x = L.Conv1D(8, 7, padding="valid", activation="relu", strides=3, name="conv_a")(x)
    x = L.Conv1D(8, 7, padding="valid", activation="relu", strides=3, name="conv_b")(x)
    x = L.GlobalMaxPooling1D(name="global_max")(x)
    return lib.Model(inputs, L.Dense(1, activation="sigmoid", name="head")(x))


def _attention(lib):
    L = lib.layers
    query = lib.Input(shape=(None, 4), name="query")
    value = lib.Input(shape=(None, 4), name="value")
    q = L.Conv1D(4, 3, name="conv_q")(query)
    v = L.Conv1D(4, 3, name="conv_v")(value)
    x = L.Attention(name="attention")([q, v])
    return lib.Model([query, value], L.MaxPooling1D(2, name="max")(x))


_rng = np.random.default_rng(0)
CASES = {
    "pooling_1d": (_pooling_1d, _rng.random((2, 30, 3), "float32")),
    "pooling_2d": (_pooling_2d, _rng.random((2, 12, 12, 3), "float32")),
    "pooling_3d": (_pooling_3d, _rng.random((1, 9, 9, 9, 2), "float32")),
    "cropped_sequence": (_cropped_sequence, _rng.random((2, 14, 3), "float32")),
    "text_cnn": (_text_cnn, _rng.integers(0, 50, (2, 40))),
    "attention": (_attention, [_rng.random((2, 9, 4), "float32"),
                               _rng.random((2, 7, 4), "float32")]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_files_of_models_with_unknown_sizes_reload_with_keras_predictions(name, tmp_path):
    make, x = CASES[name]
    keras.backend.clear_session()
    keras_model, kilnet_model = make(keras), make(kilnet)
    kilnet_model.set_weights(keras_model.get_weights())
    expected = np.asarray(keras_model.predict(x, verbose=0))
    files = ("keras.keras", "keras.h5", "kilnet.keras", "kilnet.kilnet", "kilnet.h5")
    for file in files:
        (keras_model if file.startswith("keras") else kilnet_model).save(tmp_path / file)
    for file in files:
        loaded = kilnet.models.load_model(tmp_path / file)
        np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5,
                                   atol=1e-5, err_msg=file)
    from_kilnet = keras.models.load_model(tmp_path / "kilnet.keras")
    np.testing.assert_allclose(from_kilnet.predict(x, verbose=0), expected, rtol=1e-5,
                               atol=1e-5)


def test_arrays_that_do_not_fit_are_still_refused_before_building(tmp_path):
    """A "valid" strided Conv1D over unknown steps whose file holds a kernel and bias of 5 filters
    where its configuration says 8: refused by what the arrays give, before building."""
    import h5py

    keras.backend.clear_session()
    _text_cnn(keras).save(tmp_path / "good.keras")
    with zipfile.ZipFile(tmp_path / "good.keras") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    (tmp_path / "weights.h5").write_bytes(members["model.weights.h5"])
    with h5py.File(tmp_path / "weights.h5", "r+") as f:
        for index, shape in enumerate([(7, 8, 5), (5,)]):
            del f[f"layers/conv1d/vars/{index}"]
            f[f"layers/conv1d/vars/{index}"] = np.zeros(shape, "float32")
    members["model.weights.h5"] = (tmp_path / "weights.h5").read_bytes()
    path = tmp_path / "misfit.keras"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    with pytest.raises(ModelFileError, match=r"'conv_a' \(Conv1D\) does not fit its arrays: "
                                             r"its arrays give outputs of shape \[\(\d+, 5\)"):
        kilnet.models.load_model(path)
