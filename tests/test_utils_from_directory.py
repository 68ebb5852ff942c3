"""image_dataset_from_directory / text_dataset_from_directory: Keras's file order and
splits (checked with Keras's own index_directory), Pillow decoding resized as Keras's
ops.image.resize on JAX, and the refusals."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
dataset_utils = pytest.importorskip("keras.src.utils.dataset_utils")

from kilnet import utils  # noqa: E402

CLASSES = ("cat", "dog", "fox")


def _image_folder(root, per_class=(5, 4, 3)):
    rng = np.random.default_rng(0)
    for name, count in zip(CLASSES, per_class):
        os.makedirs(root / name / "sub")
        for i in range(count):
            pixels = rng.integers(0, 256, (6 + i, 9, 3), dtype=np.uint8)
            fmt = ("png", "jpg", "bmp", "gif")[i % 4]
            folder = root / name / ("sub" if i == 2 else "")
            Image.fromarray(pixels).save(folder / f"img{i}.{fmt}")
        (root / name / "notes.csv").write_text("not an image")   # skipped, as in Keras
    return root


def _keras_files(root, subset, split, seed, formats):
    paths, labels, _ = dataset_utils.index_directory(str(root), "inferred", formats=formats,
                                                     shuffle=True, seed=seed, verbose=False)
    return dataset_utils.get_training_or_validation_split(paths, labels, split, subset)


@pytest.mark.parametrize("subset", ["training", "validation"])
def test_same_files_and_labels_as_keras_for_each_subset(tmp_path, subset):
    root = _image_folder(tmp_path)
    ds = utils.image_dataset_from_directory(root, image_size=(4, 5), batch_size=3, seed=7,
                                            validation_split=0.3, subset=subset, verbose=False)
    paths, labels = _keras_files(root, subset, 0.3, 7, utils._from_directory.IMAGE_FORMATS)
    assert ds.file_paths == paths
    np.testing.assert_array_equal(ds.y, labels)
    assert ds.class_names == list(CLASSES)
    assert not any(p.endswith(".csv") for p in ds.file_paths)


def test_subset_both_and_label_modes(tmp_path):
    root = _image_folder(tmp_path)
    train, val = utils.image_dataset_from_directory(
        root, image_size=(4, 4), seed=1, validation_split=0.25, subset="both",
        label_mode="categorical", verbose=False)
    assert len(train.file_paths) + len(val.file_paths) == 12
    assert not set(train.file_paths) & set(val.file_paths)
    x, y = next(iter(train))
    assert x.shape == (9, 4, 4, 3) and x.dtype == np.float32
    assert y.shape == (9, 3) and np.all(y.sum(axis=1) == 1)
    no_labels = utils.image_dataset_from_directory(root, label_mode=None, image_size=(4, 4),
                                                   color_mode="grayscale", verbose=False)
    assert no_labels[0].shape == (12, 4, 4, 1)
    with pytest.raises(ValueError, match="exactly 2 classes"):
        utils.image_dataset_from_directory(root, label_mode="binary", verbose=False)


def test_pixels_equal_keras_resize_on_jax(tmp_path):
    os.makedirs(tmp_path / "a")
    pixels = np.random.default_rng(1).integers(0, 256, (13, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a" / "x.png")
    for crop in (False, True):
        ds = utils.image_dataset_from_directory(tmp_path, image_size=(7, 5), shuffle=False,
                                                crop_to_aspect_ratio=crop, verbose=False)
        want = keras.ops.image.resize(pixels.astype(np.float32), (7, 5),
                                      crop_to_aspect_ratio=crop)
        np.testing.assert_allclose(ds[0][0][0], np.asarray(want), rtol=1e-5, atol=1e-3)


def test_image_refusals(tmp_path):
    os.makedirs(tmp_path / "a")
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png could not be decoded"):
        utils.image_dataset_from_directory(tmp_path, verbose=False)[0]
    for kwargs, match in [(dict(color_mode="cmyk"), "color_mode='cmyk'"),
                          (dict(label_mode="sparse"), "label_mode='sparse'"),
                          (dict(interpolation="area"), "not supported"),
                          (dict(image_size=(0, 3)), "image_size"),
                          (dict(validation_split=0.2, subset="training"), "seed"),
                          (dict(validation_split=0.2), "together"),
                          (dict(pad_to_aspect_ratio=True, crop_to_aspect_ratio=True),
                           "only one of pad_to_aspect_ratio and crop_to_aspect_ratio")]:
        with pytest.raises(ValueError, match=match):
            utils.image_dataset_from_directory(tmp_path, verbose=False, **kwargs)


def _one_image_dataset(root, image, name, **kwargs):
    os.makedirs(root / "a", exist_ok=True)
    image.save(root / "a" / name)
    ds = utils.image_dataset_from_directory(root, shuffle=False, label_mode=None,
                                            verbose=False, **kwargs)
    return ds[0][0]


def _libpng_grey(rgb):
    """libpng's RGB-to-grey with the weights TensorFlow's PNG decoder sets (0.299, 0.587),
    by hand: 15-bit fixed-point weights, the remainder dropped."""
    red, green = int(0.299 * 32768), int(0.587 * 32768)    # 9797, 19234
    blue = 32768 - red - green                               # 3737
    rgb = rgb.astype(np.int64)
    return (red * rgb[..., 0] + green * rgb[..., 1] + blue * rgb[..., 2]) // 32768


# TensorFlow 2.21's decode_image(channels=1) of a PNG holding these pixels (Keras reads this);
# Pillow's convert("L") rounds six of them one level up.
PNG_RGB = [[10, 200, 30], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [1, 1, 0],
           [128, 64, 32], [17, 99, 250], [200, 201, 202], [90, 180, 45]]
PNG_GREY_TF = [123, 76, 149, 29, 255, 0, 79, 91, 200, 137]


def test_grayscale_of_colour_png_is_tensorflows(tmp_path):
    pixels = np.array([PNG_RGB], np.uint8)
    grey = _one_image_dataset(tmp_path, Image.fromarray(pixels), "row.png", image_size=(1, 10),
                              color_mode="grayscale")
    assert grey[..., 0].ravel().tolist() == PNG_GREY_TF == _libpng_grey(pixels).ravel().tolist()
    noise = np.random.default_rng(4).integers(0, 256, (9, 11, 4), dtype=np.uint8)
    for name, image, rgb in [("rgb.png", Image.fromarray(noise[..., :3]), noise[..., :3]),
                             ("rgba.png", Image.fromarray(noise, "RGBA"), noise[..., :3]),
                             ("gif.gif", Image.fromarray(noise[..., :3]).quantize(40), None)]:
        rgb = np.asarray(image.convert("RGB")) if rgb is None else rgb
        grey = _one_image_dataset(tmp_path / name, image, name, image_size=(9, 11),
                                  color_mode="grayscale")
        np.testing.assert_array_equal(grey[..., 0], _libpng_grey(rgb), err_msg=name)


# An 8x8 colour gradient saved by Pillow as JPEG (quality 90), and TensorFlow 2.21's
# decode_image(channels=1) of those bytes: libjpeg's luma plane with its fast integer DCT.
JPEG_SHA256 = "2fffc4de095fc459e857c9387582fcd68e2f2bd725bcf9e181ac3795d853e62e"
JPEG_GREY_TF = [
    29, 39, 49, 58, 70, 79, 89, 100, 43, 53, 63, 72, 84, 94, 103, 114, 57, 67, 77, 86, 98,
    107, 117, 127, 69, 79, 89, 99, 110, 120, 130, 140, 84, 94, 104, 113, 125, 134, 144, 155,
    96, 106, 116, 126, 137, 147, 157, 167, 110, 120, 130, 139, 151, 160, 170, 181, 124, 134,
    144, 153, 165, 175, 184, 195]


def test_grayscale_of_jpeg_is_tensorflows(tmp_path):
    import hashlib
    import io

    rows, cols = np.mgrid[0:8, 0:8]
    gradient = np.stack([cols * 30, rows * 28 + cols * 3, 255 - rows * 25 - cols * 5], -1)
    encoded = io.BytesIO()
    Image.fromarray(gradient.astype(np.uint8)).save(encoded, "JPEG", quality=90)
    if hashlib.sha256(encoded.getvalue()).hexdigest() != JPEG_SHA256:
        pytest.skip("this Pillow's JPEG encoder writes other bytes than those measured")
    os.makedirs(tmp_path / "colour" / "a")
    (tmp_path / "colour" / "a" / "g.jpg").write_bytes(encoded.getvalue())
    grey = utils.image_dataset_from_directory(tmp_path / "colour", image_size=(8, 8),
                                              color_mode="grayscale", label_mode=None,
                                              verbose=False)[0][0]
    assert grey.ravel().tolist() == JPEG_GREY_TF
    # a grey JPEG decodes the same way, its level repeated in colour
    plane = Image.open(tmp_path / "colour" / "a" / "g.jpg").convert("L")
    rgb = _one_image_dataset(tmp_path / "grey", plane, "p.jpg", image_size=(8, 8))
    alone = _one_image_dataset(tmp_path / "grey2", plane, "p.jpg", image_size=(8, 8),
                               color_mode="grayscale")
    np.testing.assert_array_equal(rgb, np.repeat(alone, 3, axis=-1))


def test_16_bit_grey_png_keeps_the_high_byte(tmp_path):
    deep = np.random.default_rng(5).integers(0, 65536, (6, 7), dtype=np.uint16)
    for color_mode, channels in (("grayscale", 1), ("rgb", 3)):
        x = _one_image_dataset(tmp_path / color_mode, Image.fromarray(deep), "d.png",
                               image_size=(6, 7), color_mode=color_mode)
        np.testing.assert_array_equal(x, np.repeat((deep >> 8)[..., None], channels, -1))


@pytest.mark.parametrize("shape, size", [((20, 24), (20, 40)), ((30, 20), (10, 10)),
                                         ((13, 40), (16, 16))])
def test_pad_to_aspect_ratio_as_tensorflows_resize_with_pad(tmp_path, shape, size):
    pixels = np.random.default_rng(6).integers(0, 256, shape + (3,), dtype=np.uint8)
    x = _one_image_dataset(tmp_path, Image.fromarray(pixels), "p.png", image_size=size,
                           pad_to_aspect_ratio=True)
    # tf.image.resize_with_pad's rule, by hand: the smaller scale, sizes rounded down, the
    # top/left padding half of what the unrounded size leaves, rounded down
    scale = min(size[0] / shape[0], size[1] / shape[1])
    inner = (int(shape[0] * scale + 1e-6), int(shape[1] * scale + 1e-6))
    top = int((size[0] - shape[0] * scale) / 2 + 1e-6)
    left = int((size[1] - shape[1] * scale) / 2 + 1e-6)
    want = np.zeros(size + (3,), np.float32)
    want[top:top + inner[0], left:left + inner[1]] = np.asarray(keras.ops.image.resize(
        pixels.astype(np.float32), inner, antialias=False))
    assert x.shape == size + (3,)
    np.testing.assert_allclose(x, want, rtol=1e-5, atol=1e-3)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    os.makedirs(tmp_path / "a")
    Image.new("L", (300, 300)).save(tmp_path / "a" / "big.png")
    monkeypatch.setattr(utils._from_directory, "MAX_IMAGE_PIXELS", 50_000)
    ds = utils.image_dataset_from_directory(tmp_path, verbose=False)
    with pytest.raises(ValueError, match="decompression bomb"):
        ds[0]


def test_text_dataset_matches_keras_files_and_reads_strings(tmp_path):
    for name in ("neg", "pos"):
        os.makedirs(tmp_path / name)
        for i in range(4):
            (tmp_path / name / f"{i}.txt").write_text(f"{name} review número {i}",
                                                      encoding="utf-8")
        (tmp_path / name / "skip.md").write_text("ignored")
    ds = utils.text_dataset_from_directory(tmp_path, batch_size=3, seed=2, max_length=10,
                                           validation_split=0.25, subset="training",
                                           verbose=False)
    paths, labels = _keras_files(tmp_path, "training", 0.25, 2, (".txt",))
    assert ds.file_paths == paths
    np.testing.assert_array_equal(ds.y, labels)
    texts = ds.x
    assert texts.dtype == object and len(texts) == 6
    for path, text in zip(paths, texts):
        assert text == open(path, "rb").read()[:10].decode("utf-8", errors="ignore")


def test_a_split_prints_keras_s_using_lines(tmp_path, capsys):
    """Keras prints how many files each subset uses (whatever `verbose` says), after its
    "Found ..." line (which `verbose` controls)."""
    for name in ("neg", "pos"):
        os.makedirs(tmp_path / name)
        for i in range(5):
            (tmp_path / name / f"{i}.txt").write_text(f"{name} {i}")
    utils.text_dataset_from_directory(tmp_path, validation_split=0.2, subset="both", seed=1)
    assert capsys.readouterr().out.splitlines() == [
        "Found 10 files belonging to 2 classes.", "Using 8 files for training.",
        "Using 2 files for validation."]
    utils.text_dataset_from_directory(tmp_path, validation_split=0.2, subset="validation",
                                      seed=1, verbose=False)
    assert capsys.readouterr().out.splitlines() == ["Using 2 files for validation."]
    utils.text_dataset_from_directory(tmp_path, seed=1, verbose=False)
    assert capsys.readouterr().out == ""
