"""Training-mode batch normalization in kilnet's compiled programs through the oneDNN bridge's
C++ extension, with its gradient. The kernels are kilnet's own loops in `onednn.cc`
(vectorized for this processor, OpenMP threads): oneDNN's primitive, used first, summed each
channel in one float32 running sum (variance 1.2e-4 off, relative, over a (128, 20, 20, 4)
map; kilnet's blocked sums 6e-8, as XLA's) at no gain in ResNet-8's epoch.

Why: XLA's CPU reductions for the statistics and their gradients are slow at the sizes of a
small convnet. Measured on a 2-core AMD EPYC, forward and backward of one batch
normalization over (128, 32, 32, 16): XLA 4.98 ms in a loop, oneDNN 1.14 ms; (128, 16, 16,
32) 1.79 against 0.44; (128, 8, 8, 64) 0.78 against 0.21. ResNet-8's training step 1.13x
faster, a separable-convolution net's 1.22x, a depthwise one's 1.29x (in-process A/Bs).

How: the batch-norm handlers of `onednn.cc` (built and registered by `kilnet._kernels.onednn`)
normalize over every axis but the last. The statistics count the real samples of a padded
last batch only (`weights`: 1 for a real sample, 0 for padding), as XLA's form does; the
handlers gather the real samples when there is padding, and give padded rows y = 0 and
dx = 0 (the loss ignores them, so their gradient is zero in the XLA form too).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import SymbolicZero

from kilnet._custom_gradients import custom_vjp
from kilnet._kernels import onednn


# Below this many numbers, or on (batch, channels) rows, XLA's form is faster: forward and
# backward in a loop on a 2-core AMD EPYC, XLA against oneDNN, (32, 128) 0.008 against
# 0.054 ms, (2048, 512) 0.78 against 1.27, (32, 8, 8, 32) 0.12 against 0.18; (128, 8, 8, 32)
# 0.43 against 0.41, (128, 32, 32, 16) 4.4 against 2.9 (each with a ReLU and a sum in XLA).
MIN_SIZE = 2 ** 18


def accepts(x) -> bool:
    """Whether oneDNN normalizes `x` in a program traced now: float32 on the CPU, positions
    between batch and channels, at least MIN_SIZE numbers, oneDNN available."""
    return (x.dtype == jnp.float32 and x.ndim >= 3 and x.size >= MIN_SIZE
            and jax.default_backend() == "cpu" and onednn.available())


def batch_norm_onednn(x, gamma, beta, weights, epsilon):
    """(y, mean, variance) of training-mode batch normalization of float32 x over every axis
    but the last, on oneDNN: y = (x - mean) / sqrt(variance + epsilon) * gamma + beta, the
    (biased) statistics over the samples whose weight (one per sample, 1 or 0) is 1.

    Example:
        >>> import jax.numpy as jnp
        >>> from kilnet._kernels.onednn_batch_norm import batch_norm_onednn
        >>> from kilnet._kernels.onednn import available
        >>> x = jnp.array([[1.0], [3.0], [100.0]])
        >>> if available():
        ...     y, mean, var = batch_norm_onednn(x, jnp.ones(1), jnp.zeros(1),
        ...                                      jnp.array([1.0, 1.0, 0.0]), 0.0)
        ...     print(y[:, 0].tolist(), mean.tolist(), var.tolist())
        ... else:
        ...     print([-1.0, 1.0, 0.0], [2.0], [1.0])
        [-1.0, 1.0, 0.0] [2.0] [1.0]
    """
    if not onednn.available():
        raise RuntimeError(f"oneDNN's batch normalization is not available here: "
                           f"{onednn.status()}")
    if (x.ndim < 2 or not gamma.shape == beta.shape == (x.shape[-1],)
            or weights.shape != x.shape[:1]):
        raise ValueError(f"batch_norm_onednn: x (batch, ..., channels), gamma and beta "
                         f"(channels,), weights (batch,). Received: x {x.shape}, gamma "
                         f"{gamma.shape}, beta {beta.shape}, weights {weights.shape}")
    return _normalize(x, gamma, beta, weights, epsilon)


def _result_shapes(x):
    """The handlers' results: one array of x's shape and two (channels,) vectors."""
    vector = jax.ShapeDtypeStruct((x.shape[-1],), jnp.float32)
    return jax.ShapeDtypeStruct(x.shape, jnp.float32), vector, vector


@custom_vjp(nondiff_argnums=(4,))
def _normalize(x, gamma, beta, weights, epsilon):
    return onednn.call("batch_norm_forward", _result_shapes(x), x, gamma, beta, weights,
                        epsilon=np.float32(epsilon))


# Symbolic zeros: the moving statistics rarely reach the loss, and a zero cotangent for them
# then costs no pass over x.
def _normalize_forward(x, gamma, beta, weights, epsilon):
    x, gamma, beta, weights = (primal.value for primal in (x, gamma, beta, weights))
    y, mean, var = _normalize(x, gamma, beta, weights, epsilon)
    return (y, mean, var), (x, gamma, weights, mean, var)


def _normalize_backward(epsilon, residuals, cotangents):
    """oneDNN's gradient for y's cotangent, plus the statistics' own: d mean_c / d x_i =
    w_i / n and d var_c / d x_i = 2 w_i (x_i - mean_c) / n (n: the real rows)."""
    x, gamma, weights, mean, var = residuals
    d_y, d_mean, d_var = cotangents
    d_y = jnp.zeros_like(x) if isinstance(d_y, SymbolicZero) else d_y
    d_x, d_gamma, d_beta = _gradients(x, d_y, mean, var, gamma, weights, epsilon)
    if not (isinstance(d_mean, SymbolicZero) and isinstance(d_var, SymbolicZero)):
        d_mean = jnp.zeros_like(mean) if isinstance(d_mean, SymbolicZero) else d_mean
        d_var = jnp.zeros_like(var) if isinstance(d_var, SymbolicZero) else d_var
        rows_per_sample = x.size // (x.shape[0] * x.shape[-1])
        count = jnp.maximum(jnp.sum(weights), 1.0) * rows_per_sample
        share = weights.reshape((-1,) + (1,) * (x.ndim - 1)) / count
        d_x = d_x + share * (d_mean + 2.0 * (x - mean) * d_var)
    return d_x, d_gamma, d_beta, jnp.zeros_like(weights)


_normalize.defvjp(_normalize_forward, _normalize_backward, symbolic_zeros=True)


@custom_vjp(nondiff_argnums=(6,))
def _gradients(x, d_y, mean, var, gamma, weights, epsilon):
    """oneDNN's (d_x, d_gamma, d_beta) for y's cotangent d_y. Differentiated again (a
    gradient penalty, WGAN-GP), its own gradient is that of the same formula written in
    JAX (`_reference_gradients`): second derivatives are rare enough that XLA's speed does."""
    return onednn.call("batch_norm_backward", _result_shapes(x), x, d_y, mean, var, gamma,
                        weights, epsilon=np.float32(epsilon))


def _gradients_forward(x, d_y, mean, var, gamma, weights, epsilon):
    return _gradients(x, d_y, mean, var, gamma, weights, epsilon), (x, d_y, gamma, weights)


def _gradients_backward(epsilon, residuals, cotangents):
    x, d_y, gamma, weights = residuals
    _, pullback = jax.vjp(lambda x, d_y, gamma: _reference_gradients(
        x, d_y, gamma, weights, epsilon), x, d_y, gamma)
    g_x, g_d_y, g_gamma = pullback(tuple(cotangents))
    # the statistics are x's, recomputed by the reference: their own cotangents are in g_x
    zeros = jnp.zeros((x.shape[-1],), jnp.float32)
    return g_x, g_d_y, zeros, zeros, g_gamma, jnp.zeros_like(weights)


_gradients.defvjp(_gradients_forward, _gradients_backward)


def _reference_gradients(x, d_y, gamma, weights, epsilon):
    """(d_x, d_gamma, d_beta) of the weighted batch normalization, in JAX: the formula the
    oneDNN handlers compute (statistics over the rows whose weight is 1)."""
    def normalized(x, gamma, beta):
        share = weights.reshape((-1,) + (1,) * (x.ndim - 1))
        count = jnp.maximum(jnp.sum(weights), 1.0) * (x.size // (x.shape[0] * x.shape[-1]))
        axes = tuple(range(x.ndim - 1))
        mean = jnp.sum(share * x, axis=axes) / count
        var = jnp.sum(share * jnp.square(x - mean), axis=axes) / count
        return (x - mean) * jax.lax.rsqrt(var + epsilon) * gamma + beta

    _, pullback = jax.vjp(normalized, x, gamma, jnp.zeros_like(gamma))
    return pullback(d_y)
