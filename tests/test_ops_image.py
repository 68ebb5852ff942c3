"""kilnet.ops.image against keras.ops.image itself (Keras 3 on JAX): values, dtypes and
shapes of every function, one image and a batch, eagerly and under jax.jit; the op nodes
they make in a functional model (a ViT's extract_patches) save and load."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

import kilnet
from kilnet import ops
from kilnet.layers._operation import OPS, op_function
from kilnet.ops import image

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(1)
IMAGES = RNG.uniform(size=(2, 8, 10, 3)).astype(np.float32)
PIXELS = RNG.integers(0, 256, size=(2, 8, 10, 3)).astype(np.uint8)
VOLUMES = RNG.uniform(size=(2, 4, 6, 6, 2)).astype(np.float32)
AFFINE = np.array([[0.9, -0.2, 1.5, 0.1, 1.1, -0.7, 0, 0],
                   [1.2, 0.3, -2.0, -0.1, 0.8, 1.0, 0, 0]], np.float32)
# no source position exactly halfway between pixels, where nearest may round either way
OFF_GRID = AFFINE[0] + np.float32([0.0123] * 6 + [0, 0])
CORNERS = np.array([[0, 0], [9, 0], [0, 7], [9, 7]], np.float32)
MOVED = CORNERS + RNG.uniform(-1.5, 1.5, size=(2, 4, 2)).astype(np.float32)

# case: (keras.ops.image function name, positional args, keyword settings)
CASES = {
    "rgb_to_grayscale": ("rgb_to_grayscale", (IMAGES,), {}),
    "rgb_to_grayscale_uint8": ("rgb_to_grayscale", (PIXELS,), {}),
    "rgb_to_hsv": ("rgb_to_hsv", (IMAGES,), {}),
    "hsv_to_rgb": ("hsv_to_rgb", (IMAGES,), {}),
    "resize_bilinear": ("resize", (IMAGES, (5, 13)), {}),
    "resize_nearest_single": ("resize", (IMAGES[0], (4, 4)), {"interpolation": "nearest"}),
    "resize_bicubic_antialias": ("resize", (IMAGES, (4, 6)),
                                 {"interpolation": "bicubic", "antialias": True}),
    "resize_lanczos5": ("resize", (IMAGES, (9, 7)), {"interpolation": "lanczos5"}),
    "resize_crop": ("resize", (IMAGES, (6, 4)), {"crop_to_aspect_ratio": True}),
    "resize_pad_rows": ("resize", (IMAGES, (6, 3)),
                        {"pad_to_aspect_ratio": True, "fill_value": 0.5}),
    "resize_pad_columns": ("resize", (IMAGES, (4, 9)), {"pad_to_aspect_ratio": True}),
    "resize_uint8": ("resize", (PIXELS, (5, 5)), {}),
    "affine_transform": ("affine_transform", (IMAGES, AFFINE), {}),
    "affine_transform_nearest_wrap": ("affine_transform", (IMAGES[0], OFF_GRID),
                                      {"interpolation": "nearest", "fill_mode": "wrap"}),
    "affine_transform_reflect": ("affine_transform", (IMAGES, AFFINE),
                                 {"fill_mode": "reflect", "fill_value": 0.3}),
    "perspective_transform": ("perspective_transform",
                              (IMAGES, np.stack([CORNERS, CORNERS]), MOVED), {}),
    "perspective_transform_single": ("perspective_transform", (IMAGES[0], MOVED[0], CORNERS),
                                     {"interpolation": "nearest", "fill_value": 0.5}),
    "map_coordinates": ("map_coordinates",
                        (IMAGES[0, :, :, 0], RNG.uniform(-1, 9, size=(2, 5, 4))),
                        {"order": 1, "fill_mode": "mirror"}),
    "map_coordinates_nearest": ("map_coordinates",
                                (IMAGES[0], RNG.uniform(-1, 9, size=(3, 6))),
                                {"order": 0, "fill_mode": "nearest"}),
    # (Keras 3.15 on JAX blurs a channels-last batch as channels-first unless told the
    # layout: see test_gaussian_blur_blurs_height_and_width)
    "gaussian_blur": ("gaussian_blur", (IMAGES,), {"data_format": "channels_last"}),
    "gaussian_blur_asymmetric": ("gaussian_blur", (IMAGES[0],),
                                 {"kernel_size": (5, 3), "sigma": (2.0, 0.7),
                                  "data_format": "channels_last"}),
    "sobel_edges": ("sobel_edges", (IMAGES,), {}),
    "ssim": ("ssim", (IMAGES, np.clip(IMAGES + 0.1 * RNG.normal(size=IMAGES.shape), 0, 1)
                      .astype(np.float32)), {"filter_size": 5}),
    "ssim_single": ("ssim", (IMAGES[0], IMAGES[1]),
                    {"max_val": 2.0, "filter_size": 3, "filter_sigma": 0.8, "k1": 0.02}),
    "extract_patches": ("extract_patches", (IMAGES, 2), {}),
    "extract_patches_strided_same": ("extract_patches", (IMAGES, (3, 4)),
                                     {"strides": (2, 3), "padding": "same"}),
    "extract_patches_dilated_single": ("extract_patches", (IMAGES[0], 2),
                                       {"strides": 1, "dilation_rate": 2}),
    "extract_patches_volumes": ("extract_patches", (VOLUMES, (2, 3, 3)), {}),
    "extract_patches_3d": ("extract_patches_3d", (VOLUMES, 2), {"strides": (1, 2, 3)}),
    "extract_patches_3d_single": ("extract_patches_3d", (VOLUMES[0], (2, 2, 3)),
                                  {"padding": "same"}),
    "pad_images": ("pad_images", (IMAGES, 1, 2), {"target_height": 11, "target_width": 14}),
    "pad_images_single": ("pad_images", (IMAGES[0],),
                          {"bottom_padding": 2, "right_padding": 1, "target_height": 12,
                           "target_width": 13}),
    "crop_images": ("crop_images", (IMAGES, 1, 2), {"target_height": 5, "target_width": 6}),
    "crop_images_single": ("crop_images", (IMAGES[0],),
                           {"top_cropping": 2, "bottom_cropping": 1, "left_cropping": 0,
                            "right_cropping": 3}),
    "scale_and_translate": ("scale_and_translate",
                            (IMAGES, (2, 5, 7, 3), np.array([0.6, 0.7], np.float32),
                             np.array([0.5, -0.3], np.float32), (1, 2), "bilinear"), {}),
    "scale_and_translate_lanczos": ("scale_and_translate",
                                    (IMAGES[0, :, :, 0], (12, 6), np.array([1.5, 0.6]),
                                     np.array([0.0, 1.0]), (0, 1), "lanczos3"),
                                    {"antialias": False}),
}


def _call(function, args, kwargs, jit):
    """`function` on `args`, its array arguments traced under jax.jit if asked."""
    if not jit:
        return function(*args, **kwargs)
    arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]

    def run(*values):
        full = list(args)
        for i, v in zip(arrays, values):
            full[i] = v
        return function(*full, **kwargs)

    return jax.jit(run)(*[args[i] for i in arrays])


def _same(ours, theirs, rtol=2e-5, atol=2e-5):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_keras(case, jit):
    name, args, kwargs = CASES[case]
    ours = _call(getattr(image, name), args, kwargs, jit)
    _same(ours, getattr(keras.ops.image, name)(*args, **kwargs))


def test_elastic_transform_matches_keras_for_the_same_key():
    """kilnet's int seeds make other keys than Keras's ([seed, 0]); given that key, the
    displacement and resampling are Keras's."""
    for images, kwargs in ((IMAGES, {}),
                           (IMAGES[0], {"alpha": 5.0, "sigma": 1.5, "fill_mode": "constant",
                                        "fill_value": 0.2, "interpolation": "nearest"})):
        ours = image.elastic_transform(images, seed=jax.numpy.array([7, 0], "uint32"), **kwargs)
        _same(ours, keras.ops.image.elastic_transform(images, seed=7, **kwargs),
              rtol=1e-4, atol=1e-5)
    once = image.elastic_transform(IMAGES, seed=3)
    assert not np.allclose(np.asarray(once), IMAGES)
    np.testing.assert_array_equal(np.asarray(once), np.asarray(
        image.elastic_transform(IMAGES, seed=3)))   # an int seed: the same draw each call


def test_affine_transform_reads_projective_maps():
    """c0, c1 divide as in Keras's documented map (and TensorFlow's), checked against
    map_coordinates at the divided positions; six numbers mean c0 = c1 = 0."""
    projective = AFFINE.copy()
    projective[:, 6:] = [[0.01, -0.02], [0.0, 0.03]]
    ours = np.asarray(image.affine_transform(IMAGES, projective))
    y, x = np.meshgrid(np.arange(8.0), np.arange(10.0), indexing="ij")
    for i, t in enumerate(projective):
        k = t[6] * x + t[7] * y + 1
        rows, cols = (t[3] * x + t[4] * y + t[5]) / k, (t[0] * x + t[1] * y + t[2]) / k
        for c in range(3):
            expected = image.map_coordinates(IMAGES[i, :, :, c], np.stack([rows, cols]), 1)
            np.testing.assert_allclose(ours[i, :, :, c], np.asarray(expected), atol=1e-5)
    _same(image.affine_transform(IMAGES, AFFINE[:, :6]), image.affine_transform(IMAGES, AFFINE))


def test_gaussian_blur_blurs_height_and_width():
    """By default too (Keras 3.15 on JAX, given data_format=None, blurs a channels-last batch
    along width and channels): a point spreads into the Gaussian's outer product."""
    point = np.zeros((1, 5, 5, 1), np.float32)
    point[0, 2, 2, 0] = 1.0
    blurred = np.asarray(image.gaussian_blur(point, kernel_size=(3, 5), sigma=(1.0, 0.6)))
    rows, cols = (np.exp(-0.5 * (np.arange(n) - n // 2) ** 2 / s ** 2) for n, s in
                  ((5, 0.6), (3, 1.0)))
    expected = np.outer(rows / rows.sum(), cols / cols.sum())   # 5 rows, 3 columns
    np.testing.assert_allclose(blurred[0, :, 1:4, 0], expected, rtol=1e-5, atol=1e-7)


def test_hsv_round_trip_and_grayscale_of_gray():
    back = image.hsv_to_rgb(image.rgb_to_hsv(IMAGES))
    np.testing.assert_allclose(np.asarray(back), IMAGES, atol=1e-5)
    gray = IMAGES[..., :1]
    np.testing.assert_array_equal(np.asarray(image.rgb_to_grayscale(gray)), gray)


def test_extract_patches_are_the_image_s_blocks():
    patches = np.asarray(image.extract_patches(IMAGES, (4, 5)))
    blocks = IMAGES.reshape(2, 2, 4, 2, 5, 3).transpose(0, 1, 3, 2, 4, 5).reshape(2, 2, 2, -1)
    np.testing.assert_array_equal(patches, blocks)


@pytest.mark.parametrize("call, message", [
    (lambda: image.resize(IMAGES, (4, 4), data_format="channels_first"), "moveaxis"),
    (lambda: image.resize(IMAGES, (4, 4), interpolation="area"), "interpolation"),
    (lambda: image.resize(IMAGES, (4,)), "size"),
    (lambda: image.resize(IMAGES, (4, 4), crop_to_aspect_ratio=True,
                          pad_to_aspect_ratio=True), "Only one"),
    (lambda: image.resize(IMAGES[0, 0], (4, 4)), "images.shape"),
    (lambda: image.affine_transform(IMAGES, AFFINE, fill_mode="edge"), "fill_mode"),
    (lambda: image.affine_transform(IMAGES, AFFINE[:, :5]), "transform"),
    (lambda: image.rgb_to_hsv(PIXELS), "float"),
    (lambda: image.rgb_to_grayscale(IMAGES[..., :2]), "channels"),
    (lambda: image.pad_images(IMAGES, 1, 1), "exactly two"),
    (lambda: image.crop_images(IMAGES, 5, 0, target_height=5, target_width=3), ">= 0"),
    (lambda: image.map_coordinates(IMAGES[0], np.zeros((2, 4)), 1), "coordinates"),
    (lambda: image.map_coordinates(IMAGES[0], np.zeros((3, 4)), 3), "order"),
    (lambda: image.perspective_transform(IMAGES, CORNERS[:3], CORNERS[:3]), "start_points"),
    (lambda: image.perspective_transform(IMAGES, CORNERS, MOVED), "one shape"),
    (lambda: image.scale_and_translate(IMAGES, (2, 4, 4, 3), np.ones(2), np.zeros(2),
                                       (1, 2), "area"), "method"),
    (lambda: image.sobel_edges(IMAGES[0]), "batch"),
])
def test_bad_arguments_say_what_was_received(call, message):
    with pytest.raises(ValueError, match="Received") as error:
        call()
    assert message in str(error.value)


def test_the_image_ops_are_keras_s_op_classes_with_their_settings():
    """Every image op kilnet records is a Keras class taking those settings, and Keras's
    constructor plus call take the kilnet.ops.image function's arguments."""
    import importlib
    import inspect
    recorded = {name for name, (_, module, _) in OPS.items() if module.endswith(".image")}
    assert len(recorded) == 13   # not MapCoordinates, ScaleAndTranslate: no batch axis
    for name in recorded:
        cls = getattr(importlib.import_module(OPS[name][1]), name)
        init = [p for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "name")]
        call = [p for p in inspect.signature(cls.call).parameters if p != "self"]
        assert init == list(OPS[name][2]), name
        function = op_function(name)
        assert function is getattr(image, OPS[name][0]) and not hasattr(ops, OPS[name][0])
        assert sorted(init + call) == sorted(inspect.signature(function).parameters), name


def test_a_vit_patch_model_saves_and_loads(tmp_path):
    """extract_patches inside a model, as the ViT tutorial: patches, then a Dense layer."""
    inputs = kilnet.Input(shape=(8, 10, 3))
    x = image.resize(inputs, (8, 8), interpolation="nearest")
    patches = image.extract_patches(x, 4)                         # (2, 2, 48)
    tokens = kilnet.layers.Dense(5)(ops.reshape(patches, (-1, 4, 48)))
    gray = image.rgb_to_grayscale(image.pad_images(inputs, 1, 1, 1, 1))
    quality = image.ssim(inputs, image.gaussian_blur(inputs), filter_size=3)
    model = kilnet.Model(inputs, [tokens, gray, quality])
    expected = model.predict(IMAGES, verbose=0)
    for extension in ("kilnet", "keras"):
        path = str(tmp_path / f"model.{extension}")
        model.save(path)
        for ours, again in zip(expected, kilnet.models.load_model(path).predict(IMAGES,
                                                                                 verbose=0)):
            _same(again, ours)
    for ours, again in zip(expected, keras.models.load_model(
            str(tmp_path / "model.keras")).predict(IMAGES, verbose=0)):
        _same(np.asarray(again), ours, rtol=1e-4, atol=1e-5)
