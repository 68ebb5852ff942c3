"""kilnet.random: shapes, dtypes and distributions of each sampler; where each kind of `seed`
takes its key from (fixed for ints, advancing for SeedGenerators, the apply scope's key inside
a step); dropout's fraction and rescaling; argument errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from kilnet import _scope, utils
from kilnet import random as kr
from kilnet.variables import Variable

N = 200_000   # large enough that sample means sit within ~0.01 standard deviations


def same(a, b) -> bool:
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))


def scope(key):
    """An apply scope carrying `key`, as Layer.apply opens in a training step."""
    return _scope.opened(_scope.Scope(rng=key, training=True))


# -- shapes, dtypes, distributions ---------------------------------------------------------------

SAMPLERS = [
    ("normal", lambda shape, **kw: kr.normal(shape, **kw), "float32"),
    ("uniform", lambda shape, **kw: kr.uniform(shape, **kw), "float32"),
    ("truncated_normal", lambda shape, **kw: kr.truncated_normal(shape, **kw), "float32"),
    ("randint", lambda shape, **kw: kr.randint(shape, 0, 10, **kw), "int32"),
    ("gamma", lambda shape, **kw: kr.gamma(shape, 2.0, **kw), "float32"),
    ("binomial", lambda shape, **kw: kr.binomial(shape, 10, 0.3, **kw), "float32"),
    ("beta", lambda shape, **kw: kr.beta(shape, 2.0, 3.0, **kw), "float32"),
]


@pytest.mark.parametrize("sample, dtype", [s[1:] for s in SAMPLERS], ids=[s[0] for s in SAMPLERS])
@pytest.mark.parametrize("shape", [(3,), (2, 5), [4, 1, 2]])
def test_shapes_and_default_dtypes(sample, dtype, shape):
    x = sample(shape, seed=1)
    assert x.shape == tuple(shape)
    assert x.dtype == jnp.dtype(dtype)
    # Keras's float32 default holds whatever JAX's x64 flag says
    with jax.enable_x64(True):
        assert sample(shape, seed=1).dtype == jnp.dtype(dtype)


@pytest.mark.parametrize("sample, dtype", [
    (lambda **kw: kr.normal((8,), **kw), "bfloat16"),
    (lambda **kw: kr.uniform((8,), **kw), "float16"),
    (lambda **kw: kr.truncated_normal((8,), **kw), "float16"),
    (lambda **kw: kr.randint((8,), 0, 5, **kw), "int8"),
    (lambda **kw: kr.categorical(jnp.zeros((2, 3)), 4, **kw), "int64"),
], ids=["normal", "uniform", "truncated_normal", "randint", "categorical"])
def test_explicit_dtypes(sample, dtype):
    with jax.enable_x64(dtype == "int64"):
        assert sample(dtype=dtype, seed=0).dtype == jnp.dtype(dtype)


def test_normal_moments():
    x = np.asarray(kr.normal((N,), mean=2.0, stddev=3.0, seed=5), np.float64)
    assert abs(x.mean() - 2.0) < 0.05
    assert abs(x.std() - 3.0) < 0.05


def test_uniform_range_and_moments():
    x = np.asarray(kr.uniform((N,), minval=-1.0, maxval=3.0, seed=5), np.float64)
    assert x.min() >= -1.0 and x.max() < 3.0
    assert abs(x.mean() - 1.0) < 0.02
    assert abs(x.std() - 4.0 / np.sqrt(12)) < 0.02


def test_truncated_normal_stays_within_two_stddevs():
    x = np.asarray(kr.truncated_normal((N,), mean=1.0, stddev=2.0, seed=5), np.float64)
    assert x.min() >= 1.0 - 4.0 and x.max() <= 1.0 + 4.0
    expected = stats.truncnorm(-2, 2, loc=1.0, scale=2.0)
    assert abs(x.mean() - expected.mean()) < 0.03
    assert abs(x.std() - expected.std()) < 0.03


def test_randint_covers_its_range_uniformly():
    x = np.asarray(kr.randint((N,), 3, 8, seed=5))
    assert x.min() == 3 and x.max() == 7
    frequencies = np.bincount(x - 3, minlength=5) / N
    np.testing.assert_allclose(frequencies, 0.2, atol=0.01)


def test_categorical_follows_the_logits():
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    logits = np.log(np.maximum(probs, 1e-30)).astype(np.float32)
    samples = kr.categorical(logits, 50_000, seed=5)
    assert samples.shape == (2, 50_000) and samples.dtype == jnp.int32
    for row, p in zip(np.asarray(samples), probs):
        np.testing.assert_allclose(np.bincount(row, minlength=3) / row.size, p, atol=0.01)


def test_gamma_and_binomial_means():
    g = np.asarray(kr.gamma((N,), 3.0, seed=5), np.float64)
    assert abs(g.mean() - 3.0) < 0.05 and abs(g.var() - 3.0) < 0.1
    b = np.asarray(kr.binomial((N,), 10, 0.3, seed=5), np.float64)
    assert abs(b.mean() - 3.0) < 0.03 and b.min() >= 0 and b.max() <= 10


def test_beta_moments_and_support():
    a, b = 2.0, 5.0
    x = np.asarray(kr.beta((N,), a, b, seed=5), np.float64)
    assert x.min() >= 0 and x.max() <= 1
    assert abs(x.mean() - a / (a + b)) < 0.005
    assert abs(x.var() - a * b / ((a + b) ** 2 * (a + b + 1))) < 0.002
    per_row = np.asarray(kr.beta((N, 2), np.array([1.0, 8.0]), 1.0, seed=6))
    np.testing.assert_allclose(per_row.mean(axis=0), [0.5, 8 / 9], atol=0.01)


def test_shuffle_permutes_whole_slices():
    x = np.arange(40).reshape(20, 2)
    shuffled = np.asarray(kr.shuffle(x, seed=3))
    assert not np.array_equal(shuffled, x)
    # rows stay whole (each row is still [2k, 2k+1]) and all of them are there
    np.testing.assert_array_equal(shuffled[:, 1] - shuffled[:, 0], 1)
    np.testing.assert_array_equal(np.sort(shuffled[:, 0]), x[:, 0])
    columns = np.asarray(kr.shuffle(x.T, axis=1, seed=3))
    np.testing.assert_array_equal(columns, shuffled.T)


# -- seeds ---------------------------------------------------------------------------------------

def test_int_seed_gives_the_same_numbers_every_call():
    a, b = kr.normal((5,), seed=42), kr.normal((5,), seed=42)
    assert same(a, b)
    assert not same(a, kr.normal((5,), seed=43))
    assert same(kr.uniform((5,), seed=np.int64(42)), kr.uniform((5,), seed=42))
    # negative seeds wrap modulo 2**32 (Keras refuses them): not their absolute value
    assert not same(kr.normal((5,), seed=-42), a)


def test_seed_generator_advances_on_each_eager_draw():
    gen = kr.SeedGenerator(7)
    draws = [np.asarray(kr.normal((4,), seed=gen)) for _ in range(3)]
    assert not same(draws[0], draws[1]) and not same(draws[1], draws[2])
    again = kr.SeedGenerator(7)
    for draw in draws:
        assert same(kr.normal((4,), seed=again), draw)
    assert not same(kr.normal((4,), seed=kr.SeedGenerator(8)), draws[0])


def test_seed_generator_without_a_seed_follows_set_random_seed():
    utils.set_random_seed(11)
    first = kr.normal((4,), seed=kr.SeedGenerator())
    utils.set_random_seed(11)
    assert same(kr.normal((4,), seed=kr.SeedGenerator()), first)
    # a second generator made after the first gets another seed
    utils.set_random_seed(11)
    kr.SeedGenerator()
    assert not same(kr.normal((4,), seed=kr.SeedGenerator()), first)


def test_seed_generator_config_round_trip():
    gen = kr.SeedGenerator(5, name="noise")
    assert gen.get_config() == {"seed": 5, "name": "noise"}
    copy = kr.SeedGenerator.from_config(gen.get_config())
    assert same(kr.normal((3,), seed=copy), kr.normal((3,), seed=gen))


def test_none_seed_outside_a_scope_is_fresh_and_follows_set_random_seed():
    utils.set_random_seed(3)
    a, b = kr.normal((4,)), kr.normal((4,))
    assert not same(a, b)
    utils.set_random_seed(3)
    assert same(kr.normal((4,)), a) and same(kr.normal((4,)), b)


def test_a_key_array_is_used_as_is():
    typed, raw = jax.random.key(3), jax.random.PRNGKey(3)
    assert same(kr.normal((4,), seed=typed), jax.random.normal(typed, (4,)))
    assert same(kr.normal((4,), seed=raw), jax.random.normal(raw, (4,)))
    assert same(kr.normal((4,), seed=raw), kr.normal((4,), seed=raw))


def test_key_seed_inside_jit():
    sample = jax.jit(lambda key: kr.uniform((3,), seed=key))
    assert same(sample(jax.random.PRNGKey(0)), kr.uniform((3,), seed=jax.random.PRNGKey(0)))
    assert not same(sample(jax.random.PRNGKey(0)), sample(jax.random.PRNGKey(1)))


@pytest.mark.parametrize("seed", ["42", 1.5, True, np.array([1, 2], np.uint32),
                                  jnp.zeros((2,), jnp.float32), object()],
                         ids=["str", "float", "bool", "numpy", "float_array", "object"])
def test_bad_seed_raises_type_error(seed):
    with pytest.raises(TypeError, match=r"`seed`.*Received: seed=") as info:
        kr.normal((2,), seed=seed)
    assert "SeedGenerator" in str(info.value) and "int" in str(info.value)


@pytest.mark.parametrize("seed", ["1", 2.0, False])
def test_seed_generator_rejects_non_int_seeds(seed):
    with pytest.raises(TypeError, match=r"`seed`.*Received: seed="):
        kr.SeedGenerator(seed)


# -- inside an apply scope (a training step) -----------------------------------------------------

def _draws_in_scope(key, seed_factory, count=3):
    seed = seed_factory()
    with scope(key):
        return [np.asarray(kr.normal((4,), seed=seed)) for _ in range(count)]


@pytest.mark.parametrize("seed_factory", [lambda: kr.SeedGenerator(1), lambda: None],
                         ids=["generator", "none"])
def test_scope_draws_differ_and_repeat_for_the_same_key(seed_factory):
    draws = _draws_in_scope(jax.random.PRNGKey(0), seed_factory)
    assert not same(draws[0], draws[1]) and not same(draws[1], draws[2])
    again = _draws_in_scope(jax.random.PRNGKey(0), seed_factory)
    assert all(same(a, b) for a, b in zip(draws, again))
    other = _draws_in_scope(jax.random.PRNGKey(1), seed_factory)
    assert not same(draws[0], other[0])


def test_scope_key_ignores_the_generators_host_counter():
    """Inside a step the key depends on the step's key, not on how often the generator was
    used eagerly before: re-tracing a step gives the same numbers."""
    used = kr.SeedGenerator(1)
    for _ in range(5):
        kr.normal((2,), seed=used)
    assert all(same(a, b) for a, b in zip(
        _draws_in_scope(jax.random.PRNGKey(0), lambda: used),
        _draws_in_scope(jax.random.PRNGKey(0), lambda: kr.SeedGenerator(1))))


def test_generators_with_different_seeds_differ_within_a_scope():
    a, b = kr.SeedGenerator(1), kr.SeedGenerator(2)
    with scope(jax.random.PRNGKey(0)):
        x = kr.normal((4,), seed=a)
    with scope(jax.random.PRNGKey(0)):
        y = kr.normal((4,), seed=b)
    assert not same(x, y)


def test_int_seed_ignores_the_scope():
    outside = kr.normal((3,), seed=9)
    with scope(jax.random.PRNGKey(0)):
        assert same(kr.normal((3,), seed=9), outside)
        assert same(kr.normal((3,), seed=9), outside)


def test_scope_without_a_key_falls_back_to_the_host():
    gen = kr.SeedGenerator(4)
    with _scope.opened(_scope.Scope(rng=None)):
        a, b = kr.normal((3,), seed=gen), kr.normal((3,), seed=gen)
    assert not same(a, b)
    assert same(a, kr.normal((3,), seed=kr.SeedGenerator(4)))


def test_traced_step_draws_differ_per_key_and_repeat_on_retrace():
    gen = kr.SeedGenerator(1)

    def step(key, x):
        with scope(key):
            return kr.dropout(x, 0.5, seed=gen), kr.dropout(x, 0.5, seed=gen)

    x = jnp.ones((64,))
    first, second = jax.jit(step)(jax.random.PRNGKey(0), x)
    assert not same(first, second)
    # a fresh trace (a new jit of the same function) gives the same masks for the same key
    again = jax.jit(lambda k, v: step(k, v))(jax.random.PRNGKey(0), x)
    assert same(again[0], first) and same(again[1], second)
    other = jax.jit(step)(jax.random.PRNGKey(1), x)
    assert not same(other[0], first)


# -- dropout -------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_fraction_and_rescaling(rate):
    x = np.full((N,), 3.0, np.float32)
    y = np.asarray(kr.dropout(x, rate, seed=2))
    dropped = y == 0
    assert abs(dropped.mean() - rate) < 0.01
    np.testing.assert_allclose(y[~dropped], 3.0 / (1 - rate), rtol=1e-6)
    assert abs(y.mean() - 3.0) < 0.05   # the expected value is unchanged
    assert y.dtype == np.float32


def test_dropout_rate_zero_returns_the_input():
    x = jnp.arange(5.0)
    assert same(kr.dropout(x, 0.0, seed=1), x)
    # no key is drawn: the seed generator does not advance
    gen, fresh = kr.SeedGenerator(2), kr.SeedGenerator(2)
    kr.dropout(x, 0.0, seed=gen)
    assert same(kr.normal((3,), seed=gen), kr.normal((3,), seed=fresh))


def test_dropout_noise_shape_shares_the_mask():
    x = np.ones((200, 6), np.float32)
    y = np.asarray(kr.dropout(x, 0.5, noise_shape=(None, 1), seed=3))
    # each row is dropped or kept as a whole
    assert np.all((y == 0).all(axis=1) | (y == 2.0).all(axis=1))
    assert 0 < (y[:, 0] == 0).sum() < 200
    with pytest.raises(ValueError):
        kr.dropout(x, 0.5, noise_shape=(3, 6), seed=3)


def test_dropout_accepts_variables_and_keeps_dtype():
    v = Variable(np.ones((100,), np.float32), name="activations")
    y = kr.dropout(v, 0.5, seed=1)
    assert y.shape == (100,) and 0 < int((np.asarray(y) == 0).sum()) < 100
    half = kr.dropout(jnp.ones((8,), jnp.bfloat16), 0.5, seed=1)
    assert half.dtype == jnp.bfloat16


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_dropout_rate_out_of_range(rate):
    with pytest.raises(ValueError, match="`rate`"):
        kr.dropout(jnp.ones((3,)), rate, seed=1)
