"""Keras's `keras.ops.linalg`: norms, factorizations and solvers, over `jax.numpy.linalg` and
`jax.scipy.linalg`. Matrices are the last two axes; leading axes are a batch.

Example:
    >>> import numpy as np
    >>> float(norm(np.array([3.0, 4.0])))
    5.0
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg

from kilnet import _scope
from kilnet.ops._convert import as_array, as_float, dispatch_symbolic
from kilnet.variables import to_array

__all__ = [
    "norm", "cholesky", "cholesky_inverse", "det", "eig", "eigh", "inv", "jvp", "lstsq",
    "lu_factor", "matrix_rank", "pinv", "qr", "solve", "solve_triangular", "svd",
]


# -- norms and determinants ---------------------------------------------------------------------

def norm(x, ord=None, axis=None, keepdims=False):
    """Vector or matrix norm (NumPy's `ord` conventions); integers give float32."""
    return jnp.linalg.norm(as_float(x), ord=ord, axis=axis, keepdims=keepdims)


def det(x):
    """Determinant of square matrices."""
    return jnp.linalg.det(_square_matrices(x, "det"))


def matrix_rank(x, tol=None):
    """Rank of matrices: the number of singular values above `tol` (by default NumPy's,
    from the largest singular value and the dtype's precision), as int32."""
    return jnp.linalg.matrix_rank(_matrices(x, "matrix_rank"), tol=tol).astype("int32")



# -- factorizations -----------------------------------------------------------------------------

def cholesky(x, upper=False):
    """Cholesky factor of symmetric positive definite matrices: lower-triangular `L` with
    `L @ L.T == x` (`upper=True`: upper-triangular `U` with `U.T @ U == x`). Eagerly, a matrix
    that is not positive definite raises; under jax.jit it gives NaN.

    Example:
        >>> import numpy as np
        >>> cholesky(np.array([[4.0, 2.0], [2.0, 2.0]])).tolist()
        [[2.0, 0.0], [1.0, 1.0]]
    """
    factor = jnp.linalg.cholesky(_square_matrices(x, "cholesky"), upper=upper)
    if _scope.checkable_values(factor) and jnp.isnan(factor).any():
        raise ValueError("Cholesky decomposition failed: the input must be symmetric positive "
                         "definite. Received: a matrix with a non-positive pivot (add a small "
                         "multiple of the identity to regularize it)")
    return factor


def cholesky_inverse(x, upper=False):
    """The inverse of `A` from its Cholesky factor `x` (lower, or upper with `upper=True`):
    `inv(L @ L.T)` computed by triangular solves."""
    factor = _square_matrices(x, "cholesky_inverse")
    identity = jnp.broadcast_to(jnp.eye(factor.shape[-1], dtype=factor.dtype), factor.shape)
    factor_inverse = jax.scipy.linalg.solve_triangular(factor, identity, lower=not upper)
    transposed = jnp.swapaxes(factor_inverse, -1, -2)
    # inv(L L^T) = inv(L)^T inv(L);  inv(U^T U) = inv(U) inv(U)^T
    if upper:
        return factor_inverse @ transposed
    return transposed @ factor_inverse


def eig(x):
    """Eigenvalues and right eigenvectors of general square matrices (complex64; JAX computes
    them on the CPU only)."""
    return jnp.linalg.eig(_square_matrices(x, "eig"))


def eigh(x):
    """Eigenvalues (ascending) and eigenvectors of symmetric (Hermitian) matrices, read from
    the lower triangle."""
    return jnp.linalg.eigh(_square_matrices(x, "eigh"))


def lu_factor(x):
    """LU factorization with partial pivoting: `(lu, pivots)` as SciPy's `lu_factor` (L's unit
    diagonal left out of `lu`; row i was swapped with row `pivots[i]`)."""
    x = _matrices(x, "lu_factor")
    factorize = jax.scipy.linalg.lu_factor
    for _ in range(x.ndim - 2):      # SciPy's function takes one matrix: map over the batch
        factorize = jax.vmap(factorize)
    return factorize(x)


def qr(x, mode="reduced"):
    """QR factorization `x = q @ r`: "reduced" gives `q` of shape (m, k), `r` (k, n), with
    k = min(m, n); "complete" gives `q` (m, m), `r` (m, n)."""
    if mode not in ("reduced", "complete"):
        raise ValueError(f"Argument `mode` must be 'reduced' or 'complete'. Received: "
                         f"mode={mode!r}")
    return jnp.linalg.qr(_matrices(x, "qr"), mode=mode)


def svd(x, full_matrices=True, compute_uv=True):
    """Singular value decomposition `x = u @ diag(s) @ vh`: `(u, s, vh)`, or only the singular
    values `s` (descending) with `compute_uv=False`."""
    return jnp.linalg.svd(_matrices(x, "svd"), full_matrices=full_matrices,
                          compute_uv=compute_uv)



# -- inverses and solvers -----------------------------------------------------------------------

def inv(x):
    """Inverse of square matrices."""
    return jnp.linalg.inv(_square_matrices(x, "inv"))


def pinv(x, rcond=None):
    """Moore-Penrose pseudo-inverse, singular values below `rcond` times the largest taken as
    zero."""
    return jnp.linalg.pinv(_matrices(x, "pinv"), rtol=rcond)


def solve(a, b):
    """`x` with `a @ x == b`, for square `a` (`b` a matrix, or a vector for an unbatched
    `a`)."""
    return jnp.linalg.solve(_square_matrices(a, "solve"), as_array(b))


def solve_triangular(a, b, lower=False):
    """`x` with `a @ x == b` for triangular `a` (upper unless `lower`), by substitution."""
    return jax.scipy.linalg.solve_triangular(_square_matrices(a, "solve_triangular"),
                                             as_array(b), lower=lower)


def lstsq(a, b, rcond=None):
    """Least-squares solution `x` minimizing `||a @ x - b||` (the solution only, not NumPy's
    residuals, rank and singular values)."""
    return jnp.linalg.lstsq(as_array(a), as_array(b), rcond=rcond)[0]



# -- derivatives --------------------------------------------------------------------------------

def jvp(fun, primals, tangents, has_aux=False):
    """Forward-mode derivative: `(fun(*primals), J @ tangents)`, the Jacobian of `fun` at
    `primals` applied to `tangents` (a tuple or list, one per argument); with `has_aux`, `fun`
    returns `(output, aux)` and `aux` comes third.

    Example:
        >>> value, slope = jvp(lambda x: x ** 3, (2.0,), (1.0,))
        >>> float(value), float(slope)
        (8.0, 12.0)
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("Arguments `primals` and `tangents` must be tuples or lists (one entry "
                        f"per argument of `fun`). Received: primals={type(primals).__name__}, "
                        f"tangents={type(tangents).__name__}")
    primals, tangents = jax.tree.map(to_array, (tuple(primals), tuple(tangents)))
    return jax.jvp(fun, primals, tangents, has_aux=has_aux)



# -- argument checks ----------------------------------------------------------------------------

def _matrices(x, name):
    x = as_array(x)
    if x.ndim < 2:
        raise ValueError(f"ops.{name} takes matrices (rank >= 2, the last two axes). "
                         f"Received: x.shape={x.shape}")
    return x


def _square_matrices(x, name):
    x = _matrices(x, name)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"ops.{name} takes square matrices. Received: x.shape={x.shape}")
    return x


dispatch_symbolic(globals(), __all__)
