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
                          (dict(pad_to_aspect_ratio=True), "pad_to_aspect_ratio")]:
        with pytest.raises(ValueError, match=match):
            utils.image_dataset_from_directory(tmp_path, verbose=False, **kwargs)


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
