"""Preprocessing and augmentation layers: Normalization (adapt on arrays and on batches),
Resizing, CenterCrop against Keras 3; the random augmentation layers by their geometry
(exact flips, Keras's affine maps for a fixed rotation, zoom, shift or brightness), their
statistics, their keys (same key same output, another key another output, padding rows do not
matter) and identity at inference; gradients, configs, tiny models that train and round-trip
through save/load, then errors."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import check_grad  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402
from _training import assert_fit_lowers_loss  # noqa: E402


def rng(seed=0):
    return np.random.default_rng(seed)


def images(shape=(3, 7, 9, 2), seed=0, scale=255.0):
    return (rng(seed).uniform(size=shape) * scale).astype(np.float32)


def run(layer, x, training=False, key=0):
    """The built layer's output as one compiled program, with the JAX key `key`."""
    layer.build_weights(rng(), x.shape[1:])

    def forward(state, x, k):
        return layer.apply({}, state, x, training=training, rng=k)[0]

    return np.asarray(jax.jit(forward)(layer.state_tree(), x, jax.random.key(key)))


def check_shape_and_dtype(layer, x, y):
    assert y.dtype == np.float32
    assert y.shape[1:] == tuple(layer.sample_output_shape(x.shape[1:]))


# -- Normalization --------------------------------------------------------------------------------
@pytest.mark.parametrize("axis, shape", [(-1, (40, 3)), (None, (40, 3)), ((1, 2), (30, 4, 2)),
                                         (1, (30, 4, 2)), (-1, (30, 4, 2))])
def test_normalization_adapt_matches_keras(axis, shape):
    data = rng().normal(3.0, 2.0, size=shape).astype(np.float32)
    ours, theirs = layers.Normalization(axis=axis), keras.layers.Normalization(axis=axis)
    ours.adapt(data)
    theirs.adapt(data)
    for mine, keras_weight in zip(ours.get_weights(), theirs.get_weights()):
        assert mine.shape == keras_weight.shape
        np.testing.assert_allclose(mine, keras_weight, rtol=1e-6, atol=1e-6)
    assert [v.name for v in ours.weights] == ["mean", "variance", "count"]
    x = rng(1).normal(3.0, 2.0, size=(5,) + shape[1:]).astype(np.float32)
    y = run(ours, x)
    check_shape_and_dtype(ours, x, y)
    np.testing.assert_allclose(y, np.asarray(theirs(x)), rtol=1e-5, atol=1e-5)
    # set_weights into Keras (the weight order) gives the same outputs too
    fresh = keras.layers.Normalization(axis=axis)
    fresh.build(shape)
    fresh.set_weights(ours.get_weights())
    fresh.finalize_state()   # Keras's set_weights leaves its cached statistics stale
    np.testing.assert_allclose(y, np.asarray(fresh(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axis, shape", [(-1, (40, 3)), (None, (40, 3)), ((1, 2), (30, 4, 2)),
                                         (1, (30, 4, 2)), (-1, (12, 5, 5, 3))])
def test_normalization_mean_and_variance_have_keras_s_broadcast_shape(axis, shape):
    """keras.io's preprocessing-layers guide prints `layer.mean` after adapt: Keras keeps it
    in the inputs' broadcast shape ((1, 3) for (n, 3) data), so `layer.mean[0]` is the row of
    per-feature means; the weights (adapt_mean, get_weights) keep the kept axes' shape."""
    data = rng().normal(3.0, 2.0, size=shape).astype(np.float32)
    ours, theirs = layers.Normalization(axis=axis), keras.layers.Normalization(axis=axis)
    assert ours.mean is None and ours.variance is None   # unbuilt: Keras's mean is None
    ours.adapt(data)
    theirs.adapt(data)
    for mine, keras_value in ((ours.mean, theirs.mean), (ours.variance, theirs.variance),
                              (ours.mean[0], theirs.mean[0])):
        assert mine.shape == keras_value.shape and mine.dtype == keras_value.dtype
        np.testing.assert_allclose(mine, keras_value, rtol=1e-6, atol=1e-6)
    assert ours.adapt_mean.shape == tuple(theirs.adapt_mean.shape)
    assert ours.adapt_variance.shape == tuple(theirs.adapt_variance.shape)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]


def test_normalization_given_statistics_read_back_in_keras_s_broadcast_shape():
    x = np.ones((2, 4, 3), np.float32)
    for kwargs in ({"mean": 2.0, "variance": 4.0}, {"mean": [1.0, 2.0, 3.0],
                                                    "variance": [1.0, 1.0, 4.0]},
                   {"axis": (1, 2), "mean": [1.0, 2.0, 3.0], "variance": [1.0, 1.0, 4.0]}):
        ours, theirs = layers.Normalization(**kwargs), keras.layers.Normalization(**kwargs)
        assert ours.mean is None and theirs.mean is None   # not built yet
        ours(x), theirs(x)
        assert ours.adapt_mean is None   # no weights: the statistics are settings
        for mine, keras_value in ((ours.mean, theirs.mean), (ours.variance, theirs.variance)):
            assert mine.shape == keras_value.shape
            np.testing.assert_array_equal(mine, keras_value)


def test_normalization_mean_shape_after_a_symbolic_call_loading_and_set_weights(tmp_path):
    data = rng().normal(3.0, 2.0, size=(20, 3)).astype(np.float32)

    def model_of(lib):
        inputs = lib.Input((3,))
        norm = lib.layers.Normalization()
        outputs = lib.layers.Dense(1)(norm(inputs))
        assert tuple(norm.mean.shape) == (1, 3)   # built by the call on an Input, as Keras's
        norm.adapt(data)
        return lib.Model(inputs, outputs)

    ours, theirs = model_of(kilnet), model_of(keras)
    ours.save(tmp_path / "kilnet.keras")
    theirs.save(tmp_path / "keras.keras")
    ours.save(tmp_path / "m.kilnet")
    expected = np.asarray(theirs.layers[1].mean)
    assert expected.shape == (1, 3)
    for path in ("kilnet.keras", "keras.keras", "m.kilnet"):
        loaded = kilnet.models.load_model(tmp_path / path).layers[1]
        np.testing.assert_allclose(np.asarray(loaded.mean), expected, rtol=1e-6)
        assert loaded.variance.shape == (1, 3)
    in_keras = keras.saving.load_model(tmp_path / "kilnet.keras").layers[1]
    np.testing.assert_allclose(np.asarray(in_keras.mean), expected, rtol=1e-6)
    # kilnet's statistics are the weights' own: current after set_weights (Keras's are
    # refreshed by adapt and loading only)
    norm = ours.layers[1]
    mean, variance, count = norm.get_weights()
    norm.set_weights([mean + 1.0, variance, count])
    np.testing.assert_allclose(np.asarray(norm.mean), expected + 1.0, rtol=1e-6)


def test_normalization_adapt_on_batches_is_the_streaming_mean_and_variance():
    data = rng().normal(-2.0, 5.0, size=(50, 4)).astype(np.float32)
    batches = [data[:16], data[16:32], data[32:48], data[48:]]   # a short last batch
    ours, theirs = layers.Normalization(), keras.layers.Normalization()
    ours.adapt(iter(batches))            # a generator-like iterable
    theirs.adapt(data)                   # (Keras's adapt on a list needs TensorFlow)
    mean, variance, count = ours.get_weights()
    np.testing.assert_allclose(mean, data.astype(np.float64).mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(variance, data.astype(np.float64).var(0), rtol=1e-6)
    np.testing.assert_allclose(mean, theirs.get_weights()[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(variance, theirs.get_weights()[1], rtol=1e-6)
    assert count == theirs.get_weights()[2] == 0   # Keras 3 never counts (float32 here)
    # (x, y) batches count as x
    again = layers.Normalization()
    again.adapt([(b, np.zeros(len(b))) for b in batches])
    np.testing.assert_allclose(again.get_weights()[0], mean, rtol=1e-7)


def test_normalization_given_statistics_and_invert_match_keras_and_numpy():
    x = rng().normal(size=(4, 3, 2)).astype(np.float32)
    for kwargs in ({"mean": 1.5, "variance": 4.0}, {"mean": [1.0, -1.0], "variance": [4.0, 0.25]},
                   {"axis": (1, 2), "mean": [[0.0, 1.0]] * 3, "variance": [[1.0, 9.0]] * 3},
                   {"mean": [1.0, -1.0], "variance": [4.0, 0.25], "invert": True}):
        ours = layers.Normalization(**kwargs)
        assert ours.weights == [] and ours.get_weights() == []
        y = run(ours, x)
        check_shape_and_dtype(ours, x, y)
        np.testing.assert_allclose(y, np.asarray(keras.layers.Normalization(**kwargs)(x)),
                                   rtol=1e-6, atol=1e-6)
    y = run(layers.Normalization(mean=[1.0, -1.0], variance=[4.0, 0.25]), x)
    np.testing.assert_allclose(y, (x - [1.0, -1.0]) / [2.0, 0.5], rtol=1e-6)
    # a constant feature (variance 0) maps to 0, not NaN (Keras's max(sqrt(var), eps))
    constant = layers.Normalization()
    constant.adapt(np.ones((6, 2), np.float32))
    assert np.array_equal(run(constant, np.ones((2, 2), np.float32)), np.zeros((2, 2)))


def test_normalization_round_trip_of_inverse():
    data = rng().normal(5.0, 3.0, size=(20, 3)).astype(np.float32)
    forward, backward = layers.Normalization(), layers.Normalization(invert=True)
    forward.adapt(data)
    backward.adapt(data)
    np.testing.assert_allclose(run(backward, run(forward, data)), data, rtol=1e-5, atol=1e-5)


def test_normalization_in_a_sequential_trains_and_saves_its_statistics(tmp_path):
    x = rng().normal(50.0, 10.0, size=(48, 3)).astype(np.float32)
    y = (x @ np.array([0.1, -0.2, 0.05], np.float32) + 0.5).reshape(-1, 1)
    norm = layers.Normalization()
    norm.adapt(x)
    adapted = [w.copy() for w in norm.get_weights()]
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), norm, layers.Dense(1)])
    model.build((3,), seed=5)   # re-initializing the model keeps the measured statistics
    model.compile(optimizer=kilnet.optimizers.Adam(0.05), loss="mse")
    losses = model.fit(x, y, epochs=8, batch_size=16, verbose=0, seed=0).history["loss"]
    assert losses[-1] < losses[0]
    # neither the rebuild nor training changed the statistics (they are not trainable)
    for before, after in zip(adapted, norm.get_weights()):
        np.testing.assert_array_equal(before, after)
    path = tmp_path / "m.kilnet"
    model.save(path)
    loaded = kilnet.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    loaded_norm = [layer for layer in loaded.layers if isinstance(layer, layers.Normalization)]
    np.testing.assert_array_equal(loaded_norm[0].get_weights()[0], adapted[0])


def test_normalization_gradient_against_finite_differences():
    layer = layers.Normalization(mean=[1.0, -2.0], variance=[4.0, 0.5])
    w = rng().normal(size=(3, 2))
    check_grad(lambda x: jnp.sum(layer.apply({}, {}, x)[0] * w), rng(1).normal(size=(3, 2)))


# -- Resizing and CenterCrop ----------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {"height": 4, "width": 5},
    {"height": 11, "width": 6, "interpolation": "nearest"},
    {"height": 3, "width": 3, "interpolation": "nearest"},
    {"height": 4, "width": 4, "crop_to_aspect_ratio": True},
    {"height": 6, "width": 3, "pad_to_aspect_ratio": True, "fill_value": 7.0},
    {"height": 5, "width": 4, "interpolation": "bicubic"},
    {"height": 3, "width": 4, "antialias": True},
])
def test_resizing_matches_keras(kwargs):
    x = images()
    ours = layers.Resizing(**kwargs)
    y = run(ours, x)
    check_shape_and_dtype(ours, x, y)
    np.testing.assert_allclose(y, np.asarray(keras.layers.Resizing(**kwargs)(x)),
                               rtol=1e-5, atol=1e-3)


def test_resizing_numpy_reference_and_uint8_images():
    x = np.arange(16.0, dtype=np.float32).reshape(1, 4, 4, 1)
    # halving a 4x4 image bilinearly averages each 2x2 block's inner corners
    np.testing.assert_allclose(run(layers.Resizing(2, 2), x)[0, :, :, 0],
                               x[0, :, :, 0].reshape(2, 2, 2, 2).mean((1, 3)))
    # nearest doubling repeats each pixel
    np.testing.assert_array_equal(
        run(layers.Resizing(8, 8, interpolation="nearest"), x)[0, :, :, 0],
        np.repeat(np.repeat(x[0, :, :, 0], 2, 0), 2, 1))
    pixels = (x * 10).astype(np.uint8)
    y = run(layers.Resizing(2, 2), pixels)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, run(layers.Resizing(2, 2), pixels.astype(np.float32)))


@pytest.mark.parametrize("size, shape", [((3, 5), (2, 7, 9, 2)), ((4, 4), (2, 8, 8, 1)),
                                         ((6, 12), (2, 7, 9, 2)), ((9, 4), (2, 7, 9, 2))])
def test_center_crop_matches_keras_and_numpy(size, shape):
    x = images(shape)
    ours = layers.CenterCrop(*size)
    y = run(ours, x)
    check_shape_and_dtype(ours, x, y)
    np.testing.assert_allclose(y, np.asarray(keras.layers.CenterCrop(*size)(x)),
                               rtol=1e-5, atol=1e-3)
    h, w = shape[1:3]
    if h >= size[0] and w >= size[1]:   # a plain crop: NumPy slicing
        top, left = (h - size[0]) // 2, (w - size[1]) // 2
        np.testing.assert_array_equal(y, x[:, top:top + size[0], left:left + size[1]])


def test_resizing_gradient_against_finite_differences():
    layer = layers.Resizing(3, 5)
    w = rng().normal(size=(2, 3, 5, 2))
    check_grad(lambda x: jnp.sum(layer.apply({}, {}, x)[0] * w), rng(1).normal(size=(2, 4, 3, 2)))


# -- random augmentation --------------------------------------------------------------------------
AUGMENTATIONS = [
    lambda: layers.RandomFlip(),
    lambda: layers.RandomRotation(0.2),
    lambda: layers.RandomZoom(0.3, 0.2),
    lambda: layers.RandomTranslation(0.2, 0.3),
    lambda: layers.RandomContrast(0.5),
    lambda: layers.RandomBrightness(0.3),
]


@pytest.mark.parametrize("make", AUGMENTATIONS)
def test_augmentation_keys_inference_and_padding_rows(make):
    layer = make()
    x = images((6, 7, 9, 2))
    a = run(layer, x, training=True, key=1)
    check_shape_and_dtype(layer, x, a)
    np.testing.assert_array_equal(run(layer, x, training=True, key=1), a)    # same key
    assert not np.allclose(run(layer, x, training=True, key=2), a)           # another key
    assert not np.allclose(a, x)                                             # it augments
    np.testing.assert_array_equal(run(layer, x, training=False), x)          # inference
    # padding rows (a last partial batch) change neither the draws nor the real rows
    padded = np.concatenate([x, np.full((3,) + x.shape[1:], 1e4, np.float32)])
    np.testing.assert_array_equal(run(layer, padded, training=True, key=1)[:6], a)
    # each image gets its own draw: two copies of one image come out differently
    same = np.repeat(x[:1], 8, axis=0)
    outs = run(layer, same, training=True, key=3)
    assert len({o.tobytes() for o in outs}) > 1


def test_random_flip_is_an_exact_flip():
    x = images((64, 5, 6, 2))
    for mode, flipped in (("horizontal", x[:, :, ::-1]), ("vertical", x[:, ::-1]),
                          ("horizontal_and_vertical", x[:, ::-1, ::-1])):
        y = run(layers.RandomFlip(mode), x, training=True, key=4)
        kept = (y == x).all(axis=(1, 2, 3))
        turned = (y == flipped).all(axis=(1, 2, 3))
        assert (kept | turned).all()                       # every image one or the other
        assert 16 < turned.sum() < 48                      # about half flipped


def keras_fixed(keras_layer, x):
    return np.asarray(keras_layer(x, training=True))


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_random_rotation_by_a_fixed_angle_matches_keras(fill_mode, interpolation):
    x = images((2, 7, 9, 2))
    kwargs = {"factor": (0.1, 0.1), "fill_mode": fill_mode, "interpolation": interpolation,
              "fill_value": 3.0}
    ours = run(layers.RandomRotation(**kwargs), x, training=True)
    np.testing.assert_allclose(ours, keras_fixed(keras.layers.RandomRotation(**kwargs), x),
                               rtol=1e-5, atol=2e-3)


def test_random_rotation_quarter_and_half_turns_are_exact():
    x = images((2, 5, 5, 1))
    half = run(layers.RandomRotation((0.5, 0.5)), x, training=True)
    np.testing.assert_allclose(half, x[:, ::-1, ::-1], atol=1e-3)
    quarter = run(layers.RandomRotation((0.25, 0.25)), x, training=True)
    np.testing.assert_allclose(quarter, np.rot90(x, k=1, axes=(1, 2)), atol=1e-3)


def test_random_rotation_angles_spread_over_the_range():
    # one bright pixel off-center: its position after rotation gives the angle
    x = np.zeros((256, 9, 9, 1), np.float32)
    x[:, 4, 8] = 1.0
    y = run(layers.RandomRotation(0.25, fill_mode="constant", interpolation="nearest"), x,
            training=True, key=5)
    rows, cols = np.unravel_index(y[..., 0].reshape(256, -1).argmax(1), (9, 9))
    angles = np.degrees(np.arctan2(-(rows - 4), cols - 4))   # up is positive
    assert np.abs(angles).max() <= 90.0 + 8.0
    assert (angles > 45).sum() > 30 and (angles < -45).sum() > 30


@pytest.mark.parametrize("make", [
    lambda m: m.RandomZoom((0.25, 0.25), fill_mode="constant", fill_value=2.0),
    lambda m: m.RandomZoom((-0.3, -0.3), (0.2, 0.2), interpolation="nearest"),
    lambda m: m.RandomTranslation((0.2, 0.2), (-0.3, -0.3)),
    lambda m: m.RandomTranslation((-0.1, -0.1), (0.5, 0.5), fill_mode="wrap"),
    lambda m: m.RandomBrightness((0.1, 0.1)),
    lambda m: m.RandomBrightness((-0.2, -0.2), value_range=(0, 1)),
])
def test_fixed_zoom_shift_and_brightness_match_keras(make):
    x = images((2, 7, 9, 2), scale=1.0) * 200.0
    np.testing.assert_allclose(run(make(layers), x, training=True),
                               keras_fixed(make(keras.layers), x), rtol=1e-5, atol=2e-3)


def test_random_contrast_formula_and_range():
    x = images((200, 4, 5, 2), scale=100.0) + 50.0
    y = run(layers.RandomContrast((0.5, 0.5), value_range=(0, 1000)), x, training=True, key=6)
    mean = x.mean(axis=(1, 2), keepdims=True)
    c = ((y - mean) / (x - mean)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(y, (x - mean) * c[:, None, None, None] + mean, rtol=1e-4,
                               atol=1e-3)
    assert 0.5 <= c.min() < 0.6 and 1.4 < c.max() <= 1.5
    # as Keras 3: a single number f only raises the contrast, in [1, 1 + f]
    y = run(layers.RandomContrast(0.5, value_range=(0, 1000)), x, training=True, key=6)
    c = ((y - mean) / (x - mean)).mean(axis=(1, 2, 3))
    assert 1.0 <= c.min() and c.max() <= 1.5
    # the output is clipped to value_range
    clipped = run(layers.RandomContrast((0.9, 0.9), value_range=(60, 140)), x, training=True)
    assert clipped.min() >= 60 and clipped.max() <= 140


def test_random_brightness_statistics():
    x = np.full((400, 2, 2, 1), 100.0, np.float32)
    y = run(layers.RandomBrightness(0.2), x, training=True, key=7)
    delta = y[:, 0, 0, 0] - 100.0
    assert (y == y[:, :1, :1]).all()                    # one shift per image
    assert np.abs(delta).max() <= 0.2 * 255 + 1e-3
    assert abs(delta.mean()) < 5.0 and delta.std() > 20.0


def test_rotation_gradient_against_finite_differences():
    layer = layers.RandomRotation((0.1, 0.1), fill_mode="constant")
    w = rng().normal(size=(2, 4, 5, 1))
    key = jax.random.key(0)
    check_grad(lambda x: jnp.sum(layer.apply({}, {}, x, training=True, rng=key)[0] * w),
               rng(1).normal(size=(2, 4, 5, 1)))


def test_eager_call_augments_as_keras_unless_training_is_false():
    x = images((4, 6, 6, 1))
    layer = layers.RandomBrightness((0.1, 0.1))
    np.testing.assert_allclose(np.asarray(layer(x)), np.clip(x + 25.5, 0, 255), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_small_image_model_with_flip_and_rotation_trains(tmp_path):
    """Bright square versus bright ring on 8x8 images: invariant under flips and rotations."""
    x = rng().uniform(0.0, 0.2, size=(48, 8, 8, 1)).astype(np.float32)
    y = np.arange(48) % 2
    x[y == 0, 2:6, 2:6] += 0.8
    x[y == 1, 1:7, 1:7] += 0.8
    x[y == 1, 3:5, 3:5] -= 0.8

    def make_model():
        model = kilnet.Sequential([
            kilnet.Input(shape=(8, 8, 1)),
            layers.RandomFlip(),
            layers.RandomRotation(0.1),
            layers.Conv2D(4, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2, activation="softmax"),
        ])
        model.build((8, 8, 1), seed=1)
        model.compile(optimizer=kilnet.optimizers.Adam(0.02),
                      loss="sparse_categorical_crossentropy")
        return model

    model = make_model()
    # The loss judged with the augmentation off (evaluate) before and after: training losses
    # under random flips and rotations wander (10 data and weight draws: the last epoch's
    # mean below the first's by only 4.5% at worst), and at a rate of 0.05 the evaluated loss
    # could end up higher. At 0.02 for 15 epochs, after/before over 11 draws: 0.21-0.81.
    first = assert_fit_lowers_loss(model, x, y, 0.9,
                                   epochs=15, batch_size=10, seed=0).history["loss"]
    # the run is reproducible from the seeds: the augmentation keys come from fit's seed
    again = make_model().fit(x, y, epochs=15, batch_size=10, verbose=0, seed=0)
    assert again.history["loss"] == first
    other = make_model().fit(x, y, epochs=15, batch_size=10, verbose=0, seed=1)
    assert other.history["loss"] != first
    # predict is deterministic (no augmentation) and survives save/load bit for bit
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))
    path = tmp_path / "m.kilnet"
    model.save(path)
    loaded = kilnet.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert [type(layer).__name__ for layer in loaded.layers][:2] == ["RandomFlip",
                                                                     "RandomRotation"]


# -- configs --------------------------------------------------------------------------------------
CONFIG_CASES = [
    lambda m: m.Normalization(),
    lambda m: m.Normalization(axis=None, mean=2.0, variance=3.0, invert=True),
    lambda m: m.Normalization(axis=(1, 2)),
    lambda m: m.Resizing(4, 5, interpolation="nearest", crop_to_aspect_ratio=True),
    lambda m: m.Resizing(4, 5, pad_to_aspect_ratio=True, fill_value=1.0, antialias=True),
    lambda m: m.CenterCrop(3, 2),
    lambda m: m.RandomFlip("horizontal", seed=3),
    lambda m: m.RandomRotation(0.2, fill_mode="constant", interpolation="nearest",
                               fill_value=1.0),
    lambda m: m.RandomRotation((-0.1, 0.3)),
    lambda m: m.RandomZoom(0.2),
    lambda m: m.RandomZoom((-0.2, 0.1), (0.1, 0.3), fill_mode="wrap"),
    lambda m: m.RandomTranslation(0.1, (-0.2, 0.2), fill_mode="nearest", seed=1),
    lambda m: m.RandomContrast(0.4),
    lambda m: m.RandomContrast((0.2, 0.3), value_range=(0, 1)),
    lambda m: m.RandomBrightness(0.2, value_range=(1, -1)),
]


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("make", CONFIG_CASES)
def test_config_round_trip_with_keras_keys_and_values(make):
    layer = make(layers)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    keras_config = make(keras.layers).get_config()
    ours = set(config) - {"name", "trainable", "dtype"}
    assert set(config) == set(keras_config)
    assert config["dtype"] == keras_config["dtype"]
    for key in ours:
        assert _plain(config[key]) == _plain(keras_config[key]), key
    assert type(layer).__name__ in kilnet.layers.LAYER_TYPES


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.Normalization(mean=1.0), ValueError, r"mean and variance must be given "
                                                         r"together.*Received: mean=1.0"),
    (lambda: layers.Normalization(mean=[1.0, 2.0], variance=[1.0]), ValueError,
     r"same shape"),
    (lambda: layers.Normalization(mean=[[1.0]], variance=[[1.0]]), ValueError,
     r"more dimensions.*kept axes"),
    (lambda: layers.Normalization(mean=0.0, variance=-1.0), ValueError, r"variance must not"),
    (lambda: layers.Normalization(axis="last"), TypeError, r"axis must be.*axis='last'"),
    (lambda: layers.Normalization(invert=1), TypeError, r"invert must be True or False"),
    (lambda: layers.Resizing(0, 3), ValueError, r"height must be a positive.*height=0"),
    (lambda: layers.Resizing(3, 2.5), ValueError, r"width must be a positive"),
    (lambda: layers.Resizing(3, 3, interpolation="area"), ValueError,
     r"interpolation must be one of.*interpolation='area'"),
    (lambda: layers.Resizing(3, 3, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True),
     ValueError, r"Only one of crop_to_aspect_ratio"),
    (lambda: layers.Resizing(3, 3, fill_mode="reflect"), ValueError, r"fill_mode must be"),
    (lambda: layers.Resizing(3, 3, data_format="channels_first"), ValueError,
     r"channels_last.*data_format='channels_first'"),
    (lambda: layers.CenterCrop(-1, 3), ValueError, r"height must be a positive"),
    (lambda: layers.RandomFlip("diagonal"), ValueError, r"mode must be one of.*'diagonal'"),
    (lambda: layers.RandomFlip(seed="one"), TypeError, r"seed must be an integer"),
    (lambda: layers.RandomRotation(1.5), ValueError,
     r"factor must be a number or a pair of numbers in \[-1, 1\].*factor=1.5"),
    (lambda: layers.RandomRotation((0.1, 0.2, 0.3)), ValueError, r"factor must be"),
    (lambda: layers.RandomRotation(0.1, fill_mode="mirror"), ValueError,
     r"fill_mode must be one of.*'mirror'"),
    (lambda: layers.RandomRotation(0.1, interpolation="bicubic"), ValueError,
     r"interpolation must be one of"),
    (lambda: layers.RandomRotation(0.1, fill_value="black"), TypeError,
     r"fill_value must be a number"),
    (lambda: layers.RandomZoom(-1.0), ValueError,
     r"height_factor must be a number or a pair of numbers in \(-1, 1\]"),
    (lambda: layers.RandomZoom(0.1, width_factor=2.0), ValueError, r"width_factor must be"),
    (lambda: layers.RandomTranslation(0.1, -1.5), ValueError, r"width_factor must be"),
    (lambda: layers.RandomContrast(-0.2), ValueError,
     r"factor must be a number or a pair of numbers in \[0, 1\]"),
    (lambda: layers.RandomContrast(0.2, value_range=255), ValueError,
     r"value_range must be a pair"),
    (lambda: layers.RandomBrightness(0.2, value_range=(0, 1, 2)), ValueError,
     r"value_range must be a pair"),
])
def test_bad_arguments_are_refused_clearly(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match=r"expects \(height, width, channels\) images"):
        kilnet.Sequential([kilnet.Input(shape=(8, 8)), layers.RandomFlip()])
    with pytest.raises(ValueError, match=r"expects \(height, width, channels\)"):
        layers.Resizing(2, 2)(np.zeros((4, 4), np.float32))   # rank 3 is one image, as Keras
    with pytest.raises(ValueError, match=r"cannot keep the batch axis"):
        layers.Normalization(axis=0).adapt(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"out of range"):
        layers.Normalization(axis=3).adapt(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"cannot broadcast"):
        layers.Normalization(mean=[1.0, 2.0], variance=[1.0, 1.0])(np.zeros((2, 3)))
    norm = layers.Normalization()
    norm.adapt(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"adapt\(\) got a batch of shape \(4, 5\)"):
        norm.adapt(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"empty iterable"):
        layers.Normalization().adapt([])
    with pytest.raises(TypeError, match=r"adapt\(\) takes an array"):
        layers.Normalization().adapt(3.0)
    with pytest.raises(ValueError, match=r"was given mean and variance"):
        layers.Normalization(mean=0.0, variance=1.0).adapt(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"without a random key"):
        layers.RandomFlip().apply({}, {}, jnp.zeros((1, 2, 2, 1)), training=True)


def _augmentation_model(lib, x):
    """The ViT and MLP-Mixer tutorials' pattern: a Sequential without an Input whose
    Normalization is adapted, then called on the functional model's input."""
    norm = lib.layers.Normalization()
    augment = lib.Sequential([norm, lib.layers.Dense(3)])
    norm.adapt(x)
    inputs = lib.Input((4,))
    return lib.Model(inputs, augment(inputs)), norm


def test_adapted_normalization_in_a_nested_sequential_keeps_its_statistics_as_keras():
    x = np.random.default_rng(0).integers(0, 256, (64, 4)).astype("float32")
    ours, our_norm = _augmentation_model(kilnet, x)
    theirs, their_norm = _augmentation_model(keras, x)
    np.testing.assert_allclose(our_norm.get_weights()[0], x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(our_norm.get_weights()[1], x.var(0), rtol=1e-4)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)
