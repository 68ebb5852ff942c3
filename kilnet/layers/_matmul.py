"""The matrix product of a layer's input with its kernel, as a product of two matrices.

Dense and MultiHeadAttention's projections multiply the last axes of an input of any rank by
a kernel. (The 1x1 convolutions' product through it measured no faster on the ResNet, 1.004x,
so they keep theirs.) Written as `x @ kernel` on a (batch, steps, features) input,
JAX's gradient contracts the kernel gradient over two axes and sums the bias gradient over two
axes; XLA's CPU backend turns both into transpositions and windowed reductions. On the
rows-by-features matrix the same product differentiates to one plain matrix product and one
single-axis sum. Measured in a loop (two Dense layers with relu, forward and backward, 2-core
AMD EPYC): input (64, 200, 64), 64 units: 10.5 -> 7.3 ms a step; 128 units: 16.9 -> 11.2 ms;
a 2-D input is the same program either way.

Under the mixed_bfloat16 policy on a CPU with bfloat16 instructions, large products go
through oneDNN (`onednn_matmul`): XLA's CPU backend would compute them in float32.
"""

from __future__ import annotations

import math

from kilnet._kernels import onednn_matmul
from kilnet.layers._bias import add_row_bias


def matrix_product(a, b):
    """The product of matrices `a` and `b`: on oneDNN for large bfloat16 ones on a CPU that
    has bfloat16 instructions (`onednn_matmul.accepts`), else `a @ b`.

    Example:
        >>> import numpy as np
        >>> matrix_product(np.ones((2, 3)), np.ones((3, 4))).tolist()
        [[3.0, 3.0, 3.0, 3.0], [3.0, 3.0, 3.0, 3.0]]
    """
    if onednn_matmul.accepts(a, b):
        return onednn_matmul.matmul_onednn(a, b)
    return a @ b


def last_axes_product(x, kernel, bias=None, in_axes: int = 1):
    """`x`'s last `in_axes` axes contracted with `kernel`'s first `in_axes` axes (plus `bias`,
    shaped as the kernel's remaining axes), computed on a 2-D view of both.

    Example:
        >>> import numpy as np
        >>> x, kernel = np.ones((2, 3, 4)), np.ones((4, 5))
        >>> y = last_axes_product(x, kernel, bias=np.arange(5.0))
        >>> y.shape, y[1, 2].tolist()
        ((2, 3, 5), [4.0, 5.0, 6.0, 7.0, 8.0])
        >>> last_axes_product(np.ones((2, 3, 4)), np.ones((3, 4, 2, 5)), in_axes=2).shape
        (2, 2, 5)
    """
    batch_shape = x.shape[:x.ndim - in_axes]
    out_shape = kernel.shape[in_axes:]
    rows = math.prod(batch_shape)
    matrix = kernel.reshape(math.prod(kernel.shape[:in_axes]), math.prod(out_shape))
    y = matrix_product(x.reshape(rows, matrix.shape[0]), matrix)
    if bias is not None:
        y = add_row_bias(y, bias.reshape(-1))
    return y.reshape(batch_shape + out_shape)
