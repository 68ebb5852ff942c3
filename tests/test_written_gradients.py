"""Hand-written pieces of the training step that replace JAX's own derivation for speed
(BatchNormalization's gradient, attention's softmax-and-product, the convolution kernel
gradient's channels-first input, products of the last axes on 2-D views): each against an independent computation, in float64 where
it is a gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kilnet._kernels import conv as kernel_conv
from kilnet.layers import _attention, _normalization
from kilnet.layers._matmul import last_axes_product


def reference_batch_norm(x, gamma, beta, mask, epsilon):
    """Batch normalization as its textbook formula, differentiated by JAX."""
    axes = tuple(range(x.ndim - 1))
    if mask is None:
        mean, var = x.mean(axes), x.var(axes)
    else:
        weight = mask.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
        count = jnp.maximum(weight.sum() * (x.size // (x.shape[0] * x.shape[-1])), 1.0)
        mean = (x * weight).sum(axes) / count
        var = (jnp.square(x - mean) * weight).sum(axes) / count
    y = (x - mean) / jnp.sqrt(var + epsilon)
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y, mean, var


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2, 6), (6, 7, 5)])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("scale, center", [(True, True), (False, True), (True, False),
                                           (False, False)])
def test_batch_norm_gradient_equals_the_derivative_of_its_formula(shape, masked, scale, center):
    """Output, statistics and the gradients of all three (the moving statistics' cotangents
    included) against JAX's derivative of the formula, padded batches too."""
    rng = np.random.default_rng(sum(shape) + 10 * masked + 2 * scale + center)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.normal(size=shape) * 2.0 + 1.0)
        channels = shape[-1]
        gamma = jnp.asarray(rng.normal(size=channels)) if scale else None
        beta = jnp.asarray(rng.normal(size=channels)) if center else None
        mask = jnp.asarray(rng.random(shape[0]) > 0.4) if masked else None
        w_y, w_mean, w_var = (jnp.asarray(rng.normal(size=s)) for s in
                              (shape, (channels,), (channels,)))

        def loss(normalize):
            def value(x, gamma, beta):
                y, mean, var = normalize(x, gamma, beta, mask, 1e-3)
                return (jnp.sum(jnp.sin(y) * w_y) + jnp.sum(mean * w_mean)
                        + jnp.sum(var * w_var))
            return jax.value_and_grad(value, argnums=(0, 1, 2))(x, gamma, beta)

        ours = loss(_normalization._normalize_batch)
        reference = loss(reference_batch_norm)
        for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-9,
                                       atol=1e-11)


@pytest.mark.parametrize("channels", [1, 16, 129])
def test_channels_first_is_an_exact_transposition(channels):
    """Below 129 channels it is a product with the identity: still exactly the transposition,
    bit for bit, in float32."""
    x = np.random.default_rng(channels).normal(size=(3, 5, 4, channels)).astype(np.float32)
    got = np.asarray(kernel_conv._channels_first(jnp.asarray(x)))
    np.testing.assert_array_equal(got, np.transpose(x, (3, 1, 2, 0)))


def attention_mask(kind, batch, t, s, rng):
    """None, a causal (T, S) mask, or a random per-sample (batch, 1, T, S) one in which the
    first sample's second query may attend to no key."""
    if kind == "none":
        return None
    if kind == "causal":
        return np.arange(t)[:, None] >= np.arange(s)[None, :]
    mask = rng.random((batch, 1, t, s)) < 0.6
    mask[0, 0, min(1, t - 1)] = False
    return mask


@pytest.mark.parametrize("attend", [_attention.attend, _attention.attend_in_parts])
@pytest.mark.parametrize("shapes", [((2, 5, 3, 4), (2, 7, 3, 4), (2, 7, 3, 6)),
                                    ((5, 4, 2, 3), (5, 6, 2, 3), (5, 6, 2, 2)),
                                    ((1, 3, 1, 2), (1, 3, 1, 2), (1, 3, 1, 2))])
@pytest.mark.parametrize("mask_kind", ["none", "causal", "per_sample"])
@pytest.mark.parametrize("dropout", [False, True])
def test_attend_gradient_equals_the_derivative_of_softmax_attention(attend, shapes, mask_kind,
                                                                    dropout):
    """`attend` and `attend_in_parts` (a batch of 5 splits into parts of 3 and 2) against
    JAX's derivative of softmax attention, masked as Keras's masked softmax (a query allowed
    no key gives zeros), with dropout's factors on the probabilities or without."""
    rng = np.random.default_rng(len(shapes[0]) + shapes[1][1])
    with jax.enable_x64(True):
        q, k, v = (jnp.asarray(rng.normal(size=s) * 2.0) for s in shapes)
        weights = jnp.asarray(rng.normal(size=shapes[0][:3] + shapes[2][3:]))
        mask = attention_mask(mask_kind, shapes[0][0], shapes[0][1], shapes[1][1], rng)
        probs_shape = (shapes[0][0], shapes[0][2], shapes[0][1], shapes[1][1])
        keep = jnp.asarray((rng.random(probs_shape) > 0.3) / 0.7) if dropout else None

        def reference(q, k, v, mask, keep):
            scores = jnp.einsum("btnh,bsnh->bnts", q, k)
            if mask is None:
                probs = jax.nn.softmax(scores, axis=-1)
            else:
                probs = jnp.where(mask, jax.nn.softmax(jnp.where(mask, scores, -1e9), axis=-1),
                                  0.0)
            return jnp.einsum("bnts,bsnh->btnh", probs if keep is None else probs * keep, v)

        def loss(attend):
            return jax.value_and_grad(
                lambda q, k, v: jnp.sum(jnp.sin(attend(q, k, v, mask, keep)) * weights),
                argnums=(0, 1, 2))(q, k, v)

        ours = loss(attend)
        for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(loss(reference))):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-10,
                                       atol=1e-12)
        if mask_kind == "per_sample":   # the query allowed no key: zero output and gradient
            out = attend(q, k, v, mask, keep)
            assert not np.asarray(out)[0, min(1, shapes[0][1] - 1)].any()


@pytest.mark.parametrize("x_shape, kernel_shape, in_axes", [
    ((3, 4), (4, 5), 1), ((2, 3, 4), (4, 5), 1), ((2, 3, 2, 4), (4, 2, 3), 1),
    ((2, 3, 2, 4), (2, 4, 5), 2), ((4,), (4, 3), 1)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_last_axes_product_equals_tensordot_with_its_gradients(x_shape, kernel_shape, in_axes,
                                                               with_bias):
    rng = np.random.default_rng(sum(x_shape) + len(kernel_shape))
    with jax.enable_x64(True):
        x, kernel = (jnp.asarray(rng.normal(size=s)) for s in (x_shape, kernel_shape))
        bias = jnp.asarray(rng.normal(size=kernel_shape[in_axes:])) if with_bias else None
        weights = jnp.asarray(rng.normal(size=x_shape[:len(x_shape) - in_axes]
                                         + kernel_shape[in_axes:]))

        def reference(x, kernel, bias):
            y = jnp.tensordot(x, kernel, axes=in_axes)
            return y if bias is None else y + bias

        def loss(product):
            return jax.value_and_grad(
                lambda *a: jnp.sum(jnp.sin(product(*a)) * weights), argnums=(0, 1, 2))(
                    x, kernel, bias)

        ours = loss(lambda x, k, b: last_axes_product(x, k, b, in_axes=in_axes))
        assert ours[0].shape == ()
        for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(loss(reference))):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-12,
                                       atol=1e-12)
