"""The random keep-masks of the dropout layers, drawn by hashing element counters.

`jax.random.bernoulli` runs the Threefry generator for every element: on the 2-core AMD EPYC
bench machine a (128, 1600) mask (the MNIST convnet's Dropout) cost 1.16 ms and a
(64, 2, 200, 200) one (attention dropout in the bench Transformer) 45 ms, more than the rest of
that Transformer's training step. Here Threefry draws two 32-bit seeds from the key, and every
element's bits are a counter-based hash of its index under those seeds (Wellons's `lowbias32`
integer hash, twice): 0.09 ms and 3.3 ms for the same masks, in a loop; that Transformer with
MultiHeadAttention(dropout=0.1) trains 1.54x faster (in-process A/B). The masks are as
reproducible as before (the same key gives the same mask) and keep each element with
probability `keep_prob` to within 2**-32; they differ from `jax.random.bernoulli`'s draws, as
any two generators do. `kilnet.random.dropout` keeps JAX's generator, as Keras's does.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_HASH_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)


def keep_mask(key, keep_prob: float, shape) -> jax.Array:
    """Booleans of `shape`, each True with probability `keep_prob`, from the JAX key `key`.

    Example:
        >>> import jax
        >>> mask = keep_mask(jax.random.PRNGKey(0), 0.75, (1000, 100))
        >>> round(float(mask.mean()), 2), bool((mask == keep_mask(jax.random.PRNGKey(0), 0.75,
        ...                                                          (1000, 100))).all())
        (0.75, True)
    """
    shape = tuple(shape)
    size = math.prod(shape)
    if size >= 2**32:  # the counters are 32-bit
        return jax.random.bernoulli(key, keep_prob, shape)
    seeds = jax.random.bits(key, (2,), jnp.uint32)
    counters = jax.lax.iota(jnp.uint32, size).reshape(shape)
    bits = _lowbias32(_lowbias32(counters ^ seeds[0]) + seeds[1])
    threshold = min(int(round(float(keep_prob) * 2.0**32)), 2**32 - 1)
    return bits < np.uint32(threshold)


def mask_shape(noise_shape, shape) -> tuple:
    """The keep mask's shape for Keras's `noise_shape`: a None entry takes the input's size
    there (None: the input's shape), e.g. (None, 1, 1, 1) drops whole samples.

    Example:
        >>> mask_shape((None, 1, 1), (8, 4, 4))
        (8, 1, 1)
    """
    if noise_shape is None:
        return tuple(shape)
    return tuple(size if given is None else given for given, size in zip(noise_shape, shape))


def inverted_dropout(x, key, rate: float, shape):
    """Keras's dropout of `x`: the entries (or the slices a smaller `shape` broadcasts over)
    a keep mask drops are zeroed, the rest divided by 1 - rate.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> y = inverted_dropout(jnp.ones((1000, 3)), jax.random.PRNGKey(0), 0.5, (1000, 1))
        >>> sorted({float(v) for v in y.ravel()}), bool((y == y[:, :1]).all())
        ([0.0, 2.0], True)
    """
    keep = keep_mask(key, 1.0 - rate, shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _lowbias32(x):
    """A 32-bit integer hash whose output bits each flip with probability ~1/2 for any flipped
    input bit (C. Wellons, "Prospecting for hash functions", 2018)."""
    x = x ^ (x >> 16)
    x = x * np.uint32(_HASH_MULTIPLIERS[0])
    x = x ^ (x >> 15)
    x = x * np.uint32(_HASH_MULTIPLIERS[1])
    return x ^ (x >> 16)
