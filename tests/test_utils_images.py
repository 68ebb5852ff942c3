"""Keras's image file helpers (load_img, img_to_array, array_to_img, save_img), the batch
packing helpers and the keras.preprocessing namespace: kilnet's results against Keras 3's own
functions on images the tests make, and the refusals."""

from __future__ import annotations

import io
import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

import kilnet  # noqa: E402
from kilnet import utils  # noqa: E402


def _picture(path, mode="RGB", size=(37, 23), seed=0):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)
    return path


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("options", [
    {}, {"color_mode": "grayscale"}, {"color_mode": "rgba"},
    {"target_size": (16, 20)}, {"target_size": (30, 10), "interpolation": "bilinear"},
    {"target_size": (12, 12), "interpolation": "lanczos", "keep_aspect_ratio": True},
    {"target_size": (20, 9), "interpolation": "bicubic", "keep_aspect_ratio": True}],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_load_img_and_img_to_array_match_keras(tmp_path, mode, options):
    path = _picture(tmp_path / "p.png", mode)
    ours, theirs = utils.load_img(path, **options), keras.utils.load_img(path, **options)
    assert (ours.mode, ours.size) == (theirs.mode, theirs.size)
    for data_format in ("channels_last", "channels_first"):
        a = utils.img_to_array(ours, data_format=data_format)
        b = keras.utils.img_to_array(theirs, data_format=data_format)
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["colour.jpg", "deep.png"])
def test_load_img_grayscale_is_pillows_as_keras(tmp_path, name):
    """load_img converts with Pillow in Keras too (only image_dataset_from_directory decodes
    through TensorFlow): a colour JPEG's grey is Pillow's "L", a 16-bit grey PNG keeps its
    16-bit values."""
    rng = np.random.default_rng(1)
    if name.endswith(".jpg"):
        Image.fromarray(rng.integers(0, 256, (12, 9, 3), dtype=np.uint8)).save(tmp_path / name)
    else:
        Image.fromarray(rng.integers(0, 65536, (12, 9), dtype=np.uint16)).save(tmp_path / name)
    ours = utils.load_img(tmp_path / name, color_mode="grayscale")
    theirs = keras.utils.load_img(tmp_path / name, color_mode="grayscale")
    assert ours.mode == theirs.mode
    np.testing.assert_array_equal(utils.img_to_array(ours), keras.utils.img_to_array(theirs))


@pytest.mark.parametrize("shape, scale", [((5, 4, 3), True), ((5, 4, 4), False),
                                          ((5, 4, 1), True), ((5, 4, 1), False)])
def test_array_to_img_and_save_img_match_keras(tmp_path, shape, scale):
    x = np.random.default_rng(1).uniform(0, 300 if not scale else 1, size=shape).astype(
        np.float32)
    if shape[-1] == 4:
        x = np.minimum(x, 255)
    ours, theirs = utils.array_to_img(x, scale=scale), keras.utils.array_to_img(x, scale=scale)
    assert ours.mode == theirs.mode
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    if ours.mode == "I":   # 32-bit greyscale: PNG cannot hold it, in Keras neither
        with pytest.raises(OSError):
            keras.utils.save_img(tmp_path / "theirs.png", x, scale=scale)
        with pytest.raises(OSError):
            utils.save_img(tmp_path / "ours.png", x, scale=scale)
        return
    utils.save_img(tmp_path / "ours.png", x, scale=scale)
    keras.utils.save_img(tmp_path / "theirs.png", x, scale=scale)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "ours.png")),
                                  np.asarray(Image.open(tmp_path / "theirs.png")))


def test_the_tutorials_inference_cell(tmp_path):
    """keras.io's image classification from scratch, last cell: one picture into a model."""
    path = _picture(tmp_path / "cat.jpg", size=(64, 48))
    img = utils.load_img(path, target_size=(32, 32))
    img_array = utils.img_to_array(img)
    img_array = kilnet.ops.expand_dims(img_array, 0)
    model = kilnet.Sequential([kilnet.Input(shape=(32, 32, 3)), kilnet.layers.Rescaling(1 / 255),
                               kilnet.layers.Flatten(), kilnet.layers.Dense(1, "sigmoid")])
    predictions = model.predict(img_array, verbose=0)
    assert predictions.shape == (1, 1) and 0 <= float(predictions[0, 0]) <= 1


def test_save_img_replaces_atomically_and_refuses_what_it_cannot_write(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    utils.save_img(path, np.zeros((2, 2, 3)))
    before = path.read_bytes()
    with pytest.raises(ValueError, match="cannot tell the image format"):
        utils.save_img(tmp_path / "noext", np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="1, 3 or 4 channels. Received: 2"):
        utils.save_img(path, np.zeros((2, 2, 2)))
    assert path.read_bytes() == before
    with pytest.warns(UserWarning, match="does not support RGBA"):
        utils.save_img(tmp_path / "rgba.jpg", np.ones((2, 2, 4)))


def test_bad_images_and_arguments_are_refused(tmp_path, monkeypatch):
    path = _picture(tmp_path / "p.png")
    with pytest.raises(ValueError, match="color_mode must be one of"):
        utils.load_img(path, color_mode="cmyk")
    with pytest.raises(ValueError, match="interpolation must be one of"):
        utils.load_img(path, target_size=(4, 4), interpolation="area")
    with pytest.raises(ValueError, match=r"target_size must be \(height, width\)"):
        utils.load_img(path, target_size=(4, 0))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="could not be decoded as an image"):
        utils.load_img(tmp_path / "broken.png")
    monkeypatch.setattr("kilnet.utils._from_directory.MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ValueError, match="decompression bomb"):
        utils.load_img(path)
    with pytest.raises(ValueError, match="array of 3 dimensions"):
        utils.array_to_img(np.zeros((2, 2)))


def test_pack_and_unpack_match_keras():
    for args in [(1,), ([1, 2],), ((1, 2),), (1, 2), (1, 2, 3), ([1], [2], None)]:
        assert utils.pack_x_y_sample_weight(*args) == keras.utils.pack_x_y_sample_weight(*args)
    for data in [1, (1,), (1, 2), [1, 2, 3], {"a": 1}]:
        assert utils.unpack_x_y_sample_weight(data) == keras.utils.unpack_x_y_sample_weight(
            data)
    with pytest.raises(ValueError, match="Received: a tuple of 4 items"):
        utils.unpack_x_y_sample_weight((1, 2, 3, 4))


def test_keras_preprocessing_namespace():
    assert kilnet.preprocessing.image.img_to_array is utils.img_to_array
    assert kilnet.preprocessing.sequence.pad_sequences is utils.pad_sequences
    assert kilnet.preprocessing.image_dataset_from_directory is \
        utils.image_dataset_from_directory
    keras_names = {n for n in dir(keras.preprocessing.image) if not n.startswith("_")}
    assert keras_names - set(dir(kilnet.preprocessing.image)) == set()


def test_bytes_io_input():
    png = io.BytesIO()
    Image.new("RGB", (3, 2), (10, 20, 30)).save(png, format="PNG")
    png.seek(0)
    assert utils.img_to_array(utils.load_img(png))[0, 0].tolist() == [10.0, 20.0, 30.0]


@pytest.mark.parametrize("shape, size, data_format", [
    ((40, 20, 3), (10, 10), "channels_last"), ((2, 33, 47, 3), (16, 20), "channels_last"),
    ((5, 7, 1), (9, 4), "channels_last"), ((2, 3, 30, 17), (8, 8), "channels_first")])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic"])
def test_smart_resize_equals_keras(shape, size, data_format, interpolation):
    x = np.random.default_rng(0).uniform(size=shape).astype("float32")
    mine = kilnet.preprocessing.image.smart_resize(x, size, interpolation=interpolation,
                                                   data_format=data_format)
    theirs = keras.preprocessing.image.smart_resize(x, size, interpolation=interpolation,
                                                    data_format=data_format)
    assert isinstance(mine, np.ndarray)
    np.testing.assert_allclose(mine, np.asarray(theirs), atol=1e-6)


def test_smart_resize_refuses_a_single_channel_plane_with_the_shapes():
    with pytest.raises(ValueError, match=r"Received: an input of shape \(4, 4\)"):
        kilnet.utils.smart_resize(np.ones((4, 4)), (2, 2))
