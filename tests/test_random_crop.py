"""RandomCrop: random windows while training (one position per batch, from the step's key),
Keras's deterministic crop otherwise, checked against Keras 3 and NumPy slicing."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import check_grad  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402


def images(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


_COMPILED = {}


def crop(layer, x, training, key=0):
    """The layer applied as the compiled programs apply it (jitted, with an explicit key);
    one compiled function per layer and mode, so many keys cost one compilation."""
    if (id(layer), training) not in _COMPILED:
        _COMPILED[id(layer), training] = (layer, jax.jit(
            lambda x, rng: layer.apply({}, {}, x, training=training,
                                       rng=rng if training else None)[0]))
    fn = _COMPILED[id(layer), training][1]
    return np.asarray(fn(x, jax.random.key(key)))


def window_position(x, out):
    """(top, left) of the window of x that `out` is, or None when it is no window."""
    h, w = out.shape[1:3]
    for top in range(x.shape[1] - h + 1):
        for left in range(x.shape[2] - w + 1):
            if np.array_equal(x[:, top:top + h, left:left + w], out):
                return top, left
    return None


# -- training: random windows ---------------------------------------------------------------------
def test_training_crops_are_windows_of_the_input_shared_by_the_batch():
    layer = layers.RandomCrop(3, 4)
    x = images((5, 7, 9, 2))
    out = crop(layer, x, training=True, key=1)
    assert out.shape == (5, 3, 4, 2) and out.dtype == np.float32
    # the whole batch (x[:, ...]) shares one window, as Keras crops a batch
    assert window_position(x, out) is not None


def test_training_crops_are_reproducible_for_a_key_and_differ_between_keys():
    layer = layers.RandomCrop(3, 4)
    x = images((2, 10, 12, 1))
    a = crop(layer, x, training=True, key=1)
    np.testing.assert_array_equal(crop(layer, x, training=True, key=1), a)
    positions = {window_position(x, crop(layer, x, training=True, key=k)) for k in range(40)}
    assert None not in positions
    assert len(positions) > 10   # 8 x 9 = 72 possible windows: the keys give many of them


def test_training_positions_cover_every_row_and_column_uniformly():
    layer = layers.RandomCrop(2, 2)
    x = np.arange(4 * 4, dtype=np.float32).reshape(1, 4, 4, 1)
    tops, lefts = [], []
    for k in range(600):
        top, left = window_position(x, crop(layer, x, training=True, key=k))
        tops.append(top)
        lefts.append(left)
    # Keras draws uniformly among the h - height + 1 = 3 starts: each about 1/3 of the time
    for starts in (tops, lefts):
        counts = np.bincount(starts, minlength=3)
        assert len(counts) == 3 and counts.min() > 150, counts


def test_training_on_images_not_larger_than_the_target_is_keras_deterministic_crop():
    """Keras crops at random only when the image is larger on both sides; otherwise its
    training output is deterministic, and kilnet's must equal it."""
    for shape, (h, w) in [((2, 3, 6, 2), (3, 4)), ((2, 2, 3, 1), (3, 4)),
                          ((2, 5, 4, 1), (3, 4)), ((2, 3, 5, 1), (7, 2))]:
        x = images(shape)
        expected = np.asarray(keras.layers.RandomCrop(h, w)(x, training=True))
        for key in (1, 2):
            out = crop(layers.RandomCrop(h, w), x, training=True, key=key)
            np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


# -- inference: Keras's deterministic crop --------------------------------------------------------
@pytest.mark.parametrize("shape,size", [((2, 5, 6, 2), (3, 4)), ((2, 9, 9, 1), (3, 4)),
                                        ((2, 4, 4, 1), (2, 2)), ((2, 2, 3, 1), (3, 4)),
                                        ((2, 6, 2, 1), (3, 5))])
def test_inference_is_keras_deterministic_crop(shape, size):
    """Keras 3.15 skips the crop at inference (keras-team/keras#21868); the crop it documents
    is its own deterministic transformation, which Keras computes for training=False and
    applies through transform_images."""
    x = images(shape)
    twin = keras.layers.RandomCrop(*size)
    start = twin.get_random_transformation(x, training=False)
    expected = np.asarray(twin.transform_images(x, start, training=True))
    out = crop(layers.RandomCrop(*size), x, training=False)
    assert out.shape == (shape[0],) + size + (shape[3],)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_inference_numpy_reference():
    x = images((2, 9, 9, 1))
    # the aspect-ratio window of 3:4 in 9x9 is 6 rows x 9 columns starting at (1, 0)
    np.testing.assert_array_equal(crop(layers.RandomCrop(3, 4), x, training=False),
                                  x[:, 1:4, 0:4])


def test_uint8_images_become_float32_and_eager_call_crops_at_random():
    x = np.arange(2 * 6 * 6 * 3, dtype=np.uint8).reshape(2, 6, 6, 3)
    layer = layers.RandomCrop(4, 4)
    out = np.asarray(layer(x))           # eager: training defaults to True, as in Keras
    assert out.dtype == np.float32 and out.shape == (2, 4, 4, 3)
    assert window_position(x.astype(np.float32), out) is not None
    assert np.asarray(layer(x, training=False)).dtype == np.float32


def test_gradient_of_the_resizing_crop_against_finite_differences():
    layer = layers.RandomCrop(4, 5)
    weights = images((2, 4, 5, 1), seed=3)

    def loss(x):
        return (layer.apply({}, {}, x, training=False)[0] * weights).sum()

    check_grad(loss, images((2, 3, 4, 1)), rtol=1e-4, atol=1e-6)


# -- in a model -----------------------------------------------------------------------------------
def test_model_with_random_crop_trains_reproducibly_and_saves(tmp_path):
    """A bright blob left or right of 8x8 images; crops of 6x6 keep it on its side."""
    r = np.random.default_rng(0)
    y = np.arange(48) % 2
    x = r.uniform(0.0, 0.2, size=(48, 8, 8, 1)).astype(np.float32)
    x[y == 0, 2:6, 1:3] += 0.8
    x[y == 1, 2:6, 5:7] += 0.8

    def make_model():
        model = kilnet.Sequential([
            kilnet.Input(shape=(8, 8, 1)),
            layers.RandomCrop(6, 6),
            layers.Flatten(),
            layers.Dense(2, activation="softmax"),
        ])
        model.build((8, 8, 1), seed=1)
        model.compile(optimizer=kilnet.optimizers.Adam(0.05),
                      loss="sparse_categorical_crossentropy")
        return model

    model = make_model()
    first = model.fit(x, y, epochs=8, batch_size=10, verbose=0, seed=0).history["loss"]
    assert first[-1] < first[0]
    again = make_model().fit(x, y, epochs=8, batch_size=10, verbose=0, seed=0)
    assert again.history["loss"] == first
    other = make_model().fit(x, y, epochs=8, batch_size=10, verbose=0, seed=1)
    assert other.history["loss"] != first
    predictions = model.predict(x, verbose=0)
    assert predictions.shape == (48, 2)
    path = tmp_path / "m.kilnet"
    model.save(path)
    loaded = kilnet.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), predictions)
    assert type(loaded.layers[0]) is layers.RandomCrop


def test_symbolic_shape_and_config_round_trip_with_keras_keys():
    layer = layers.RandomCrop(3, 4, seed=7, name="crop")
    out = layer(kilnet.Input(shape=(10, 12, 3)))
    assert out.shape == (None, 3, 4, 3)
    config = layer.get_config()
    twin = keras.layers.RandomCrop(3, 4, seed=7).get_config()
    for key in ("height", "width", "seed", "data_format"):
        assert config[key] == twin[key], key
    assert layers.RandomCrop.from_config(config).get_config() == config


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,match", [
    ({"height": 0, "width": 2}, ValueError, "height must be a positive integer.*height=0"),
    ({"height": 2, "width": 2.5}, ValueError, "width must be a positive integer.*width=2.5"),
    ({"height": 2, "width": 2, "seed": "a"}, TypeError, "seed must be an integer.*seed='a'"),
    ({"height": 2, "width": 2, "data_format": "channels_first"}, ValueError,
     "channels_last.*data_format='channels_first'"),
])
def test_bad_arguments_are_refused_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        layers.RandomCrop(**kwargs)


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match=r"\(height, width, channels\) images"):
        layers.RandomCrop(2, 2)(kilnet.Input(shape=(8, 8)))
    with pytest.raises(ValueError, match="known height and width.*None"):
        layers.RandomCrop(2, 2)(kilnet.Input(shape=(None, 8, 1)))
    with pytest.raises(ValueError, match="without a random key"):
        layers.RandomCrop(2, 2).apply({}, {}, images((1, 4, 4, 1)), training=True)
