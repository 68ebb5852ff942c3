"""Per-channel sums over every row of an array, and the bias addition whose gradient is one.

Why: a bias's gradient is the sum of the output's gradient over every axis but the last, a
"column" reduction of a (rows, channels) matrix. XLA's CPU backend (with the YNNPACK fusions
that kilnet turns off, see `kilnet._runtime`) rewrites a long column reduction into a windowed
reduction that reads the matrix one channel at a time. Summed as (rows / k, k * channels) first,
k rows side by side in a wide row, then over the k, the same sums vectorise over the wide row.
Measured in a loop on a 2-core Intel Xeon (AVX-512), per sum: (128, 26, 26, 32), the first
gradient of the MNIST convnet, 11.0-12.0 ms -> 1.3 ms; (128, 11, 11, 64) 1.2 -> 0.5 ms;
(128, 32, 32, 16) 4.0 -> 0.8 ms. A product with a row of ones: 3.3, 0.55 and 2.0 ms. (With
YNNPACK's reduction fusion, `LIBRARY_FUSION_TYPE_REDUCE`, the first sum took 0.8 ms, but
turning that on for whole programs made ResNet-8's first epoch (its compile included) about
2.5 s longer and its later epochs no faster.)

Where: the convolutions' biases, whose output gradient is an array of its own anyway (oneDNN's
or XLA's convolution gradients read it). Not Dense on (batch, steps, features) nor the
normalizations' weights: there XLA fused the elementwise gradient that produces the rows into
the wide-row view and computed it in that index space, and the bench Transformer's epoch was
1.2x slower (one fusion went from under 2.5 to 10.7-11.8 ms a step).

Dense and attention's projections on many rows (`add_row_bias`) sum their bias gradient as a
product with a row of ones instead: the rows are the output's gradient, which the kernel's and
the input's gradient products read anyway, so it is there as an array and the product reads
it once more, without changing how XLA fuses what made it. The bench Transformer (12,800 rows
of 64 per step), epoch 5.47 / 5.08 -> 4.94 / 4.74 s (two alternations, 6,400 samples, 2-core
Intel Xeon); standalone, a (12,800, 64) sum with its producer 1.20 ms as XLA's windowed
reduction, 0.69 ms as the product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kilnet._custom_gradients import custom_vjp

# Rows side by side in the first pass: a wide row of about this many values (2,048 and 1,024
# measured alike; 8,192 slower on the 26x26 case above).
_WIDE_ROW = 2048


def channel_sums(x):
    """The sums of `x` over every axis but the last, in float32 or wider (the result has
    `x`'s dtype when that is float32 or wider), blocked for XLA's CPU backend.

    Example:
        >>> import numpy as np
        >>> x = np.arange(24.0).reshape(2, 3, 4)
        >>> channel_sums(x).tolist()
        [60.0, 66.0, 72.0, 78.0]
    """
    x = jnp.asarray(x)
    channels = x.shape[-1]
    rows = x.reshape(-1, channels)
    if jnp.issubdtype(rows.dtype, jnp.floating) and jnp.finfo(rows.dtype).bits < 32:
        rows = rows.astype(jnp.float32)
    side_by_side = _WIDE_ROW // channels
    if jax.default_backend() != "cpu" or side_by_side < 2 or rows.shape[0] < 4 * side_by_side:
        return rows.sum(axis=0)  # few rows: one pass is as fast
    blocks = rows.shape[0] // side_by_side
    whole = blocks * side_by_side
    wide = rows[:whole].reshape(blocks, side_by_side * channels).sum(axis=0)
    sums = wide.reshape(side_by_side, channels).sum(axis=0)
    return sums if whole == rows.shape[0] else sums + rows[whole:].sum(axis=0)


@custom_vjp
def add_bias(y, bias):
    """`y + bias` (with NumPy's promotion), `bias` one value per channel (y's last axis),
    whose bias gradient is `channel_sums` of the output's gradient.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> y, bias = jnp.ones((2, 3, 2)), jnp.array([0.5, -1.0])
        >>> add_bias(y, bias)[0, 0].tolist()
        [1.5, 0.0]
        >>> jax.grad(lambda b: add_bias(y, b).sum())(bias).tolist()
        [6.0, 6.0]
    """
    return y + bias


def _add_bias_forward(y, bias):
    # The residuals carry only the two dtypes, as empty arrays (the sum may promote y).
    return add_bias(y, bias), (jnp.zeros((0,), y.dtype), jnp.zeros((0,), bias.dtype))


def _add_bias_backward(dtypes, d_out):
    y_dtype, bias_dtype = dtypes
    return d_out.astype(y_dtype.dtype), channel_sums(d_out).astype(bias_dtype.dtype)


add_bias.defvjp(_add_bias_forward, _add_bias_backward)


# Rows from which `add_row_bias`'s product pays: below, the windowed reduction is short (the
# seed MLP's 32 rows keep XLA's own sum).
ROWS_FOR_PRODUCT = 1024


def add_row_bias(y, bias):
    """`y + bias` for a (rows, units) matrix `y` and a bias of `units`; on the CPU, for float32
    and at least `ROWS_FOR_PRODUCT` rows, its bias gradient is the product of a row of ones
    with the output's gradient (see the module's note), else XLA's own sum.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> y, bias = jnp.ones((2048, 2)), jnp.array([0.5, -1.0])
        >>> add_row_bias(y, bias)[0].tolist()
        [1.5, 0.0]
        >>> jax.grad(lambda b: add_row_bias(y, b).sum())(bias).tolist()
        [2048.0, 2048.0]
    """
    if (jax.default_backend() == "cpu" and y.ndim == 2 and isinstance(y.shape[0], int)
            and y.shape[0] >= ROWS_FOR_PRODUCT   # (a symbolic size, while shapes are traced)
            and jnp.dtype(y.dtype) == jnp.float32 and jnp.dtype(bias.dtype) == jnp.float32):
        return _bias_by_product(y, bias)
    return y + bias


@custom_vjp
def _bias_by_product(y, bias):
    return y + bias


def _bias_by_product_forward(y, bias):
    return y + bias, jnp.zeros((y.shape[0], 0), y.dtype)   # the row count, as an empty array


def _bias_by_product_backward(rows, d_out):
    ones = jnp.ones((1, rows.shape[0]), d_out.dtype)
    return d_out, (ones @ d_out)[0]


_bias_by_product.defvjp(_bias_by_product_forward, _bias_by_product_backward)
