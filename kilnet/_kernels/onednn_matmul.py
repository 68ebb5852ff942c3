"""bfloat16 matrix products on oneDNN (AMX, AVX512-BF16) in kilnet's compiled CPU programs.

Why: XLA's CPU backend computes a bfloat16 product in float32, after converting both
operands, so the mixed_bfloat16 policy made Dense layers slower on a CPU, not faster. oneDNN
multiplies bfloat16 on the processor's own instructions, summing in float32.

How: the product handler of `onednn.cc` (built and registered by `kilnet._kernels.onednn`),
C = op(A) @ op(B) where op transposes an operand stored the other way round, wrapped in a
custom VJP whose gradients are such products too (so they read their operands where they lie,
and can be differentiated again, in reverse mode: a custom VJP has no forward mode). The
gradient of a layer's kernel is summed and returned in float32, then rounded once to the
kernel's dtype. `accepts` decides which products go there:
bfloat16 operands on a CPU whose oneDNN takes bfloat16 (`onednn.takes_bfloat16`), large
enough to gain (MIN_WORK). The same handler multiplies stacks of matrices (batch, m, k) @
(batch, k, n), one product per batch element: MultiHeadAttention's products per head
(`_attention`), the same custom VJP differentiating them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet._custom_gradients import custom_vjp
from kilnet._kernels import onednn

# m * k * n below which a product stays XLA's: the handler's call and its operands' AMX
# layout cost more than they save on the smallest products. Forward and both gradients in a
# loop on a 2-core Xeon with AMX, XLA's time over oneDNN's: at 2^20 even (0.90-1.20 over six
# shapes), (32, 128, 10) 0.52, (64, 64, 64) 0.61, (32, 784, 128) 1.42, (128, 1600, 10) 2.30,
# (4096, 512, 512) 2.27.
MIN_WORK = 2 ** 20


def accepts(a, b, transpose_a: bool = False, transpose_b: bool = False) -> bool:
    """Whether the product op(a) @ op(b) goes through oneDNN in a program traced now, op
    transposing the last two axes where asked: matrices (m, k) @ (k, n), or stacks of them
    (batch, m, k) @ (batch, k, n); both bfloat16, on the CPU, oneDNN taking bfloat16 there,
    and batch * m * k * n at least MIN_WORK."""
    if a.ndim != b.ndim or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[0] != b.shape[0]):
        return False
    m, k = a.shape[-1:-3:-1] if transpose_a else a.shape[-2:]
    n = b.shape[-2] if transpose_b else b.shape[-1]
    batch = a.shape[0] if a.ndim == 3 else 1
    return (a.dtype == jnp.bfloat16 and b.dtype == jnp.bfloat16
            and batch * m * k * n >= MIN_WORK
            and jax.default_backend() == "cpu" and onednn.takes_bfloat16())


def matmul_onednn(a, b):
    """The product of bfloat16 matrices `a` (m, k) and `b` (k, n) on oneDNN, in bfloat16 (see
    `accepts` for where it runs).

    Example:
        >>> import jax.numpy as jnp
        >>> from kilnet._kernels.onednn_matmul import matmul_onednn
        >>> from kilnet._kernels.onednn import takes_bfloat16
        >>> a, b = jnp.ones((4, 3), jnp.bfloat16), jnp.ones((3, 2), jnp.bfloat16)
        >>> y = matmul_onednn(a, b) if takes_bfloat16() else a @ b
        >>> y.dtype, y.tolist()
        (dtype(bfloat16), [[3.0, 3.0], [3.0, 3.0], [3.0, 3.0], [3.0, 3.0]])
    """
    if not onednn.takes_bfloat16():
        raise RuntimeError("oneDNN does not take bfloat16 products here: "
                           f"{onednn.status()}, bfloat16 instructions: "
                           f"{onednn.takes_bfloat16()}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul_onednn multiplies an (m, k) by a (k, n) matrix. Received: "
                         f"{a.shape} and {b.shape}")
    if a.dtype != jnp.bfloat16 or b.dtype != jnp.bfloat16:
        raise ValueError(f"matmul_onednn takes bfloat16 matrices. Received: {a.dtype} and "
                         f"{b.dtype}; cast them, or use `a @ b`")
    return _product(a, b, False, False)


def batched_matmul_onednn(a, b, transpose_a: bool = False, transpose_b: bool = False):
    """op(a[i]) @ op(b[i]) for every i of bfloat16 stacks `a` and `b` (batch, rows, cols), on
    oneDNN, in bfloat16; op transposes a matrix where asked (see `accepts` for where it runs).

    Example:
        >>> import jax.numpy as jnp
        >>> from kilnet._kernels.onednn_matmul import batched_matmul_onednn
        >>> from kilnet._kernels.onednn import takes_bfloat16
        >>> a, b = jnp.ones((2, 3, 4), jnp.bfloat16), jnp.ones((2, 5, 4), jnp.bfloat16)
        >>> y = (batched_matmul_onednn(a, b, transpose_b=True) if takes_bfloat16()
        ...      else a @ jnp.swapaxes(b, 1, 2))
        >>> y.shape, float(y[1, 2, 4])
        ((2, 3, 5), 4.0)
    """
    if not onednn.takes_bfloat16():
        raise RuntimeError("oneDNN does not take bfloat16 products here: "
                           f"{onednn.status()}, bfloat16 instructions: "
                           f"{onednn.takes_bfloat16()}")
    inner_a = a.shape[1] if transpose_a else a.shape[-1]
    inner_b = b.shape[-1] if transpose_b else b.shape[1]
    if a.ndim != 3 or b.ndim != 3 or a.shape[0] != b.shape[0] or inner_a != inner_b:
        raise ValueError("batched_matmul_onednn multiplies stacks (batch, m, k) @ (batch, k, n) "
                         f"(transposes {transpose_a}, {transpose_b}). Received: {a.shape} and "
                         f"{b.shape}")
    if a.dtype != jnp.bfloat16 or b.dtype != jnp.bfloat16:
        raise ValueError(f"batched_matmul_onednn takes bfloat16 stacks. Received: {a.dtype} "
                         f"and {b.dtype}; cast them, or use jnp.matmul")
    return _product(a, b, bool(transpose_a), bool(transpose_b))


def _call(a, b, transpose_a, transpose_b, dtype):
    m = a.shape[-1] if transpose_a else a.shape[-2]
    n = b.shape[-2] if transpose_b else b.shape[-1]
    return onednn.call("product", jax.ShapeDtypeStruct(a.shape[:-2] + (m, n), dtype), a, b,
                        transposes=np.array([transpose_a, transpose_b], np.int64))


@custom_vjp(nondiff_argnums=(2, 3))
def _product(a, b, transpose_a, transpose_b):
    """op(a) @ op(b) in a's dtype, op transposing where asked."""
    return _call(a, b, transpose_a, transpose_b, a.dtype)


def _product_forward(a, b, transpose_a, transpose_b):
    return _product(a, b, transpose_a, transpose_b), (a, b)


def _summed_in_float32(a, b, transpose_a, transpose_b, dtype):
    """A gradient product summed in float32 (a kernel's, over the batch), rounded once."""
    return _float32_product(a, b, transpose_a, transpose_b).astype(dtype)


@custom_vjp(nondiff_argnums=(2, 3))
def _float32_product(a, b, transpose_a, transpose_b):
    """op(a) @ op(b) of bfloat16 operands, summed and returned in float32."""
    return _call(a, b, transpose_a, transpose_b, jnp.float32)


def _float32_forward(a, b, transpose_a, transpose_b):
    return _float32_product(a, b, transpose_a, transpose_b), (a, b)


def _product_backward(transpose_a, transpose_b, residuals, dc):
    """The gradients of op(a) @ op(b) for a and b, as products on oneDNN: da from dc and b,
    db (summed in float32) from a and dc, each reading its operands as they are stored. The
    backward pass of both `_product` and `_float32_product`."""
    a, b = residuals
    dc = dc.astype(a.dtype)
    if transpose_a:   # a^T was used: da = op(b) @ dc^T
        da = _product(b, dc, transpose_b, True)
    else:             # da = dc @ op(b)^T
        da = _product(dc, b, False, not transpose_b)
    if transpose_b:   # db = dc^T @ op(a)
        db = _summed_in_float32(dc, a, True, transpose_a, b.dtype)
    else:             # db = op(a)^T @ dc
        db = _summed_in_float32(a, dc, not transpose_a, False, b.dtype)
    return da.astype(a.dtype), db


_product.defvjp(_product_forward, _product_backward)
_float32_product.defvjp(_float32_forward, _product_backward)
