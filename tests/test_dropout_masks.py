"""The dropout layers' keep-masks (kilnet/layers/_dropout_masks.py): the keep rate, the
independence of elements, positions and keys, and reproducibility, measured against the
binomial statistics an ideal Bernoulli draw would have."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from kilnet import layers
from kilnet.layers._dropout_masks import keep_mask


def _within(count, trials, p, sigmas=5.0):
    """count is within `sigmas` standard deviations of a Binomial(trials, p) mean."""
    return abs(count - trials * p) <= sigmas * np.sqrt(trials * p * (1 - p))


@pytest.mark.parametrize("keep_prob", [0.5, 0.9, 0.1, 0.999])
def test_the_keep_rate_is_binomial(keep_prob):
    mask = np.asarray(keep_mask(jax.random.PRNGKey(3), keep_prob, (512, 1000)))
    assert mask.dtype == bool and mask.shape == (512, 1000)
    assert _within(mask.sum(), mask.size, keep_prob)


def test_elements_positions_and_keys_are_independent():
    p = 0.7
    masks = np.stack([np.asarray(keep_mask(jax.random.PRNGKey(i), p, (4096,)))
                      for i in range(400)])                         # (keys, positions)
    # neighbouring elements of one mask, and the same element under consecutive keys
    assert _within((masks[:, 1:] & masks[:, :-1]).sum(), masks[:, 1:].size, p * p)
    assert _within((masks[1:] & masks[:-1]).sum(), masks[1:].size, p * p)
    # every position is kept at the rate over keys (no position favoured): a chi-square
    # over positions, 4096 degrees of freedom, within 6 of its standard deviations
    counts = masks.sum(axis=0)
    n = masks.shape[0]
    chi2 = np.sum((counts - n * p) ** 2 / (n * p * (1 - p)))
    assert abs(chi2 - 4096) < 6 * np.sqrt(2 * 4096)


def test_the_same_key_gives_the_same_mask_and_another_key_another():
    a = np.asarray(keep_mask(jax.random.PRNGKey(0), 0.5, (64, 64)))
    again = np.asarray(jax.jit(lambda k: keep_mask(k, 0.5, (64, 64)))(jax.random.PRNGKey(0)))
    other = np.asarray(keep_mask(jax.random.PRNGKey(1), 0.5, (64, 64)))
    np.testing.assert_array_equal(a, again)
    assert 0.4 < (a == other).mean() < 0.6


def test_dropout_keeps_at_its_rate_and_scales_what_it_keeps():
    x = np.ones((256, 512), np.float32)
    out, _ = layers.Dropout(0.3).apply({}, {}, x, training=True, rng=jax.random.PRNGKey(5))
    out = np.asarray(out)
    kept = out != 0
    assert _within(kept.sum(), kept.size, 0.7)
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
