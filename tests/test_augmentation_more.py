"""Keras 3's newer augmentation layers (color, intensity, blur, histogram, MixUp, CutMix):
their deterministic parts against Keras 3 itself (draws pinned where Keras allows), their
random parts by properties (ranges, frequencies, the MixUp weight's Beta distribution, labels
mixed as the images), keys, inference, one unbatched image, configs with Keras's keys and
values, a model that trains and round-trips through save/load, then errors."""

from __future__ import annotations

import colorsys
import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import check_grad  # noqa: E402
from scipy import stats  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402


def images(shape=(3, 6, 7, 3), seed=0, scale=255.0):
    return (np.random.default_rng(seed).uniform(size=shape) * scale).astype(np.float32)


_COMPILED = {}


def run(layer, x, training=True, key=0):
    """The layer as a compiled model runs it, with the JAX key `key` (one compilation per
    layer, mode and input structure)."""
    cache = (id(layer), training)
    if cache not in _COMPILED:
        _COMPILED[cache] = (layer, jax.jit(
            lambda x, k: layer.apply({}, {}, x, training=training, rng=k)[0]))
    return jax.tree.map(np.asarray, _COMPILED[cache][1](x, jax.random.key(key)))


# -- deterministic parts equal Keras's numbers ----------------------------------------------------
PINNED = [
    lambda m: m.RandomGrayscale(factor=1.0),
    lambda m: m.RandomHue((1.0, 1.0)),             # half a turn: the sign does not matter
    lambda m: m.RandomHue((1.0, 1.0), value_range=(0, 1)),
    lambda m: m.RandomSaturation((0.5, 0.5)),      # x 1
    lambda m: m.RandomSaturation((0.3, 0.3)),      # x 3/7
    lambda m: m.RandomSaturation((0.0, 0.0)),      # gray
    lambda m: m.RandomSaturation((0.7, 0.7), value_range=(0, 1)),
    lambda m: m.RandomColorDegeneration((0.4, 0.4)),
    lambda m: m.RandomColorDegeneration((-0.5, -0.5), value_range=(0, 1)),
    lambda m: m.RandomInvert((1.0, 1.0)),
    lambda m: m.RandomInvert((1.0, 1.0), value_range=(0, 1)),
    lambda m: m.RandomPosterization((3, 3)),
    lambda m: m.RandomPosterization((1, 1), value_range=(0, 1)),
    lambda m: m.Solarization(),                     # threshold 0: every pixel inverted
    lambda m: m.Solarization(value_range=(0, 1)),
    lambda m: m.AutoContrast(),
    lambda m: m.AutoContrast(value_range=(0, 1)),
    lambda m: m.RandomSharpness((0.8, 0.8)),
    lambda m: m.RandomSharpness((0.1, 0.1), value_range=(0, 1)),
    lambda m: m.RandomGaussianBlur(factor=(1.0, 1.0), sigma=(0.7, 0.7)),
    lambda m: m.RandomGaussianBlur(factor=(1.0, 1.0), kernel_size=(3, 5), sigma=(0.4, 0.4)),
    lambda m: m.RandomColorJitter(brightness_factor=(0.1, 0.1), saturation_factor=(0.4, 0.4),
                                  hue_factor=(1.0, 1.0)),
    lambda m: m.RandomColorJitter(value_range=(0, 1), contrast_factor=(0.0, 0.0),
                                  saturation_factor=(0.6, 0.6)),
]


def scaled_to(value_range, x):
    return x / 255.0 if value_range == (0, 1) else x


@pytest.mark.parametrize("make", PINNED)
def test_pinned_draws_match_keras(make):
    ours = make(layers)
    x = scaled_to(tuple(ours.value_range) if hasattr(ours, "value_range") else None, images())
    expected = np.asarray(make(keras.layers)(x, training=True))
    np.testing.assert_allclose(run(ours, x), expected, rtol=1e-5, atol=2e-4 * x.max())


@pytest.mark.parametrize("make", [PINNED[1], PINNED[15], PINNED[19]])
def test_one_unbatched_image_as_keras(make):
    x = images()[0]
    out = np.asarray(make(layers)(x))
    assert out.shape == x.shape
    np.testing.assert_allclose(out, np.asarray(make(keras.layers)(x, training=True)),
                               rtol=1e-5, atol=0.05)


@pytest.mark.parametrize("bins, value_range", [(256, (0, 255)), (17, (0, 1))])
def test_equalization_matches_keras_image_by_image(bins, value_range):
    x = scaled_to(value_range, np.round(images((2, 6, 7, 2), seed=1) / 8.0) * 8.0)
    ours = run(layers.Equalization(value_range, bins=bins), x)
    # Keras 3.15 counts one histogram over the whole batch; kilnet counts each image's own,
    # which is what Keras gives for that image alone
    twin = keras.layers.Equalization(value_range, bins=bins)
    for image, out in zip(x, ours):
        np.testing.assert_allclose(out, np.asarray(twin(image[None], training=True))[0],
                                   rtol=1e-5, atol=1e-4)
    assert not np.allclose(ours, x)


def test_auto_contrast_applies_at_inference_and_keeps_constant_channels():
    x = images((2, 5, 5, 2)) * 0.5 + 40.0
    x[1, :, :, 1] = 7.0
    out = run(layers.AutoContrast(), x, training=False)
    np.testing.assert_allclose(out, np.asarray(keras.layers.AutoContrast()(x, training=False)),
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out[0].min(axis=(0, 1)), 0.0, atol=1e-4)
    np.testing.assert_allclose(out[0].max(axis=(0, 1)), 255.0, rtol=1e-6)
    np.testing.assert_array_equal(out[1, :, :, 1], 7.0)


def test_solarization_with_a_fixed_threshold_and_addition():
    x = images((4, 5, 6, 1))
    out = run(layers.Solarization(addition_factor=(0.1, 0.1), threshold_factor=(0.6, 0.6)), x)
    shifted = np.clip(x + 25.5, 0, 255)
    np.testing.assert_allclose(out, np.where(shifted < 153.0, shifted, 255.0 - shifted),
                               rtol=1e-6, atol=1e-4)


# -- random parts by their properties -------------------------------------------------------------
def test_hue_shift_is_plus_or_minus_half_the_draw():
    x = images((300, 1, 1, 3))
    shift = (rgb_hue(run(layers.RandomHue((0.2, 0.6)), x, key=3)) - rgb_hue(x) + 0.5) % 1.0 - 0.5
    magnitude = np.abs(shift)
    assert magnitude.min() >= 0.1 - 1e-3 and magnitude.max() <= 0.3 + 1e-3
    assert 0.35 < (shift > 0).mean() < 0.65                 # both signs


def rgb_hue(x):
    """The hue of every pixel by Python's colorsys (an independent reference)."""
    return np.array([colorsys.rgb_to_hsv(*p)[0] for p in (x.reshape(-1, 3) / 255.0)])


def test_saturation_stays_valid_where_keras_overshoots():
    x = images((2, 4, 4, 3))
    ours = run(layers.RandomSaturation((0.9, 0.9)), x)      # x 9: saturates fully
    assert ours.min() >= -1e-3 and ours.max() <= 255.0 + 1e-3
    np.testing.assert_allclose(ours.min(axis=-1), 0.0, atol=1e-3)   # saturation 1
    np.testing.assert_allclose(ours.max(axis=-1), x.max(axis=-1), rtol=1e-5)  # value kept
    theirs = np.asarray(keras.layers.RandomSaturation((0.9, 0.9))(x, training=True))
    assert theirs.min() < -100.0   # Keras 3.15 clips the saturation to value_range


@pytest.mark.parametrize("make, rate", [
    (lambda: layers.RandomGrayscale(0.3), 0.3),
    (lambda: layers.RandomInvert(0.5), 0.25),          # p in [0, 0.5], then p
    (lambda: layers.RandomInvert((0.6, 0.8)), 0.7),
    (lambda: layers.RandomGaussianBlur(factor=(0.4, 0.4)), 0.4),
])
def test_how_often_an_image_is_changed(make, rate):
    x = images((600, 3, 3, 3))
    changed = np.abs(run(make(), x, key=5) - x).max(axis=(1, 2, 3)) > 1e-3
    assert abs(changed.mean() - rate) < 0.07


def test_grayscale_images_have_equal_channels():
    x = images((50, 3, 3, 3))
    out = run(layers.RandomGrayscale(0.5), x, key=1)
    gray = np.abs(out - x).max(axis=(1, 2, 3)) > 0
    np.testing.assert_allclose(out[gray], out[gray][..., :1].repeat(3, -1))
    np.testing.assert_array_equal(out[~gray], x[~gray])
    assert 0 < gray.sum() < 50


def test_posterization_draws_bits_below_the_upper_end():
    x = np.tile(np.arange(256, dtype=np.float32).reshape(1, 16, 16, 1), (200, 1, 1, 1))
    out = run(layers.RandomPosterization((2, 5)), x, key=2)
    levels = np.array([len(np.unique(o)) for o in out])     # 2**bits distinct levels
    assert set(levels) == {4, 8, 16}                        # bits 2, 3, 4: never 5, as Keras


@pytest.mark.parametrize("layer, end, factor_of, low, high", [
    # x + f (gray - x): the blend toward gray (factor 1) has weight f
    (layers.RandomColorDegeneration((0.2, 0.6)), layers.RandomColorDegeneration((1.0, 1.0)),
     lambda weight: weight, 0.2, 0.6),
    # x + (1 - 2f) (smooth - x): the blend toward the smooth image (factor 0) has 1 - 2f
    (layers.RandomSharpness((0.1, 0.3)), layers.RandomSharpness((0.0, 0.0)),
     lambda weight: (1.0 - weight) / 2.0, 0.1, 0.3),
])
def test_blend_factors_lie_in_their_range(layer, end, factor_of, low, high):
    x = images((200, 5, 5, 3), scale=100.0) + 50.0   # away from the clipping bounds
    toward = run(end, x) - x
    weight = ((run(layer, x, key=4) - x) * toward).sum(axis=(1, 2, 3)) / (toward ** 2).sum(
        axis=(1, 2, 3))
    f = factor_of(weight)
    assert f.min() >= low - 1e-3 and f.max() <= high + 1e-3
    assert f.max() - f.min() > 0.5 * (high - low)


def test_blur_standard_deviations_are_per_image_and_in_range():
    x = np.zeros((100, 7, 7, 1), np.float32)
    x[:, 3, 3, 0] = 100.0
    out = run(layers.RandomGaussianBlur((1.0, 1.0), kernel_size=7, sigma=(0.3, 0.9)), x, key=6)
    # the impulse's response is the kernel: along each axis, the neighbour of the center
    # holds exp(-1 / (2 sigma^2)) times the center's weight
    vertical = out[:, 4, 3, 0] / out[:, 3, 3, 0]
    horizontal = out[:, 3, 4, 0] / out[:, 3, 3, 0]
    for ratio in (vertical, horizontal):
        sigma = np.sqrt(-0.5 / np.log(ratio))
        assert sigma.min() >= 0.3 - 1e-3 and sigma.max() <= 0.9 + 1e-3 and sigma.std() > 0.1
    assert np.abs(vertical - horizontal).max() > 0.1      # two draws per image
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 100.0, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [
    {"x_factor": (0.2, 0.2), "y_factor": (0.1, 0.1), "fill_mode": "constant",
     "fill_value": 3.0},
    # 0.27 * column never ends in .5: no rounding ties for "nearest"
    {"x_factor": (0.0, 0.0), "y_factor": (0.27, 0.27), "interpolation": "nearest"},
])
def test_shear_by_a_fixed_amount_matches_keras_up_to_its_sign(kwargs):
    x = images((6, 6, 7, 2))
    sx, sy = kwargs["x_factor"][0], kwargs["y_factor"][0]
    fill = {"fill_mode": "reflect", **{k: kwargs[k] for k in ("fill_mode", "fill_value",
                                                              "interpolation") if k in kwargs}}

    def keras_shear(sign):   # Keras's own resampling, by its map (a0, a1, a2, b0, b1, b2)
        maps = np.tile(np.array([1, sign * sx, 0, sign * sy, 1, 0, 0, 0], np.float32), (6, 1))
        return np.asarray(keras.ops.image.affine_transform(x, maps, **fill))

    both = np.stack([keras_shear(1.0), keras_shear(-1.0)])            # (sign, batch, ...)
    for out in (run(layers.RandomShear(**kwargs), x, key=2),
                np.asarray(keras.layers.RandomShear(**kwargs)(x, training=True))):
        error = np.abs(out[None] - both).max(axis=(2, 3, 4))           # (sign, batch)
        assert (error.min(axis=0) < 1e-3).all()
    signs = np.abs(run(layers.RandomShear(**kwargs), x, key=2)[None] - both).max(
        axis=(2, 3, 4)).argmin(axis=0)
    assert 0 < signs.sum() < 6                                        # both signs drawn


def test_erasing_boxes_and_fill_values():
    x = np.full((300, 8, 8, 3), 100.0, np.float32)
    # sides sqrt(0.25) * 8 = 4 pixels wide at any position: 16 pixels, as Keras
    for erase in (layers.RandomErasing((1.0, 1.0), scale=(0.25, 0.25), fill_value=0.0),
                  keras.layers.RandomErasing((1.0, 1.0), scale=(0.25, 0.25), fill_value=0.0)):
        out = np.asarray(erase(x[:20], training=True))
        np.testing.assert_array_equal((out == 0).all(-1).sum(axis=(1, 2)), 16)
    per_channel = run(layers.RandomErasing((1.0, 1.0), fill_value=[1.0, 2.0, 300.0]), x[:20])
    erased = per_channel[(per_channel != 100).any(-1)]
    np.testing.assert_array_equal(erased, np.tile([1.0, 2.0, 255.0], (len(erased), 1)))
    # noise fill: normal * 255 clipped to (0, 255), half of it 0; about half the images
    noisy = run(layers.RandomErasing(0.5, scale=(0.3, 0.3)), x, key=3)
    changed = (noisy != 100).any(axis=(1, 2, 3))
    assert abs(changed.mean() - 0.25) < 0.07
    fill = noisy[noisy != 100]
    assert fill.min() == 0.0 and fill.max() == 255.0 and 0.4 < (fill == 0).mean() < 0.6


def test_rand_augment_picks_one_of_keras_operations_per_image():
    """With factor 0 six operations are identities and five are fixed maps (the sharpness
    blur, one bit, inversion, auto-contrast, equalization): each output is one of them."""
    x = np.round(images((220, 5, 5, 3), seed=2))
    candidates = [x] + [run(make(layers), x) for make in (
        lambda m: m.RandomSharpness((0.0, 0.0)), lambda m: m.RandomPosterization((1, 1)),
        lambda m: m.Solarization(), lambda m: m.AutoContrast(), lambda m: m.Equalization())]
    candidates = np.stack(candidates)                      # (operation, batch, ...)

    def picks(out):
        error = np.abs(out[None] - candidates[:, :len(out)]).max(axis=(2, 3, 4))
        assert (error.min(axis=0) < 1e-2).all()
        return error.argmin(axis=0)

    chosen = picks(run(layers.RandAugment(num_ops=1, factor=0.0), x, key=4))
    frequencies = np.bincount(chosen, minlength=6) / len(chosen)
    np.testing.assert_allclose(frequencies, [6 / 11] + [1 / 11] * 5, atol=0.06)
    # Keras's operations are the same maps (one image: its batch-wide choice is the image's)
    picks(np.asarray(keras.layers.RandAugment(num_ops=1, factor=0.0, seed=1)(x[:1])))
    np.testing.assert_array_equal(run(layers.RandAugment(num_ops=0), x[:4]), x[:4])
    np.testing.assert_array_equal(run(layers.RandAugment(), x[:4], training=False), x[:4])


def test_pipeline_applies_its_layers_in_order_with_the_training_flag():
    x = images((4, 5, 5, 3))
    pipeline = layers.Pipeline([layers.AutoContrast(), layers.RandomInvert((1.0, 1.0))])
    np.testing.assert_allclose(run(pipeline, x), 255.0 - run(layers.AutoContrast(), x),
                               rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(run(pipeline, x, training=False),
                               run(layers.AutoContrast(), x), rtol=1e-6)
    keras_pipeline = keras.layers.Pipeline([keras.layers.AutoContrast(),
                                            keras.layers.RandomInvert((1.0, 1.0))])
    np.testing.assert_allclose(np.asarray(pipeline(x)), np.asarray(keras_pipeline(x)),
                               rtol=1e-5, atol=1e-3)
    again = layers.Pipeline.from_config(pipeline.get_config())
    assert [type(layer).__name__ for layer in again.layers] == ["AutoContrast", "RandomInvert"]
    assert set(pipeline.get_config()) == set(keras_pipeline.get_config()) == {"name", "layers"}
    mixed = layers.Pipeline([layers.MixUp()])(one_hot_batch(4))      # data dicts go through
    assert set(mixed) == {"images", "labels"}


# -- MixUp and CutMix -----------------------------------------------------------------------------
def one_hot_batch(n, size=3):
    """Image i holds the value i everywhere; label i is the i-th one-hot row."""
    x = np.repeat(np.arange(n, dtype=np.float32), size * size).reshape(n, size, size, 1)
    return {"images": x, "labels": np.eye(n, dtype=np.float32)}


def test_mixup_weights_follow_beta_and_labels_mix_as_images():
    n, alpha = 400, 0.4
    data = one_hot_batch(n)
    out = run(layers.MixUp(alpha=alpha), data, key=7)
    labels = out["labels"]
    # each image is the label-weighted sum of the images
    np.testing.assert_allclose(out["images"][:, 0, 0, 0], labels @ np.arange(n), rtol=1e-5,
                               atol=1e-3)
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    partner = np.argmax(np.where(np.eye(n, dtype=bool), -1.0, labels), axis=1)
    moved = labels[np.arange(n), partner] > 0
    assert moved.mean() > 0.9
    assert len(set(partner[moved])) == moved.sum()          # partners by a permutation
    # the weight on the image's own label is Beta(alpha, alpha)
    assert stats.kstest(np.diag(labels)[moved], stats.beta(alpha, alpha).cdf).pvalue > 0.01


def test_cutmix_pastes_a_box_and_weighs_labels_by_its_area():
    n, size = 300, 8
    data = one_hot_batch(n, size)
    out = run(layers.CutMix(), data, key=8)
    own = np.diag(out["labels"])
    np.testing.assert_allclose(out["labels"].sum(axis=1), 1.0, rtol=1e-6)
    for i in range(n):
        pasted = out["images"][i, :, :, 0] != i
        partner = np.argmax(out["labels"][i] - np.eye(n)[i] * 2)
        if partner == i or not pasted.any():
            continue
        rows, cols = np.nonzero(pasted)
        box = pasted[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all()                                              # a rectangle
        assert set(np.unique(out["images"][i][pasted[..., None]])) == {partner}
        # label weight 1 - (box side lengths' product) / area; each side covers its length
        # in pixels give or take one
        side_h, side_w = box.shape
        area = (1.0 - own[i]) * size * size
        assert (side_h - 1) * (side_w - 1) - 1e-3 <= area <= (side_h + 1) * (side_w + 1)
    assert 0.2 < (own < 1.0 - 1e-6).mean()


@pytest.mark.parametrize("make", [lambda: layers.MixUp(), lambda: layers.CutMix()])
def test_mixing_layers_pass_data_through_at_inference_and_for_one_image(make):
    data = one_hot_batch(4)
    same = run(make(), data, training=False)
    np.testing.assert_array_equal(same["images"], data["images"])
    np.testing.assert_array_equal(same["labels"], data["labels"])
    image = data["images"][1]
    np.testing.assert_array_equal(np.asarray(make()(image)), image)
    assert np.asarray(make()(data["images"])).shape == data["images"].shape  # images alone


def test_mixing_dict_call_as_keras_returns_a_dict():
    data = one_hot_batch(6)
    out = layers.MixUp()(dict(data))
    theirs = keras.layers.MixUp()(dict(data))
    assert set(out) == set(theirs) == {"images", "labels"}
    assert np.asarray(out["labels"]).shape == np.asarray(theirs["labels"]).shape


# -- keys, inference, padding rows ----------------------------------------------------------------
RANDOM = [
    lambda: layers.RandomGrayscale(),
    lambda: layers.RandomHue(0.5),
    lambda: layers.RandomSaturation(0.8),
    lambda: layers.RandomColorDegeneration(0.8),
    lambda: layers.RandomColorJitter(brightness_factor=0.3, hue_factor=0.3),
    lambda: layers.RandomInvert(),
    lambda: layers.RandomPosterization(6),
    lambda: layers.Solarization(0.3, 0.7),
    lambda: layers.RandomSharpness(0.9),
    lambda: layers.RandomGaussianBlur(),
]


@pytest.mark.parametrize("make", RANDOM)
def test_keys_inference_and_padding_rows(make):
    layer = make()
    x = images((8, 5, 6, 3))
    a = run(layer, x, key=1)
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(run(layer, x, key=1), a)           # same key
    assert not np.allclose(run(layer, x, key=2), a)                   # another key
    np.testing.assert_array_equal(run(layer, x, training=False), x)   # inference
    padded = np.concatenate([x, np.full((3,) + x.shape[1:], 9.0, np.float32)])
    np.testing.assert_array_equal(run(layer, padded, key=1)[:8], a)
    same = run(layer, np.repeat(x[:1], 8, axis=0), key=3)            # a draw per image
    assert len({o.tobytes() for o in same}) > 1


def test_uint8_images_come_out_as_float32():
    x = images((2, 4, 4, 3)).astype(np.uint8)
    for layer in (layers.RandomHue((0.2, 0.2)), layers.Equalization(), layers.AutoContrast()):
        assert np.asarray(layer(x)).dtype == np.float32
    assert np.asarray(keras.layers.AutoContrast()(x)).dtype == np.float32   # as Keras


@pytest.mark.parametrize("make", [
    lambda: layers.RandomColorDegeneration((0.3, 0.3)),
    lambda: layers.RandomSharpness((0.7, 0.7)),
    lambda: layers.MixUp(),
])
def test_gradients_through_training_augmentation(make):
    layer = make()
    w = np.random.default_rng(1).normal(size=(2, 4, 5, 3))
    key = jax.random.key(0)
    check_grad(lambda x: jnp.sum(layer.apply({}, {}, x, training=True, rng=key)[0] * w),
               images((2, 4, 5, 3), scale=1.0) * 100 + 50)


# -- configs, saving, a model that trains ---------------------------------------------------------
CONFIGS = [
    lambda m: m.RandomGrayscale(0.3),
    lambda m: m.RandomHue((0.1, 0.4), value_range=(0, 1), seed=3),
    lambda m: m.RandomSaturation(0.2),
    lambda m: m.RandomColorDegeneration((-0.2, 0.5), value_range=(-1, 1)),
    lambda m: m.RandomColorJitter(value_range=(0, 1), brightness_factor=0.2,
                                  hue_factor=(0.1, 0.2), seed=4),
    lambda m: m.RandomInvert(0.4, value_range=(0, 1)),
    lambda m: m.RandomPosterization((2, 6)),
    lambda m: m.Solarization(0.2, (0.3, 0.5), value_range=(0, 1)),
    lambda m: m.AutoContrast(value_range=(0, 1)),
    lambda m: m.RandomSharpness(0.3, seed=1),
    lambda m: m.RandomGaussianBlur(0.5, kernel_size=(3, 5), sigma=(0.2, 0.6)),
    lambda m: m.Equalization(bins=64),
    lambda m: m.MixUp(alpha=0.3, seed=2),
    lambda m: m.CutMix((0.2, 0.7)),
    lambda m: m.RandomErasing(0.4, scale=0.2, fill_value=3.0, value_range=(0, 1)),
    lambda m: m.RandAugment(value_range=(0, 1), num_ops=3, factor=(0.1, 0.4),
                            interpolation="nearest"),
]


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("make", CONFIGS)
def test_config_round_trip_with_keras_keys_and_values(make):
    layer = make(layers)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    keras_config = make(keras.layers).get_config()
    ours = set(config) - {"name", "trainable", "dtype"}
    assert set(config) == set(keras_config)
    assert config["dtype"] == keras_config["dtype"]
    for key in ours:
        assert _plain(config[key]) == pytest.approx(_plain(keras_config[key])), key
    assert type(layer).__name__ in layers.LAYER_TYPES
    assert type(layer).__name__ in layers.__all__


def test_shear_config_loads_in_keras_and_keras_config_loads_in_kilnet():
    """Keras 3.15 saves RandomShear(0.3) with x_factor (-0.3, 0.3), which its constructor
    refuses; kilnet saves the argument as given, and reads Keras's form too."""
    ours = layers.RandomShear(0.3, (0.1, 0.2), fill_mode="nearest", fill_value=1.0)
    config = ours.get_config()
    assert config["x_factor"] == 0.3 and config["y_factor"] == (0.1, 0.2)
    twin = keras.layers.RandomShear(0.3, (0.1, 0.2), fill_mode="nearest", fill_value=1.0)
    loaded = keras.layers.RandomShear.from_config(config)
    assert _plain(loaded.get_config()) == _plain(dict(twin.get_config(), name=config["name"]))
    with pytest.raises(TypeError, match="factor"):   # Keras's own config does not load back into Keras
        keras.layers.RandomShear.from_config(twin.get_config())
    again = layers.RandomShear.from_config(twin.get_config())   # the same draws as the original
    x = images((4, 5, 6, 1))
    np.testing.assert_array_equal(run(again, x, key=1), run(ours, x, key=1))


def test_model_with_the_layers_trains_and_survives_save_load(tmp_path):
    r = np.random.default_rng(0)
    x = r.uniform(0, 255, size=(24, 6, 6, 3)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 127).astype(np.int32)
    model = kilnet.Sequential([
        kilnet.Input(shape=(6, 6, 3)),
        layers.RandomColorJitter(brightness_factor=0.1, saturation_factor=0.2),
        layers.RandomGrayscale(0.2),
        layers.RandomSharpness(0.3),
        layers.AutoContrast(),
        layers.MixUp(),
        layers.Pipeline([layers.RandomErasing(0.3), layers.RandomInvert(0.2)]),
        layers.RandomShear(0.1),
        layers.Rescaling(1 / 255.0),
        layers.Flatten(),
        layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0, seed=0)
    assert np.isfinite(history.history["loss"]).all()
    path = tmp_path / "m.kilnet"
    model.save(path)
    loaded = kilnet.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(layer).__name__ for layer in loaded.layers][:7] == [
        "RandomColorJitter", "RandomGrayscale", "RandomSharpness", "AutoContrast", "MixUp",
        "Pipeline", "RandomShear"]
    assert [type(layer).__name__ for layer in loaded.layers[5].layers] == [
        "RandomErasing", "RandomInvert"]


def test_keras_files_both_ways(tmp_path):
    """A model with the layers (a Pipeline too) saved as .keras opens in Keras with the same
    predictions, and in kilnet again. (16 bins: Keras traces Equalization's histogram one bin
    at a time, again for each layer its Sequential adds while loading; 256 bins took 15 CPU
    seconds there. The default's numbers are compared with Keras's above.)"""
    model = kilnet.Sequential([
        kilnet.Input(shape=(5, 5, 3)), layers.RandomHue(0.2), layers.AutoContrast(),
        layers.Pipeline([layers.RandomInvert(0.3), layers.Equalization(bins=16)]),
        layers.RandomShear(0.2), layers.RandAugment(num_ops=1), layers.RandomErasing(),
        layers.MixUp(), layers.Flatten(), layers.Dense(2)])
    path = tmp_path / "m.keras"
    model.save(path)
    x = images((2, 5, 5, 3))
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(keras.saving.load_model(path).predict(x, verbose=0), expected,
                               rtol=1e-4, atol=1e-4)
    again = kilnet.models.load_model(path)
    np.testing.assert_array_equal(again.predict(x, verbose=0), expected)
    assert [type(layer).__name__ for layer in again.layers[2].layers] == ["RandomInvert",
                                                                          "Equalization"]


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.RandomGrayscale(1.5), ValueError, r"factor must be a number in \[0, 1\]"
                                                      r".*Received: factor=1.5"),
    (lambda: layers.RandomHue(0.1, data_format="channels_first"), ValueError,
     r"channels_last.*Received: data_format='channels_first'"),
    (lambda: layers.RandomHue(-0.2), ValueError, r"factor must be.*Received: factor=-0.2"),
    (lambda: layers.RandomInvert(0.5, value_range=1), ValueError,
     r"value_range must be a pair.*Received: value_range=1"),
    (lambda: layers.RandomPosterization(9), ValueError, r"integer in \[1, 8\].*factor=9"),
    (lambda: layers.RandomPosterization(2.5), ValueError, r"Received: factor=2.5"),
    (lambda: layers.Solarization(threshold_factor=1.5), ValueError,
     r"threshold_factor must be.*Received: threshold_factor=\(0, 1.5\)"),
    (lambda: layers.RandomGaussianBlur(kernel_size=4), ValueError,
     r"kernel_size must be an odd.*Received: kernel_size=4"),
    (lambda: layers.RandomGaussianBlur(sigma=2.0), ValueError, r"sigma must be.*sigma=2.0"),
    (lambda: layers.Equalization(bins=1), ValueError, r"bins must be.*Received: bins=1"),
    (lambda: layers.MixUp(alpha=0), ValueError, r"alpha must be a positive.*alpha=0"),
    (lambda: layers.CutMix(seed="x"), TypeError, r"seed must be an integer.*seed='x'"),
    (lambda: layers.RandomShear(1.5), ValueError, r"x_factor must be.*x_factor=1.5"),
    (lambda: layers.RandomErasing(fill_value=(1.0, 2.0)), ValueError,
     r"fill_value must be None.*list of 3.*Received: fill_value=\(1.0, 2.0\)"),
    (lambda: layers.RandAugment(num_ops=-1), ValueError, r"num_ops must be.*num_ops=-1"),
    (lambda: layers.RandAugment(interpolation="cubic"), ValueError,
     r"interpolation must be one of.*'cubic'"),
    (lambda: layers.Pipeline(layers.RandomFlip()), ValueError,
     r"Pipeline takes a list of kilnet layers. Received"),
])
def test_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_rgb_layers_refuse_other_channel_counts():
    with pytest.raises(ValueError, match=r"RandomHue needs images with 3 channels.*Received"):
        kilnet.Sequential([kilnet.Input(shape=(4, 4, 1)), layers.RandomHue(0.1)])
    with pytest.raises(ValueError, match=r"needs images with 1 or 3 channels"):
        layers.RandomGrayscale()(np.zeros((1, 2, 2, 4), np.float32))


def test_mixing_refuses_other_data_keys():
    data = one_hot_batch(2)
    data["bounding_boxes"] = np.zeros((2, 1, 4), np.float32)
    with pytest.raises(ValueError, match=r'must hold "images".*Received keys'):
        layers.MixUp()(data)


def test_image_layers_take_one_unbatched_image_as_keras():
    """Keras's image layers take one (height, width, channels) image (a map over single
    images, `layer(image)`) and return it unbatched."""
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    image = np.random.default_rng(0).uniform(0, 255, (12, 10, 3)).astype("float32")
    for make in (lambda lib: lib.layers.Resizing(6, 8), lambda lib: lib.layers.CenterCrop(5, 4)):
        np.testing.assert_allclose(np.asarray(make(kilnet)(image)),
                                   np.asarray(make(keras)(image)), rtol=1e-5, atol=1e-3)
    for name in ("RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
                 "RandomBrightness", "RandomCrop"):
        args = {"RandomTranslation": (0.1, 0.1), "RandomCrop": (6, 6)}.get(name, (0.2,))
        mine = getattr(kilnet.layers, name)(*args)(image)
        assert mine.shape == getattr(keras.layers, name)(*args)(image).shape, name
    flip = kilnet.layers.RandomFlip("horizontal")
    seen = set()
    for _ in range(12):   # each draw: the image as it is or mirrored left-right
        out = np.asarray(flip(image))
        same, mirrored = np.array_equal(out, image), np.array_equal(out, image[:, ::-1])
        assert same or mirrored
        seen.add(mirrored)
    assert seen == {True, False}
    np.testing.assert_array_equal(np.asarray(flip(image, training=False)), image)
