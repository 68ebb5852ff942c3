"""kilnet.random with an integer seed against Keras 3 on JAX: every sampler draws the same
numbers as Keras's from the same int (Keras's key is `[seed, 0]`, the first key of
`SeedGenerator(seed)`), over several shapes, dtypes and arguments; eagerly, under `jax.jit`,
inside a layer's call under `predict` and `fit`; in `ops.image.elastic_transform`; seeds
beyond Keras's uint32 range wrap modulo 2**32; an N-D shuffle keeps its rows whole in the
order Keras gives an index vector."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import random as kr  # noqa: E402

SEEDS = [0, 1, 1337, 2**31 + 7, 2**32 - 1]


def assert_same_draws(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def logits(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# Each case: (id, call(random_module, seed)), the same call made on kilnet.random and
# keras.random.
CASES = [
    ("normal_3", lambda r, s: r.normal((3,), seed=s)),
    ("normal_2x5_mean_std", lambda r, s: r.normal((2, 5), mean=1.5, stddev=0.3, seed=s)),
    ("normal_4x1x3_bf16", lambda r, s: r.normal((4, 1, 3), dtype="bfloat16", seed=s)),
    ("normal_7_f16", lambda r, s: r.normal((7,), dtype="float16", seed=s)),
    ("uniform_3", lambda r, s: r.uniform((3,), seed=s)),
    ("uniform_6x2_range", lambda r, s: r.uniform((6, 2), minval=-2.0, maxval=5.0, seed=s)),
    ("uniform_5_f16", lambda r, s: r.uniform((5,), dtype="float16", seed=s)),
    ("truncated_normal_10", lambda r, s: r.truncated_normal((10,), seed=s)),
    ("truncated_normal_3x4_bf16", lambda r, s: r.truncated_normal(
        (3, 4), mean=-1.0, stddev=2.0, dtype="bfloat16", seed=s)),
    ("randint_5", lambda r, s: r.randint((5,), 0, 10, seed=s)),
    ("randint_3x3_int8", lambda r, s: r.randint((3, 3), -4, 4, dtype="int8", seed=s)),
    ("randint_8_uint8", lambda r, s: r.randint((8,), 0, 200, dtype="uint8", seed=s)),
    ("categorical_1x5_6", lambda r, s: r.categorical(np.zeros((1, 5), np.float32), 6, seed=s)),
    ("categorical_3x4_1", lambda r, s: r.categorical(logits((3, 4)), 1, seed=s)),
    ("categorical_2x7_50_int16", lambda r, s: r.categorical(logits((2, 7), 1), 50,
                                                            dtype="int16", seed=s)),
    ("dropout_8", lambda r, s: r.dropout(np.ones(8, np.float32), 0.5, seed=s)),
    ("dropout_4x6_rate02", lambda r, s: r.dropout(logits((4, 6)), 0.2, seed=s)),
    ("dropout_2x3x5_noise_shape", lambda r, s: r.dropout(
        logits((2, 3, 5)), 0.6, noise_shape=(None, 1, 5), seed=s)),
    ("dropout_bf16", lambda r, s: r.dropout(jax.numpy.ones((40,), "bfloat16"), 0.3, seed=s)),
    ("shuffle_10", lambda r, s: r.shuffle(np.arange(10), seed=s)),
    ("shuffle_100_jax", lambda r, s: r.shuffle(jax.numpy.arange(100), seed=s)),
    ("shuffle_257_float", lambda r, s: r.shuffle(logits((257,)), seed=s)),
    ("gamma_3", lambda r, s: r.gamma((3,), 2.0, seed=s)),
    ("gamma_4x2_small_alpha", lambda r, s: r.gamma((4, 2), 0.5, seed=s)),
    ("gamma_alpha_array_bf16", lambda r, s: r.gamma(
        (2, 3), np.array([0.7, 1.0, 4.0], np.float32), dtype="bfloat16", seed=s)),
    ("binomial_5", lambda r, s: r.binomial((5,), 10, 0.3, seed=s)),
    ("binomial_2x3_arrays", lambda r, s: r.binomial(
        (2, 3), np.array([1.0, 5.0, 20.0], np.float32), np.array([0.9, 0.5, 0.1], np.float32),
        seed=s)),
    ("beta_4", lambda r, s: r.beta((4,), 2.0, 3.0, seed=s)),
    ("beta_3x2_arrays", lambda r, s: r.beta(
        (3, 2), np.array([0.5, 8.0], np.float32), 1.0, seed=s)),
]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("draw", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_int_seed_draws_equal_keras(draw, seed):
    assert_same_draws(draw(kr, seed), draw(keras.random, seed))


@pytest.mark.parametrize("draw", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_int_seed_draws_equal_the_generators_first_draw(draw):
    """As Keras's: `seed=s` and `seed=SeedGenerator(s)`'s first draw are the same numbers."""
    assert_same_draws(draw(kr, 42), draw(kr, kr.SeedGenerator(42)))
    assert_same_draws(draw(kr, 42), draw(keras.random, keras.random.SeedGenerator(42)))


@pytest.mark.parametrize("draw", [c[1] for c in CASES[::4]], ids=[c[0] for c in CASES[::4]])
def test_int_seed_draws_equal_keras_under_jit(draw):
    traced = jax.jit(lambda: draw(kr, 9))
    assert_same_draws(traced(), draw(keras.random, 9))
    assert_same_draws(traced(), traced())   # an int seed is a constant key


@pytest.mark.parametrize("seed, keras_seed", [(-1, 2**32 - 1), (2**32 + 3, 3), (2**40, 0)])
def test_seeds_beyond_uint32_wrap_modulo_2_32(seed, keras_seed):
    # Keras refuses these (OverflowError); kilnet takes them modulo 2**32, as its generators
    assert_same_draws(kr.normal((4,), seed=seed), keras.random.normal((4,), seed=keras_seed))
    assert_same_draws(kr.normal((4,), seed=np.int64(keras_seed)),
                      keras.random.normal((4,), seed=keras_seed))


def test_captcha_ocr_split_equals_keras():
    """keras.io's captcha_ocr splits its samples with `keras.random.shuffle(indices, seed)`."""
    indices = np.arange(1040)
    assert_same_draws(kr.shuffle(kilnet.ops.arange(1040), seed=1),
                      keras.random.shuffle(keras.ops.arange(1040), seed=1))
    assert_same_draws(kr.shuffle(indices, seed=1), keras.random.shuffle(indices, seed=1))


@pytest.mark.parametrize("seed", [1, 77])
def test_nd_shuffle_keeps_rows_in_keras_index_order(seed):
    """Keras 3.15 on JAX shuffles each column of an N-D array on its own; kilnet keeps the
    slices whole (as Keras on TensorFlow and PyTorch) in the order Keras's shuffle gives the
    index vector, so shuffling indices and taking rows agrees with both."""
    x = np.arange(24).reshape(12, 2)
    order = np.asarray(keras.random.shuffle(np.arange(12), seed=seed))
    np.testing.assert_array_equal(np.asarray(kr.shuffle(x, seed=seed)), x[order])
    np.testing.assert_array_equal(np.asarray(kr.shuffle(x.T, axis=1, seed=seed)), x[order].T)


def test_categorical_refuses_logits_that_are_not_2d():
    with pytest.raises(ValueError, match=r"`logits` must be 2-D.*Received: logits of shape \(5,\)"):
        kr.categorical(np.zeros(5, np.float32), 3, seed=1)


@pytest.mark.parametrize("seed", [1, 5])
def test_elastic_transform_int_seed_equals_keras(seed):
    images = np.random.default_rng(0).random((2, 12, 10, 3)).astype(np.float32)
    ours = kilnet.ops.image.elastic_transform(images, seed=seed)
    theirs = keras.ops.image.elastic_transform(images, seed=seed)
    # the same displacement field; the resampling differs only in float rounding
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), atol=1e-4)


# -- inside a layer's call, under predict and fit ------------------------------------------------

def noise_layer(lib):
    class AddIntSeedNoise(lib.layers.Layer):
        def call(self, x):
            return x + lib.random.normal(lib.ops.shape(x), seed=3)
    return AddIntSeedNoise()


def dropout_layer(lib):
    class IntSeedDropout(lib.layers.Layer):
        def call(self, x, training=False):
            return lib.random.dropout(x, 0.5, seed=11) if training else x
    return IntSeedDropout()


def model_with(lib, layer):
    model = lib.Sequential([lib.Input((6,)), layer, lib.layers.Dense(1, use_bias=False)])
    model.layers[-1].set_weights([np.linspace(-1, 1, 6, dtype=np.float32)[:, None]])
    return model


def test_int_seed_in_a_layer_call_under_predict_equals_keras():
    x = logits((16, 6), 2)
    ours = model_with(kilnet, noise_layer(kilnet)).predict(x, batch_size=8, verbose=0)
    theirs = model_with(keras, noise_layer(keras)).predict(x, batch_size=8, verbose=0)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


def test_int_seed_dropout_in_a_layer_call_under_fit_equals_keras():
    x, y = logits((16, 6), 3), logits((16, 1), 4)
    kernels = []
    for lib in (kilnet, keras):
        model = model_with(lib, dropout_layer(lib))
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        kernels.append(np.asarray(model.layers[-1].get_weights()[0]))
    np.testing.assert_allclose(kernels[0], kernels[1], rtol=1e-5, atol=1e-6)
